"""The batch worker (issue 7): claim up to ``WEBHOOK_BATCH_SIZE`` due deliveries with one statement,
send them concurrently, store every attempt and state change in bulk.

One batch (``deliver_due_batch``; a ``deliver_due`` task runs batches while they come back full,
``run_wakeup``):

1. **Claim** — one ``UPDATE … SET status = 'in_flight' … WHERE id IN (…) AND status IN (pending,
   retrying) AND next_attempt_at <= now RETURNING id``: the oldest due deliveries of active
   endpoints, at most ``WEBHOOK_ENDPOINT_MAX_IN_FLIGHT`` (× the endpoint's ``batch_max_events``)
   minus those already in flight per endpoint (the busy gate of issue 4, applied in the claim
   instead of after it). On PostgreSQL the
   candidates are locked ``FOR UPDATE SKIP LOCKED`` so concurrent workers take different rows
   without waiting; the conditional ``UPDATE`` alone already guarantees a delivery is claimed once.
   Claims themselves run one at a time (an advisory lock around the statement), so the cap holds
   across workers. A priority wake-up claims only high-priority deliveries; if some stay due
   because their endpoints are at the cap, it looks again ``PRIORITY_RECHECK_SECONDS`` later.
2. **Gates** — the circuit breaker, failover and rate limit of ``deliveries.services.health`` per
   delivery, exactly as the single path does; the endpoints' health rows are read once per batch
   and an endpoint whose circuit is closed with no failures skips the per-delivery checks. A
   delivery a gate holds back is released (back to ``pending``/``retrying`` at the gate's time, no
   attempt spent) and its wake-up re-armed.
3. **Build** in this thread (templates may read the database); deliveries of an endpoint with
   ``batch_max_events`` > 1 are grouped into JSON-array requests (``_group_for_batches``, a
   ``413`` answer splits one in halves, ``_send_batch``); **send** on a thread pool of
   ``WEBHOOK_MAX_CONCURRENT_DELIVERIES`` threads, each with its own pooled ``requests.Session``
   (``WEBHOOK_CONNECTION_POOL_SIZE`` keep-alive connections per host): single requests one after
   another on one of them while the receivers keep pace, each on its own thread once they do not
   (``lane``); batch requests each on its own thread.
4. **Store** — ``attempts.store_batch_attempts``: one ``INSERT`` (``COPY``) of all attempts, one
   ``UPDATE`` per resulting state, one transaction; retries enqueued after commit. The first
   ``UPDATE`` also reads which endpoints that succeeded are not healthy. Then the endpoints' health
   (circuit, auto-disable, owner alerts) as after a single attempt, for failures and for those.

Why threads and not an async client inside the task: the sender's SSRF guard, deadline and
bounded decompression are built on ``requests``/urllib3 (``endpoints.network``); an async client
would need all of them again. Measured on the bench machine, a ``requests`` sender gets most of its
throughput from keep-alive and concurrency across endpoints, which threads give (README,
"Performance").
"""
import functools
import logging
import math
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.sender import SendResult
from deliveries.services import attempts, health, lane
from deliveries.services.building import (
    BatchPart,
    WebhookRequest,
    build_batch_request,
    build_envelope,
    render_payload,
)
from endpoints.models import EndpointHealth, WebhookEndpoint

logger = logging.getLogger(__name__)

# A send still running after this many seconds is left to the recorder thread, so one slow or
# hanging receiver never holds the batch (and the worker process) for its whole timeout.
STRAGGLER_WAIT_SECONDS = 0.5
# ... and once a send of the batch has finished, a send still running after this many seconds
# without any other finishing is left to it too: a batch that holds one hanging delivery among
# healthy ones is stored as soon as the healthy ones are done, instead of after the full wait
# (with up to WEBHOOK_ENDPOINT_MAX_IN_FLIGHT hanging sends per endpoint, every such batch would
# otherwise hold its worker process for 0.5 s; the isolation benchmark, scenario 7).
STRAGGLER_QUIET_SECONDS = 0.05

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_outstanding = 0  # sends submitted by this process and not stored yet
_stragglers: "queue.Queue[list[_Finished]]" = queue.Queue()  # one list per slow send
_recorder: threading.Thread | None = None


@dataclass(frozen=True)
class BatchResult:
    """Counts from one batch: ``claimed`` deliveries, of which ``sent`` were attempted and
    ``released`` were held back by a gate (circuit open, rate limit) without spending an attempt;
    ``limit``: the most the batch could claim (a batch that claimed ``limit`` may have left more)."""

    claimed: int
    sent: int
    released: int
    limit: int = 0


