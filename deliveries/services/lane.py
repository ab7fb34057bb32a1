"""The send lane (issue 7): a batch's requests go out one after another on one sending thread while
the receivers keep pace, and each gets a thread of its own as soon as they do not.

Why: a worker process's sending threads share one GIL. Fifty threads each sending to a receiver
that answers in well under a millisecond spend more CPU handing the GIL to each other than sending:
in process (``make bench-lane``: the batch loop over 10,000 due deliveries to 10 endpoints on the
bench receiver, per round), 1.36 ms of worker CPU per delivery with one thread per send against
1.05 ms with the lane (``bench/HISTORY.md``, "Throughput work, part 4"). A receiver that
answers in tens of milliseconds needs the threads instead, or a batch of 50 would take 50 answers' time.

The rule (``SendLane.wait_or_escalate``): the lane's clock starts when the batch thread starts
watching it (right after starting it). The lane must have finished its n-th send by
``LANE_GRACE_SECONDS`` + n × ``LANE_PACE_SECONDS`` on that clock (10 ms + 2 ms × n); once it falls
behind, every send it has not started goes to the thread pool at once, one thread each, as before
the lane. A receiver that hangs thus holds the sends queued behind it until at most
``LANE_GRACE_SECONDS`` + (n + 1) × ``LANE_PACE_SECONDS``, n being the sends finished before it
(12 ms when the first send hangs), and the lane's own thread waits out that one send like any
other sending thread.

Which sends join the lane (``joins_lane``): those to endpoints not seen yet or whose last answer
took less than ``LANE_SLOW_MS``; the others (a receiver on the internet, one that hung) get a
thread each at once, as before, without waiting for the lane to fall behind. The lane takes the
endpoints that answered fastest last time first (``expected_ms``; not seen yet counts as 0 ms),
so a slow answer holds back as few sends as possible.

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
# An endpoint whose last answer took this long (milliseconds) or longer skips the lane: its sends
# would only make the lane fall behind and wait out the grace first. The grace: a receiver slower
# than that would stall the lane anyway.
LANE_SLOW_MS = 10

# The last answer time (milliseconds) per endpoint id seen by this process: it keeps known-slow
# receivers out of the lane and orders the lane. One small int per endpoint; forgotten wholesale
# past _REMEMBERED_ENDPOINTS (a fleet that large only tries its slow receivers in the lane once
# more, until they answer again).
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


def joins_lane(endpoint_id: int | None) -> bool:
    """Whether sends to this endpoint go into the lane (see the module docstring)."""
    return expected_ms(endpoint_id) < LANE_SLOW_MS


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

    def start(self, pool: Executor) -> None:
        """Run the lane on one thread of ``pool``."""
        pool.submit(self._run)

    def _take(self) -> tuple[Future, Callable[[], object]] | None:
        """The next send not started, taken off the queue (by the lane or the batch thread,
        whichever asks first: ``popleft`` is atomic), or ``None``."""
        try:
            return self._queue.popleft()
        except IndexError:
            return None

    def _run(self) -> None:
        while (item := self._take()) is not None:
            future, call = item
            if not self._queue:  # nothing left to hand over: the batch thread may stop watching
                with self._emptied:
                    self._emptied.notify()
            _run_into(future, call)
            self._finished += 1

    def wait_or_escalate(self, pool: Executor) -> int:
        """Block until the lane has started every send, or until it falls behind the pace (see the
        module docstring); then submit each send it has not started to ``pool``, a thread each.
        Returns how many were handed over that way (0: the lane kept up). Call once, after
        ``start``, from the thread that made the lane; the futures say when the sends are done.
        Raises what ``pool.submit`` raises (a pool shut down); the sends not started then are
        cancelled first (``cancel_unstarted``), so every future still ends."""
        started = time.monotonic()
        with self._emptied:
            while self._queue:
                left = started + LANE_GRACE_SECONDS + LANE_PACE_SECONDS * (self._finished + 1) - time.monotonic()
                if left <= 0:
                    break
                self._emptied.wait(left)
        escalated = 0
        while (item := self._take()) is not None:
            try:
                pool.submit(_run_into, *item)
            except BaseException:
                item[0].cancel()
                self.cancel_unstarted()
                raise
            escalated += 1
        return escalated

    def cancel_unstarted(self) -> int:
        """Cancel every send the lane has not started (its future ends ``cancelled``); returns how
        many. For a batch that gives up (an exception): the lane stops after its current send."""
        cancelled = 0
        while (item := self._take()) is not None:
            item[0].cancel()
            cancelled += 1
        return cancelled
