"""The batch worker (issue 7): claim up to ``WEBHOOK_BATCH_SIZE`` due deliveries with one statement,
send them concurrently, store every attempt and state change in bulk.

One batch (``deliver_due_batch``; a ``deliver_due`` task runs batches while they come back full,
``run_wakeup``):

1. **Claim** (``claim``) — one ``UPDATE … SET status = 'in_flight' … WHERE id IN (…) AND status
   IN (pending, retrying) AND next_attempt_at <= now RETURNING id``: the oldest due deliveries of
   active endpoints, at most ``WEBHOOK_ENDPOINT_MAX_IN_FLIGHT`` (× the endpoint's
   ``batch_max_events``) minus those already in flight per endpoint (the busy gate of issue 4,
   applied in the claim instead of after it). On PostgreSQL the candidates are locked
   ``FOR UPDATE SKIP LOCKED`` so concurrent workers take different rows without waiting; the
   conditional ``UPDATE`` alone already guarantees a delivery is claimed once.
   Claims themselves run one at a time (an advisory lock around the statement), so the cap holds
   across workers. A priority wake-up claims only high-priority deliveries; if some stay due
   because their endpoints are at the cap, it looks again ``PRIORITY_RECHECK_SECONDS`` later.
2. **Gates** — the circuit breaker, failover and rate limit of ``deliveries.services.health`` per
   delivery, exactly as the single path does; the endpoints' health rows are read once per batch
   and an endpoint whose circuit is closed with no failures skips the per-delivery checks. A
   delivery a gate holds back is released (back to ``pending``/``retrying`` at the gate's time, no
   attempt spent) and its wake-up re-armed.
3. **Build** in this thread (templates may read the database); deliveries of an endpoint with
   ``batch_max_events`` > 1 are grouped into JSON-array requests (``sending._group_for_batches``,
   a ``413`` answer splits one in halves, ``sending._send_batch``); **send** (``sending``) on a
   thread pool of ``WEBHOOK_MAX_CONCURRENT_DELIVERIES`` threads, each with its own pooled
   ``requests.Session`` (``WEBHOOK_CONNECTION_POOL_SIZE`` keep-alive connections per host): single
   requests one after another on one of them while the receivers keep pace, each on its own
   thread once they do not (``lane``); batch requests each on its own thread.
4. **Store** (``sending._store``) — ``recording.store_batch_attempts``: one ``INSERT`` (``COPY``)
   of all attempts, one ``UPDATE`` per resulting state, one transaction; retries enqueued after
   commit. The first ``UPDATE`` also reads which endpoints that succeeded are not healthy. Then
   the endpoints' health (circuit, auto-disable, owner alerts) as after a single attempt, for
   failures and for those.

Why threads and not an async client inside the task: the sender's SSRF guard, deadline and
bounded decompression are built on ``requests``/urllib3 (``endpoints.network``); an async client
would need all of them again. Measured on the bench machine, a ``requests`` sender gets most of its
throughput from keep-alive and concurrency across endpoints, which threads give (README,
"Performance").

This module runs the steps (``deliver_due_batch``, ``run_wakeup``) and applies the gates; the claim
is in ``deliveries.services.claim``, the sending pool, the sends and the store in
``deliveries.services.sending`` (STYLE.md: a module stays under ~400 lines).
"""
import functools
import math
import time
from concurrent.futures import Future
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.services import attempts, claim, health, lane, sending, wakeups
from deliveries.services.building import WebhookRequest
from endpoints.models import EndpointHealth, WebhookEndpoint

# A priority wake-up that leaves high-priority deliveries due (their endpoints at the in-flight cap)
# looks again this much later, instead of leaving them to ordinary, oldest-first claims.
PRIORITY_RECHECK_SECONDS = 0.2


@dataclass(frozen=True)
class BatchResult:
    """Counts from one batch: ``claimed`` deliveries, of which ``sent`` were attempted and
    ``released`` were held back by a gate (circuit open, rate limit) without spending an attempt;
    ``limit``: the most the batch could claim (a batch that claimed ``limit`` may have left more)."""

    claimed: int
    sent: int
    released: int
    limit: int = 0