def _executor() -> ThreadPoolExecutor:
    """The process's sending pool, created on first use (after the prefork worker forked)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.WEBHOOK_MAX_CONCURRENT_DELIVERIES,
                                       thread_name_prefix="vocelio-send")
        return _pool


def enqueue_wakeups_on_commit(*, deliveries: int, queue: str | None = None) -> None:
    """After commit, enqueue enough ``deliver_due`` wake-ups for ``deliveries`` new due deliveries:
    one per ``WEBHOOK_BATCH_SIZE``, so a large fan-out is shared by every worker process at once."""
    for _ in range(math.ceil(deliveries / settings.WEBHOOK_BATCH_SIZE)):
        transaction.on_commit(functools.partial(attempts.enqueue_wakeup, queue), robust=True)


def endpoints_at_cap_sql() -> str:
    """A ``SELECT`` of the ids of endpoints with ``WEBHOOK_ENDPOINT_MAX_IN_FLIGHT`` ×
    ``batch_max_events`` deliveries in flight, without parameters (the cap is an integer setting,
    the status a constant), for ``NOT IN``: the one definition of "at its cap" for the claim and
    the sweep. In-flight rows are few, so it is one small grouped scan."""
    delivery, endpoint = Delivery._meta.db_table, WebhookEndpoint._meta.db_table
    return (f"SELECT f.endpoint_id FROM {delivery} f JOIN {endpoint} fe ON fe.id = f.endpoint_id "
            f"WHERE f.status = '{Delivery.Status.IN_FLIGHT.value}' GROUP BY f.endpoint_id, fe.batch_max_events "
            f"HAVING COUNT(*) >= {int(settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT)} * fe.batch_max_events")


def _claim_sql(vendor: str, high_priority_only: bool, returning: str = "id") -> str:
    from events.models import Event, EventType

    delivery = Delivery._meta.db_table
    endpoint = WebhookEndpoint._meta.db_table
    priority = (f"JOIN {Event._meta.db_table} ev ON ev.id = d.event_id "
                f"JOIN {EventType._meta.db_table} et ON et.id = ev.event_type_id AND et.is_high_priority"
                if high_priority_only else "")
    lock = "FOR UPDATE OF d SKIP LOCKED" if vendor == "postgresql" else ""
    # The claim lasts the endpoint's timeout + WEBHOOK_CLAIM_MARGIN_SECONDS, as in the single path.
    seconds = f"((SELECT t.timeout_seconds FROM {endpoint} t WHERE t.id = {delivery}.endpoint_id) + %(margin)s)"
    if vendor == "postgresql":
        claimed_until = f"%(now)s + {seconds} * INTERVAL '1 second'"
    else:
        claimed_until = f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', %(now)s, '+' || {seconds} || ' seconds')"
    # The inner scan takes the oldest due rows (index delivery_due_order_idx) of endpoints not at
    # their cap already: otherwise one slow endpoint with more than %(scan)s older due rows would
    # fill every scan and the claim would take nothing at all (the in-flight rows are few, the
    # NOT IN is one hashed lookup). The window function then keeps at most (cap × batch_max_events
    # - in flight) per endpoint: the cap counts requests, and a batching endpoint's request
    # carries up to batch_max_events deliveries.
    return f"""
        UPDATE {delivery} SET status = %(in_flight)s, claimed_until = {claimed_until}, updated_at = %(now)s
        WHERE id IN (
            SELECT c.id FROM (
                SELECT s.id, s.endpoint_id, s.next_attempt_at, s.batch_max_events,
                       ROW_NUMBER() OVER (PARTITION BY s.endpoint_id ORDER BY s.next_attempt_at, s.id) AS rn
                FROM (
                    SELECT d.id, d.endpoint_id, d.next_attempt_at, e.batch_max_events FROM {delivery} d
                    JOIN {endpoint} e ON e.id = d.endpoint_id AND e.status = %(active)s {priority}
                    WHERE d.status IN (%(pending)s, %(retrying)s) AND d.next_attempt_at <= %(now)s
                      AND d.endpoint_id NOT IN ({endpoints_at_cap_sql()})
                    ORDER BY d.next_attempt_at, d.id LIMIT %(scan)s {lock}
                ) s
            ) c
            WHERE c.rn <= %(cap)s * c.batch_max_events - (SELECT COUNT(*) FROM {delivery} f
                                     WHERE f.endpoint_id = c.endpoint_id AND f.status = %(in_flight)s)
            ORDER BY c.next_attempt_at, c.id LIMIT %(limit)s
        ) AND status IN (%(pending)s, %(retrying)s) AND next_attempt_at <= %(now)s
        RETURNING {returning}"""


# A priority wake-up that leaves high-priority deliveries due (their endpoints at the in-flight cap)
# looks again this much later, instead of leaving them to ordinary, oldest-first claims.
PRIORITY_RECHECK_SECONDS = 0.2
# PostgreSQL advisory lock key serialising claims (see claim_due); any constant unique to this use.
CLAIM_LOCK_KEY = 0x766F63656C696F  # "vocelio"


def high_priority_due() -> bool:
    """True when a delivery of a high-priority event type to an active endpoint is due now."""
    return Delivery.objects.filter(
        status__in=Delivery.DUE_STATUSES, next_attempt_at__lte=timezone.now(),
        endpoint__status=WebhookEndpoint.Status.ACTIVE, event__event_type__is_high_priority=True,
    ).exists()


def claim_due(*, limit: int, high_priority_only: bool = False) -> list[int]:
    """Claim up to ``limit`` due deliveries (one statement, see the module docstring); returns their
    ids in ascending order (oldest first: ``UPDATE … RETURNING`` itself promises no order).
    ``high_priority_only`` claims only deliveries of high-priority event types (a wake-up from the
    ``priority`` queue), so they overtake a backlog of ordinary ones.
    The claim lasts the endpoint's timeout plus ``WEBHOOK_CLAIM_MARGIN_SECONDS``; after that the
    sweep makes an abandoned delivery due again (at-least-once)."""
    return sorted(row[0] for row in _claim(limit=limit, high_priority_only=high_priority_only, returning="id"))


def _claim(*, limit: int, high_priority_only: bool, returning: str) -> list[tuple]:
    """The claim of ``claim_due``; returns the claimed rows' ``returning`` columns (SQL), unordered."""
    if limit <= 0:
        return []
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = {"in_flight": Delivery.Status.IN_FLIGHT, "pending": Delivery.Status.PENDING,
              "retrying": Delivery.Status.RETRYING, "active": WebhookEndpoint.Status.ACTIVE, "now": now,
              "margin": settings.WEBHOOK_CLAIM_MARGIN_SECONDS, "scan": limit * 4, "limit": limit,
              "cap": settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT}
    sql = _claim_sql(connection.vendor, high_priority_only, returning)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":  # SQLite has one writer at a time: claims are serial already
            cursor.execute(sql, params)
            return cursor.fetchall()
        # Claims run one at a time (a transaction advisory lock, held for one statement of a few
        # ms): each counts the endpoint's in-flight rows in its own snapshot, so two claims at once
        # could both fill the same endpoint's cap (the bench saw 4 in flight at a cap of 2). The
        # lock ends with the claim's commit, so the next claim sees it, and nothing (an exception,
        # a time limit) can leave the lock held by a pooled connection.
        with transaction.atomic():
            # Same statement, no extra round trip: for this transaction only, an ordinary claim
            # steers the planner to read the due rows in delivery_due_order_idx order and stop
            # after %(scan)s usable ones. Without it, on a table whose statistics say there is
            # little to do (never analyzed, freshly truncated, or analyzed before the backlog
            # grew) PostgreSQL joins from the endpoints and sorts the whole backlog at every
            # claim: 11 ms at 10,000 due rows and growing, under the claim lock. With sorts
            # disabled it still sorts where it must (the window, the final order: at most
            # %(scan)s rows); the high costs this gives the plan must not start JIT compilation
            # (hundreds of ms), hence jit off too. The price: due rows of paused endpoints older
            # than the active ones are walked at every claim (~0.2 ms per 1,000). A priority
            # claim is not steered: its rows are the newest, so the walk would cross the backlog.
            steer = "" if high_priority_only else ", set_config('enable_sort', 'off', true), set_config('jit', 'off', true)"
            cursor.execute(f"SELECT pg_advisory_xact_lock(%s){steer}", [CLAIM_LOCK_KEY])
            cursor.execute(sql, params)
        # The rows are already here (client-side cursor); turning them into Python values
        # after the commit keeps that work out of the lock every claim waits for.
        return cursor.fetchall()


