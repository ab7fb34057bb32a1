"""The send lane (issue 7): a batch's requests go out one after another on one sending thread while
the receivers keep pace, and each gets a thread of its own as soon as they do not.

Why: a worker process's sending threads share one GIL. Fifty threads each sending to a receiver
that answers in well under a millisecond spend more CPU handing the GIL to each other than sending:
in process, a batch loop over 6,000 due deliveries to the bench receiver cost 1.31 ms of worker CPU
per delivery with one thread per send and 0.85 ms with the sends made one after another (README,
"Throughput work, part 4"). A receiver that answers in tens of milliseconds needs the threads
instead, or a batch of 50 would take 50 answers' time.

The rule (``SendLane.wait_or_escalate``): the lane keeps its sends while it has finished each send
but the current one within ``LANE_GRACE_SECONDS`` + ``LANE_PACE_SECONDS`` per send of its start;
once it falls behind that pace, every send it has not started goes to the thread pool at once, one
thread each, as before the lane. A receiver that hangs thus holds the sends queued behind it for at
most ``LANE_GRACE_SECONDS`` + ``LANE_PACE_SECONDS`` × (n + 1) from the lane's start, n being the sends
finished before it (12 ms when the first send hangs), and the lane's own thread waits out that one
send like any other sending thread. The lane
takes the endpoints that answered fastest last time first (``expected_ms``), so deliveries to a
known-slow receiver queue behind the fast ones instead of in front of them.

No database access here: this runs in sending threads.
"""
import collections
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future

# A lane that has not finished its n-th send this many seconds after it started, plus
# LANE_PACE_SECONDS × n, hands the sends it has not started to the pool. 2 ms per send is about
# twice what one send to a local receiver costs the lane (CPU and answer); the grace absorbs a
# worker process waiting for a core on a busy machine (the bench escalated 3 batches in 80 with
# these values, 13 in 81 with 3 ms / 5 ms).
LANE_PACE_SECONDS = 0.002
LANE_GRACE_SECONDS = 0.01

# The last answer time (milliseconds) per endpoint id seen by this process: it orders a lane.
# One small int per endpoint; forgotten wholesale past _REMEMBERED_ENDPOINTS (a fleet that large
# only loses the order until its endpoints answer again).
_last_duration_ms: dict[int, int] = {}
_REMEMBERED_ENDPOINTS = 100_000


def remember(durations: Iterable[tuple[int | None, int]]) -> None:
    """Record ``(endpoint id, answer time in milliseconds)`` pairs of finished sends, for
    ``expected_ms``. Thread-safe (single dict assignments); ``None`` ids are skipped."""
    if len(_last_duration_ms) > _REMEMBERED_ENDPOINTS:
        _last_duration_ms.clear()
    for endpoint_id, duration_ms in durations:
        if endpoint_id is not None:
            _last_duration_ms[endpoint_id] = duration_ms


def expected_ms(endpoint_id: int | None) -> int:
    """The endpoint's last answer time in milliseconds as recorded by ``remember``; 0 when unknown
    (an endpoint not seen yet is tried in the lane, which finds out)."""
    return _last_duration_ms.get(endpoint_id, 0)


def _run_into(future: Future, call: Callable[[], object]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(call())
    except BaseException as exc:  # noqa: BLE001 — handed to whoever reads the future, as an executor does
        future.set_exception(exc)


class SendLane:
    """One batch's sends, made in order on one pool thread (``start``), each with its ``Future``.

    ``calls``: zero-argument callables, one per send, in the order to try them; they must not
    raise in normal operation (a raised exception is set on that send's future). ``futures`` is
    one ``Future`` per call, in the same order, completed by whichever thread makes the send.
    """

    def __init__(self, calls: list[Callable[[], object]]):
        self._queue = collections.deque((Future(), call) for call in calls)
        self.futures: list[Future] = [future for future, _ in self._queue]
        self._finished = 0
        self._emptied = threading.Condition()
        self.escalated = 0

    def start(self, pool: Executor) -> None:
        """Run the lane on one thread of ``pool``."""
        pool.submit(self._run)

    def _run(self) -> None:
        while True:
            try:
                future, call = self._queue.popleft()
            except IndexError:
                return
            if not self._queue:  # nothing left to hand over: the batch thread may stop watching
                with self._emptied:
                    self._emptied.notify()
            _run_into(future, call)
            self._finished += 1

    def wait_or_escalate(self, pool: Executor) -> int:
        """Block until the lane has started every send, or until it falls behind the pace (see the
        module docstring); then submit each send it has not started to ``pool``, a thread each.
        Returns how many were handed over that way (0: the lane kept up). Call once, after
        ``start``, from the thread that made the lane; the futures say when the sends are done."""
        started = time.monotonic()
        with self._emptied:
            while self._queue:
                left = started + LANE_GRACE_SECONDS + LANE_PACE_SECONDS * (self._finished + 1) - time.monotonic()
                if left <= 0:
                    break
                self._emptied.wait(left)
        while True:
            try:
                future, call = self._queue.popleft()
            except IndexError:
                return self.escalated
            self.escalated += 1
            pool.submit(_run_into, future, call)