def enqueue_wakeups_on_commit(*, deliveries: int, queue: str | None = None) -> None:
    """After commit, enqueue enough ``deliver_due`` wake-ups for ``deliveries`` new due deliveries:
    one per ``WEBHOOK_BATCH_SIZE``, so a large fan-out is shared by every worker process at once."""
    for _ in range(math.ceil(deliveries / settings.WEBHOOK_BATCH_SIZE)):
        transaction.on_commit(functools.partial(wakeups.enqueue_wakeup, queue), robust=True)


def _healthy(row: EndpointHealth | None) -> bool:
    return row is None or (row.circuit_state == EndpointHealth.CircuitState.CLOSED and row.consecutive_failures == 0)


def _health(endpoint: WebhookEndpoint) -> EndpointHealth | None:
    """The endpoint's health row as ``claim._attach`` read it (``None``: none yet, a healthy endpoint)."""
    try:
        return endpoint.health
    except EndpointHealth.DoesNotExist:
        return None


def run_wakeup(*, high_priority_only: bool = False) -> BatchResult:
    """What a ``deliver_due`` wake-up task does: uncount itself as waiting
    (``wakeups.wakeup_started``), then ``deliver_due_batch`` again and again while the batches
    come back full, for up to ``WEBHOOK_WAKEUP_BUDGET_SECONDS`` (seconds), then re-arm once
    (``_rearm``; also when a batch raised, for the batches done before it).

    Draining a backlog in one task run instead of one task per batch saves, per batch, the
    follow-up wake-up's trip through the broker and Celery's dispatch, during which the worker
    process sent nothing (issue 7: bench scenario 1 went from ~650 to ~860 deliveries/s). An
    ordinary wake-up stops after the current batch when a priority wake-up waits, or when it
    cannot tell (wake-ups not counted: no Redis cache), so a priority wake-up never waits behind
    a drain (``wakeups.priority_wakeup_waiting``). Returns the counts summed over the batches,
    with the last batch's ``limit``."""
    queue = wakeups.QUEUE_PRIORITY if high_priority_only else wakeups.QUEUE_FIRST_ATTEMPTS
    wakeups.wakeup_started(queue=queue)
    deadline = time.monotonic() + settings.WEBHOOK_WAKEUP_BUDGET_SECONDS
    claimed = sent = released = 0
    last = BatchResult(claimed=0, sent=0, released=0)
    try:
        while True:
            last = deliver_due_batch(high_priority_only=high_priority_only, rearm=False)
            claimed, sent, released = claimed + last.claimed, sent + last.sent, released + last.released
            if (not last.claimed or last.claimed < last.limit or time.monotonic() >= deadline
                    or (not high_priority_only and wakeups.priority_wakeup_waiting() is not False)):
                break
    finally:
        _rearm(claimed=claimed, last_claimed=last.claimed, last_limit=last.limit,
               high_priority_only=high_priority_only)
    return BatchResult(claimed=claimed, sent=sent, released=released, limit=last.limit)


def _rearm(*, claimed: int, last_claimed: int, last_limit: int, high_priority_only: bool) -> None:
    """Enqueue what comes after a wake-up: ``claimed`` deliveries over all its batches, of which
    ``last_claimed`` (at most ``last_limit``) in the last one."""
    if claimed:
        # Deliveries may still be due: beyond the last batch, or held back by the per-endpoint cap
        # while a batch was in flight (their own wake-up claimed nothing then, which ended its
        # chain). One more ordinary wake-up; a chain ends with a wake-up that claims nothing.
        wakeups.enqueue_wakeup()
    if not high_priority_only:
        return
    if last_claimed and last_claimed >= last_limit:
        wakeups.enqueue_wakeup(wakeups.QUEUE_PRIORITY)  # a full batch may have left more behind
    elif claim.high_priority_due():
        # Due but not claimable: their endpoints are at the in-flight cap (ordinary wake-ups claim
        # oldest first and would leave them behind any backlog). Right away when this wake-up's own
        # sends just freed slots, else look again shortly.
        wakeups.enqueue_wakeup(wakeups.QUEUE_PRIORITY,
                               countdown=None if last_claimed else PRIORITY_RECHECK_SECONDS)