@functools.cache
def _returned_fields() -> tuple | None:
    """The delivery fields a claim can return and build ``Delivery`` instances from as they are
    (``Model.from_db``), or ``None`` when that is not safe: off PostgreSQL (SQLite hands back
    timestamps as text), or once a field needs converting from its database value (JSON, say),
    which only a queryset does."""
    fields = tuple(Delivery._meta.concrete_fields)
    if connection.vendor != "postgresql" or any(hasattr(f, "from_db_value") for f in fields):
        return None
    return fields


def _claim_deliveries(*, limit: int, high_priority_only: bool) -> tuple[int, list[Delivery]]:
    """Claim up to ``limit`` due deliveries (``claim_due``) and load them with their events and
    endpoints (``_attach``). Returns ``(claimed, deliveries)``: ``deliveries`` may be fewer than
    ``claimed`` (an endpoint or event deleted meanwhile, see ``_attach``).

    On PostgreSQL the claim's ``UPDATE … RETURNING`` hands back the whole delivery rows, as they
    are after the claim, so there is no separate read of them (one statement and ~1.5 ms of
    client CPU less per batch of 50, issue 7); elsewhere the claimed ids are read back."""
    fields = _returned_fields()
    if fields is None:
        ids = claim_due(limit=limit, high_priority_only=high_priority_only)
        return len(ids), _attach(list(Delivery.objects.filter(pk__in=ids).order_by("next_attempt_at", "id")))
    quote = connection.ops.quote_name
    rows = _claim(limit=limit, high_priority_only=high_priority_only,
                  returning=", ".join(quote(f.column) for f in fields))
    names = [f.attname for f in fields]
    deliveries = [Delivery.from_db(connection.alias, names, row) for row in rows]
    deliveries.sort(key=lambda d: (d.next_attempt_at, d.pk))
    return len(rows), _attach(deliveries)


def _release(deliveries: list[Delivery], *, until, reason: str) -> None:
    """Give claimed deliveries back (no attempt spent) until ``until`` and re-arm their wake-ups."""
    now = timezone.now()
    for first_attempt in (True, False):
        ids = [d.pk for d in deliveries if (d.attempt_count == 0) == first_attempt]
        if ids:
            Delivery.objects.filter(pk__in=ids, status=Delivery.Status.IN_FLIGHT).update(
                status=Delivery.Status.PENDING if first_attempt else Delivery.Status.RETRYING,
                next_attempt_at=until, claimed_until=None, updated_at=now)
    delay = max((until - now).total_seconds(), 0.05)
    if delay <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
        for delivery in deliveries:
            attempts._enqueue(delivery.pk, countdown=delay,
                              queue=attempts.QUEUE_RETRIES if delivery.attempt_count else attempts.QUEUE_FIRST_ATTEMPTS)
    logger.debug("%s deliveries released (%s) until %s", len(deliveries), reason, until)


@dataclass(frozen=True)
class _Finished:
    delivery: Delivery
    request: WebhookRequest
    result: SendResult
    started_at: datetime


def _track(change: int) -> None:
    global _outstanding
    with _pool_lock:
        _outstanding += change


def _capacity() -> int:
    """Sending threads of this process not taken by a send that is not stored yet."""
    with _pool_lock:
        return settings.WEBHOOK_MAX_CONCURRENT_DELIVERIES - _outstanding


def _store(finished: list[_Finished]) -> None:
    """Store finished attempts in bulk (``attempts.store_batch_attempts``), then apply them to the
    endpoints' health as the single path does; the store's read of the succeeded endpoints' health
    finds which of them need it (a success on a healthy endpoint changes nothing)."""
    if not finished:
        return
    planned = [attempts.plan_attempt(delivery=f.delivery, endpoint=f.delivery.endpoint, request=f.request,
                                     result=f.result, attempt_number=f.delivery.attempt_count + 1,
                                     started_at=f.started_at) for f in finished]
    succeeded = {f.delivery.endpoint_id for f in finished if _is_success(f.result)}
    unhealthy = attempts.store_batch_attempts(planned=planned, health_of=succeeded)
    seen: set[int] = set()
    for f in finished:
        if id(f.request) in seen:
            continue  # a batch request is one outcome for the circuit breaker, however many events it carried
        seen.add(id(f.request))
        if _is_success(f.result) and f.delivery.endpoint_id not in unhealthy:
            continue  # a success on a healthy endpoint changes nothing (endpoints.services.record_health)
        health.after_attempt(delivery=f.delivery, endpoint=f.delivery.endpoint, url=f.request.url,
                             status_code=f.result.status_code, error_class=f.result.error_class)


def _is_success(result: SendResult) -> bool:
    return result.status_code is not None and 200 <= result.status_code < 300