def deliver_due_batch(*, limit: int | None = None, high_priority_only: bool = False,
                      rearm: bool = True) -> BatchResult:
    """Claim, gate, send and store one batch of due deliveries (``limit`` defaults to
    ``WEBHOOK_BATCH_SIZE``, lowered to the free sending threads). Returns the counts; never
    raises for a receiver's trouble (every claimed delivery ends recorded or released). With
    ``rearm`` (the default), when it claimed anything one more wake-up is enqueued so a backlog
    drains without waiting for the sweep; ``run_wakeup`` re-arms once after its last batch."""
    limit = min(limit or settings.WEBHOOK_BATCH_SIZE, sending._capacity())
    claimed, deliveries = claim._claim_deliveries(limit=limit, high_priority_only=high_priority_only)
    if not claimed:
        if rearm:
            _rearm(claimed=0, last_claimed=0, last_limit=limit, high_priority_only=high_priority_only)
        return BatchResult(claimed=0, sent=0, released=0, limit=limit)

    to_send: list[tuple[Delivery, str]] = []
    held: dict[tuple, list[Delivery]] = {}
    for delivery in deliveries:
        endpoint = delivery.endpoint
        if _healthy(_health(endpoint)) and not endpoint.rate_limit_per_minute and not (
                endpoint.failover_url and delivery.attempt_count):
            to_send.append((delivery, endpoint.url))  # nothing to gate: circuit closed, no limit, no failover
            continue
        gate = health.gate_delivery(delivery=delivery, endpoint=endpoint, check_busy=False)
        if gate.allowed:
            to_send.append((delivery, gate.url))
        else:
            held.setdefault((gate.wait_until, gate.reason), []).append(delivery)
    for (until, reason), group in held.items():
        claim._release(group, until=until, reason=reason)

    started_at = timezone.now()
    singles, batches = sending._group_for_batches(to_send)
    built = [
        (delivery, *attempts.build_or_fail(
            endpoint=delivery.endpoint, event=delivery.event, delivery_public_id=delivery.public_id,
            attempt_number=delivery.attempt_count + 1, is_replay=delivery.is_replay, url=url))
        for delivery, url in singles
    ]
    pool = sending._executor()
    finished: list[sending._Finished] = []
    waiting: list[Future] = []
    to_lane: list[tuple[Delivery, WebhookRequest]] = []
    for delivery, request, failure in built:
        if failure is not None:
            finished.append(sending._Finished(delivery, request, failure, started_at))
        elif lane.joins_lane(delivery.endpoint_id):
            to_lane.append((delivery, request))
        else:
            # a known-slow receiver: a thread at once
            waiting.append(pool.submit(sending._send_single, delivery, request))
    for batch in batches:
        # The whole batch, splits included, ends within the claim (timeout + WEBHOOK_CLAIM_MARGIN_SECONDS).
        budget_until = (time.monotonic() + batch["deliveries"][0].endpoint.timeout_seconds
                        + settings.WEBHOOK_CLAIM_MARGIN_SECONDS / 2)
        waiting.append(pool.submit(sending._send_batch, budget_until=budget_until, **batch))
    # The rest one after another on one thread while the receivers keep pace (lane.py), the
    # fastest receivers first; a stable sort keeps the oldest first among equals.
    to_lane.sort(key=lambda pair: lane.expected_ms(pair[0].endpoint_id))
    send_lane = lane.SendLane([functools.partial(sending._send_single, delivery, request)
                               for delivery, request in to_lane])
    waiting += send_lane.futures
    sending._track(len(waiting))
    sends_started = time.monotonic()
    try:
        if send_lane.futures:
            send_lane.start(pool)
            send_lane.wait_or_escalate(pool)
        done, slow = sending._wait_for_sends(waiting, since=sends_started)
    except BaseException:
        # Giving up (a pool shut down, the task's time limit): the lane's sends not started end
        # cancelled, the others are stored by the recorder thread as they finish, and every one
        # leaves sending._outstanding either way (sending._hand_over).
        send_lane.cancel_unstarted()
        for future in waiting:
            future.add_done_callback(functools.partial(sending._hand_over, started_at))
        raise
    for future in slow:
        # A slow receiver must not hold this worker: its attempts are stored by the recorder thread.
        future.add_done_callback(functools.partial(sending._hand_over, started_at))
    try:
        sent = [f for future in done for f in sending._finished(future, started_at)]
        lane.remember((f.delivery.endpoint_id, f.result.duration_ms) for f in sent)
        sending._store(finished + sent)
    finally:
        sending._track(-len(done))
    if rearm:
        _rearm(claimed=claimed, last_claimed=claimed, last_limit=limit, high_priority_only=high_priority_only)
    return BatchResult(claimed=claimed, sent=len(to_send), released=sum(len(g) for g in held.values()), limit=limit)