# What one send (a thread-pool task) returns: the requests made, each with its deliveries, result
# and start (None: when the batch's sends started); more than one when a 413 answer split a batch.
_Sent = list[tuple[list[Delivery], WebhookRequest, SendResult, datetime | None]]


def _finished(future: Future, started_at: datetime) -> list[_Finished]:
    """One ``_Finished`` per delivery of a completed send: every delivery of a batch request gets
    its own attempt row with the request's answer."""
    return [_Finished(delivery, request, result, own_start or started_at)
            for deliveries, request, result, own_start in future.result() for delivery in deliveries]


def _send_single(delivery: Delivery, request: WebhookRequest) -> _Sent:
    # Its own start: the send lane makes a batch's sends one after another (lane.py).
    started_at = timezone.now()
    return [([delivery], request, attempts.send_or_fail(request=request, endpoint=delivery.endpoint), started_at)]


def _send_batch(*, deliveries: list[Delivery], parts: list[BatchPart], custom_headers: dict[str, str], url: str,
                budget_until: float, split_from: str = "") -> _Sent:
    """Send ``parts`` (the events of ``deliveries``, same endpoint and URL) as one JSON-array
    request; never raises. A ``413`` answer to more than one event splits the batch in halves
    sent again at once, recursively down to single events, without spending an attempt: each
    delivery's attempt row is the request that finally answered for it. A single event answered
    ``413`` is an ordinary failure (the retry policy decides, as for a single request).

    ``budget_until`` (``time.monotonic()``) bounds the whole send including splits, so it ends
    within the deliveries' claim; a split half left without at least one second is recorded as a
    ``timeout`` (retried as usual) instead of being sent. Runs in a sending thread: no database.
    """
    endpoint = deliveries[0].endpoint
    try:
        request = build_batch_request(endpoint=endpoint, parts=parts, custom_headers=custom_headers, url=url,
                                      split_from=split_from)
        remaining = budget_until - time.monotonic()
        if remaining < 1:
            result = SendResult(status_code=None, error_class="timeout",
                                error_message="Batch split: no time left in this attempt for this part.")
        else:
            result = attempts.send_or_fail(request=request, endpoint=endpoint,
                                           timeout_seconds=min(endpoint.timeout_seconds, remaining))
    except ValueError as exc:  # the signature method lacks its secret, as build_or_fail reports it
        request = WebhookRequest(method=endpoint.http_method, url=url, headers={}, body=None)
        result = SendResult(status_code=None, error_class="signing_error", error_message=str(exc))
    except Exception as exc:  # noqa: BLE001 — a bug must end as recorded attempts, not stuck claims
        logger.exception("Sending a batch to endpoint %s failed", endpoint.pk)
        request = WebhookRequest(method=endpoint.http_method, url=url, headers={}, body=None)
        result = SendResult(status_code=None, error_class="internal_error", error_message=type(exc).__name__)
    if result.status_code == 413 and len(parts) > 1:
        half = (len(parts) + 1) // 2
        parent = request.headers.get("X-Vocelio-Batch-Id", "")
        logger.info("Endpoint %s answered 413 to a batch of %s events; sending it in halves", endpoint.pk, len(parts))
        return (_send_batch(deliveries=deliveries[:half], parts=parts[:half], custom_headers=custom_headers, url=url,
                            budget_until=budget_until, split_from=parent)
                + _send_batch(deliveries=deliveries[half:], parts=parts[half:], custom_headers=custom_headers,
                              url=url, budget_until=budget_until, split_from=parent))
    return [(deliveries, request, result, None)]


def _group_for_batches(to_send: list[tuple[Delivery, str]]) -> tuple[list[tuple[Delivery, str]], list[dict]]:
    """Split gated deliveries into those sent one per request and batch requests to make.

    A delivery joins a batch when its endpoint has ``batch_max_events`` > 1, sends a body (not
    ``GET``), it is not a replay (which is marked per request) and its rendered payload is JSON;
    deliveries batch together when they go to the same endpoint and URL with identical (rendered)
    custom headers. Each batch holds at most ``batch_max_events`` and, unless one event alone is
    larger, at most ``WEBHOOK_MAX_REQUEST_BODY_BYTES`` of body. A payload that fails to render
    is left to the single path, which records the failure as for any delivery. Returns
    ``(singles, batches)``; a batch is the keyword arguments of ``_send_batch`` without the budget.
    """
    singles: list[tuple[Delivery, str]] = []
    groups: dict[tuple, list[tuple[Delivery, BatchPart]]] = {}
    headers_of: dict[tuple, dict[str, str]] = {}
    for delivery, url in to_send:
        endpoint = delivery.endpoint
        if endpoint.batch_max_events <= 1 or endpoint.http_method == WebhookEndpoint.HttpMethod.GET or delivery.is_replay:
            singles.append((delivery, url))
            continue
        try:
            envelope = build_envelope(event=delivery.event, retry_count=delivery.attempt_count)
            body, content_type, headers = render_payload(endpoint=endpoint, envelope=envelope)
        except Exception:  # noqa: BLE001 — the single path renders again and records why it failed
            singles.append((delivery, url))
            continue
        if content_type != "application/json":
            singles.append((delivery, url))  # a text template's output cannot be a JSON array element
            continue
        key = (endpoint.pk, url, tuple(sorted(headers.items())))
        headers_of[key] = headers
        groups.setdefault(key, []).append((delivery, BatchPart(
            delivery_public_id=delivery.public_id, event_id=delivery.event.event_id,
            event_type=delivery.event.event_type.name, body=body)))
    batches = []
    for key, members in groups.items():
        size = members[0][0].endpoint.batch_max_events
        chunks: list[list[tuple[Delivery, BatchPart]]] = [[]]
        chunk_bytes = 0
        for member in members:
            part_bytes = len(member[1].body) + 1
            # A batch also stays within the publish body limit, so 100 large events never make
            # one request of hundreds of megabytes; a single larger event still goes alone.
            if chunks[-1] and (len(chunks[-1]) >= size or chunk_bytes + part_bytes > settings.DATA_UPLOAD_MAX_MEMORY_SIZE):
                chunks.append([])
                chunk_bytes = 0
            chunks[-1].append(member)
            chunk_bytes += part_bytes
        batches += [{"deliveries": [d for d, _ in chunk], "parts": [p for _, p in chunk],
                     "custom_headers": headers_of[key], "url": key[1]} for chunk in chunks]
    return singles, batches


def _hand_over(started_at: datetime, future: Future) -> None:
    global _recorder
    try:
        finished = _finished(future, started_at)
    except Exception:  # a send that raised (sends catch their errors; this is a safety net)
        logger.exception("A slow send failed unrecorded; the sweep will retry it")
        _track(-1)  # else _outstanding never drops back and drain_sends waits its full time
        return
    _stragglers.put(finished)

    with _pool_lock:
        if _recorder is None or not _recorder.is_alive():
            _recorder = threading.Thread(target=_record_stragglers, name="vocelio-recorder", daemon=True)
            _recorder.start()


def _record_stragglers() -> None:
    """The recorder thread: store slow attempts in bulk as they finish (its own DB connection)."""
    from django.db import close_old_connections

    while True:
        items = [_stragglers.get()]  # each item: the attempts of one send
        while len(items) < settings.WEBHOOK_BATCH_SIZE:
            try:
                items.append(_stragglers.get_nowait())
            except queue.Empty:
                break
        slow = [f for item in items for f in item]
        lane.remember((f.delivery.endpoint_id, f.result.duration_ms) for f in slow)
        try:
            close_old_connections()
            _store(slow)
        except Exception:  # the claims expire and the sweep sends again (at-least-once)
            logger.exception("Storing %s slow sends failed; the sweep will retry them", len(items))
            connection.close()
        finally:
            _track(-len(items))
        attempts.enqueue_wakeup()


def drain_sends(*, timeout_seconds: float) -> int:
    """Wait, up to ``timeout_seconds`` (seconds), until every send this process started is stored,
    including the slow ones handed to the recorder thread. Returns how many were still not stored
    (0: all stored). Called when a worker process shuts down (``vocelio_webhooks.celery``): the
    sending threads and the recorder die with the process, and a send that was never stored is
    sent again by the sweep once its claim expires (at-least-once holds, but the receiver gets a
    duplicate). Every send ends by its endpoint's timeout, so the wait is bounded by the slowest
    send in flight, not by ``timeout_seconds``, in practice."""
    deadline = time.monotonic() + timeout_seconds
    waited = False
    while True:
        with _pool_lock:
            left = _outstanding
        if left <= 0 or time.monotonic() >= deadline:
            return max(left, 0)
        if not waited:
            logger.info("Waiting up to %.0f s for %s sends to be stored before exiting", timeout_seconds, left)
            waited = True
        time.sleep(0.05)


def _wait_for_sends(futures: list[Future], *, since: float) -> tuple[list[Future], list[Future]]:
    """Wait for a batch's sends: until all are done, ``STRAGGLER_WAIT_SECONDS`` have passed since
    ``since`` (``time.monotonic()``: when the sends started), or ``STRAGGLER_QUIET_SECONDS`` have
    passed since the last one finished without another finishing. Returns ``(done, still running)``."""
    finished: "queue.Queue[Future]" = queue.Queue()
    for future in futures:
        future.add_done_callback(finished.put)  # runs at once for a future already done
    deadline = since + STRAGGLER_WAIT_SECONDS
    done: set[Future] = set()
    while len(done) < len(futures):
        timeout = deadline - time.monotonic()
        if done:
            timeout = min(timeout, STRAGGLER_QUIET_SECONDS)
        if timeout <= 0:
            break
        try:
            done.add(finished.get(timeout=timeout))
        except queue.Empty:
            break
    return [f for f in futures if f in done], [f for f in futures if f not in done]


def _healthy(row: EndpointHealth | None) -> bool:
    return row is None or (row.circuit_state == EndpointHealth.CircuitState.CLOSED and row.consecutive_failures == 0)


def _attach(deliveries: list[Delivery]) -> list[Delivery]:
    """The claimed ``deliveries`` (oldest first) with their events (each with its event type) and
    endpoints (each with its ``EndpointHealth`` row, or ``None``, in ``_health``), as two reads
    per batch: each endpoint, event and event type is read once and shared by its deliveries
    (decrypting an endpoint's secrets and decoding its JSON fields cost more than the delivery row
    itself, and the deliveries of one event, a fan-out, would otherwise decode its ``data`` once
    each; the batch never changes them; the event type's ``sample_data`` is not read at all). Read
    after the claim, so the configuration is the current one. A delivery whose endpoint was
    deleted since the claim is left out: its claim expires and the sweep cancels it
    (``attempt_delivery``); so is one whose event was deleted meanwhile (its delivery row goes
    with it)."""
    from events.models import Event

    events = Event.objects.select_related("event_type").defer("event_type__sample_data").in_bulk(
        {d.event_id for d in deliveries})
    endpoints = WebhookEndpoint.objects.select_related("health").in_bulk(
        {d.endpoint_id for d in deliveries if d.endpoint_id})
    kept = []
    for delivery in deliveries:
        endpoint, event = endpoints.get(delivery.endpoint_id), events.get(delivery.event_id)
        if endpoint is not None and event is not None:
            delivery.event, delivery.endpoint = event, endpoint
            kept.append(delivery)
    return kept


def _health(endpoint: WebhookEndpoint) -> EndpointHealth | None:
    """The endpoint's health row as ``_attach`` read it (``None``: none yet, a healthy endpoint)."""
    try:
        return endpoint.health
    except EndpointHealth.DoesNotExist:
        return None


def run_wakeup(*, high_priority_only: bool = False) -> BatchResult:
    """What a ``deliver_due`` wake-up task does: uncount itself as waiting
    (``attempts.wakeup_started``), then ``deliver_due_batch`` again and again while the batches
    come back full, for up to ``WEBHOOK_WAKEUP_BUDGET_SECONDS`` (seconds), then re-arm once
    (``_rearm``; also when a batch raised, for the batches done before it).

    Draining a backlog in one task run instead of one task per batch saves, per batch, the
    follow-up wake-up's trip through the broker and Celery's dispatch, during which the worker
    process sent nothing (issue 7: bench scenario 1 went from ~650 to ~860 deliveries/s). An
    ordinary wake-up stops after the current batch when a priority wake-up waits, or when it
    cannot tell (wake-ups not counted: no Redis cache), so a priority wake-up never waits behind
    a drain (``attempts.priority_wakeup_waiting``). Returns the counts summed over the batches,
    with the last batch's ``limit``."""
    queue = attempts.QUEUE_PRIORITY if high_priority_only else attempts.QUEUE_FIRST_ATTEMPTS
    attempts.wakeup_started(queue=queue)
    deadline = time.monotonic() + settings.WEBHOOK_WAKEUP_BUDGET_SECONDS
    claimed = sent = released = 0
    last = BatchResult(claimed=0, sent=0, released=0)
    try:
        while True:
            last = deliver_due_batch(high_priority_only=high_priority_only, rearm=False)
            claimed, sent, released = claimed + last.claimed, sent + last.sent, released + last.released
            if (not last.claimed or last.claimed < last.limit or time.monotonic() >= deadline
                    or (not high_priority_only and attempts.priority_wakeup_waiting() is not False)):
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
        attempts.enqueue_wakeup()
    if not high_priority_only:
        return
    if last_claimed and last_claimed >= last_limit:
        attempts.enqueue_wakeup(attempts.QUEUE_PRIORITY)  # a full batch may have left more behind
    elif high_priority_due():
        # Due but not claimable: their endpoints are at the in-flight cap (ordinary wake-ups claim
        # oldest first and would leave them behind any backlog). Right away when this wake-up's own
        # sends just freed slots, else look again shortly.
        attempts.enqueue_wakeup(attempts.QUEUE_PRIORITY,
                                countdown=None if last_claimed else PRIORITY_RECHECK_SECONDS)


def deliver_due_batch(*, limit: int | None = None, high_priority_only: bool = False,
                      rearm: bool = True) -> BatchResult:
    """Claim, gate, send and store one batch of due deliveries (``limit`` defaults to
    ``WEBHOOK_BATCH_SIZE``, lowered to the free sending threads). Returns the counts; never
    raises for a receiver's trouble (every claimed delivery ends recorded or released). With
    ``rearm`` (the default), when it claimed anything one more wake-up is enqueued so a backlog
    drains without waiting for the sweep; ``run_wakeup`` re-arms once after its last batch."""
    limit = min(limit or settings.WEBHOOK_BATCH_SIZE, _capacity())
    claimed, deliveries = _claim_deliveries(limit=limit, high_priority_only=high_priority_only)
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
        _release(group, until=until, reason=reason)

    started_at = timezone.now()
    singles, batches = _group_for_batches(to_send)
    built = [
        (delivery, *attempts.build_or_fail(
            endpoint=delivery.endpoint, event=delivery.event, delivery_public_id=delivery.public_id,
            attempt_number=delivery.attempt_count + 1, is_replay=delivery.is_replay, url=url))
        for delivery, url in singles
    ]
    pool = _executor()
    finished: list[_Finished] = []
    waiting: list[Future] = []
    to_lane: list[tuple[Delivery, WebhookRequest]] = []
    for delivery, request, failure in built:
        if failure is not None:
            finished.append(_Finished(delivery, request, failure, started_at))
        elif lane.joins_lane(delivery.endpoint_id):
            to_lane.append((delivery, request))
        else:
            waiting.append(pool.submit(_send_single, delivery, request))  # a known-slow receiver: a thread at once
    for batch in batches:
        # The whole batch, splits included, ends within the claim (timeout + WEBHOOK_CLAIM_MARGIN_SECONDS).
        budget_until = (time.monotonic() + batch["deliveries"][0].endpoint.timeout_seconds
                        + settings.WEBHOOK_CLAIM_MARGIN_SECONDS / 2)
        waiting.append(pool.submit(_send_batch, budget_until=budget_until, **batch))
    # The rest one after another on one thread while the receivers keep pace (lane.py), the
    # fastest receivers first; a stable sort keeps the oldest first among equals.
    to_lane.sort(key=lambda pair: lane.expected_ms(pair[0].endpoint_id))
    send_lane = lane.SendLane([functools.partial(_send_single, delivery, request) for delivery, request in to_lane])
    waiting += send_lane.futures
    _track(len(waiting))
    sends_started = time.monotonic()
    try:
        if send_lane.futures:
            send_lane.start(pool)
            send_lane.wait_or_escalate(pool)
        done, slow = _wait_for_sends(waiting, since=sends_started)
    except BaseException:
        # Giving up (a pool shut down, the task's time limit): the lane's sends not started end
        # cancelled, the others are stored by the recorder thread as they finish, and every one
        # leaves _outstanding either way (_hand_over).
        send_lane.cancel_unstarted()
        for future in waiting:
            future.add_done_callback(functools.partial(_hand_over, started_at))
        raise
    for future in slow:
        # A slow receiver must not hold this worker: its attempts are stored by the recorder thread.
        future.add_done_callback(functools.partial(_hand_over, started_at))
    try:
        sent = [f for future in done for f in _finished(future, started_at)]
        lane.remember((f.delivery.endpoint_id, f.result.duration_ms) for f in sent)
        _store(finished + sent)
    finally:
        _track(-len(done))
    if rearm:
        _rearm(claimed=claimed, last_claimed=claimed, last_limit=limit, high_priority_only=high_priority_only)
    return BatchResult(claimed=claimed, sent=len(to_send), released=sum(len(g) for g in held.values()), limit=limit)
