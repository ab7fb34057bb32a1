"""Attempts: claim a due delivery, send it, record the attempt and the next state, schedule
the retry; manual retry, cancel and test sends.

The steps are separate functions (``_claim`` → ``build_request`` → ``send_request`` →
``record_attempt``) so a later batch worker can claim many, send concurrently and record in bulk
without changing the state machine (DESIGN.md, "Scale").
"""
import contextlib
import functools
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorDebugWrapper
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from deliveries import retry, sender
from deliveries.services import health
from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services.building import (
    TransformationFailed,
    WebhookRequest,
    build_request,
    mask_headers,
)
from deliveries.tasks import deliver as deliver_task
from deliveries.tasks import deliver_due as deliver_due_task
from endpoints import network
from endpoints.models import EndpointHealth, WebhookEndpoint, normalize_retry_policy
from events.models import Event, EventType
from vocelio_webhooks import metrics, redis_cache
from vocelio_webhooks.errors import Conflict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptOutcome:
    """Result of ``attempt_delivery``: ``status`` is the delivery's new status, or ``"skipped"``
    when there was nothing to do (already final, not due, claimed elsewhere, endpoint paused)."""

    status: str
    attempt: DeliveryAttempt | None = None


def send_request(*, request: WebhookRequest, endpoint: WebhookEndpoint,
                 timeout_seconds: float | None = None) -> sender.SendResult:
    """Send ``request`` for ``endpoint`` (saved or not) and return a ``sender.SendResult``; never
    raises for network trouble.

    The connection goes only to an address the SSRF guard accepts for this endpoint
    (``endpoints.network``: public addresses, those the deployment opened, within the endpoint's
    ``allowed_ip_ranges``; plain http in production only to opened ones), checked after DNS
    resolution at connect time; a refused one is ``error_class="blocked_destination"``. TLS is
    verified against the endpoint's ``ca_bundle`` when set; ``verify_ssl=False`` is honoured only
    outside production. The attempt's total deadline is the endpoint's ``timeout_seconds``, or
    ``timeout_seconds`` when given (the rest of a split batch's time budget).
    """
    from events.models import Environment

    production = endpoint.environment == Environment.PRODUCTION
    return sender.send(
        method=request.method, url=request.url, headers=request.headers, body=request.body,
        timeout_seconds=endpoint.timeout_seconds if timeout_seconds is None else timeout_seconds, verify=endpoint.verify_ssl or production,
        ca_bundle=endpoint.ca_bundle,
        policy=network.destination_policy(
            url=request.url, allowed_ip_ranges=endpoint.allowed_ip_ranges, production=production
        ),
    )


QUEUE_FIRST_ATTEMPTS = "deliveries"
QUEUE_PRIORITY = "priority"
QUEUE_RETRIES = "retries"


def _enqueue(delivery_id: int, countdown: float | None = None, queue: str | None = None) -> None:
    """Enqueue a wake-up; a broker failure is logged, not raised: the sweep re-enqueues.

    Queues (served in this order by workers on Redis): ``priority`` (first attempts of
    high-priority event types), ``deliveries`` (first attempts), ``retries`` — so a backlog of
    retries to a failing endpoint never delays fresh deliveries to healthy ones.
    """
    try:
        deliver_task.apply_async((delivery_id,), countdown=countdown or None, queue=queue or QUEUE_FIRST_ATTEMPTS)
    except Exception:  # noqa: BLE001 — any broker error; the database still holds the delivery
        logger.warning("Could not enqueue delivery %s; the sweep will pick it up", delivery_id, exc_info=True)


# Wake-ups waiting in the broker, counted per queue in Redis (the cache) so that publishing a
# burst of events does not enqueue one Celery task per event: see ``enqueue_wakeup``. The key goes
# through the cache's ``make_key`` (so "vocelio:1:deliveries:wakeups-pending:<queue>").
_PENDING_WAKEUPS_KEY = "deliveries:wakeups-pending:{queue}"
# The counter starts again from zero at most this long after it was first counted (the expiry is
# set when the key has none and never pushed back), so a wake-up lost without starting (a purged
# broker, a SIGKILLed worker) cannot suppress others for longer than this.
_PENDING_WAKEUPS_TTL_SECONDS = 10

# Each counter operation is ONE Lua script, atomic in Redis. Django's ``incr``/``decr`` are EXISTS
# then INCRBY: a key expiring between the two was re-created by INCRBY without an expiry, and an
# over-count then never reset (at the limit, publishing stopped enqueuing wake-ups for good).
# KEYS[1] counter; ARGV[1] limit, ARGV[2] expiry (s). Returns 1: enqueue, 0: the limit waits already.
_COUNT_WAKEUP_LUA = """
local waiting = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if waiting > tonumber(ARGV[1]) then
    redis.call('DECR', KEYS[1])
    return 0
end
return 1
"""
# KEYS[1] counter. Decrements an existing counter above zero; never creates the key.
_UNCOUNT_WAKEUP_LUA = """
local waiting = tonumber(redis.call('GET', KEYS[1]))
if waiting and waiting > 0 then
    return redis.call('DECR', KEYS[1])
end
return 0
"""


def _pending_wakeups_redis():
    """``(client, make_key)`` for counting waiting wake-ups in the Redis cache, or ``None`` (no
    counting, every wake-up enqueued) when ``WEBHOOK_MAX_PENDING_WAKEUPS`` is 0 or less or the cache
    is not Redis: a per-process or database cache cannot count atomically for every process."""
    if settings.WEBHOOK_MAX_PENDING_WAKEUPS <= 0:
        return None
    return redis_cache.raw_client()


def enqueue_wakeup(queue: str | None = None, countdown: float | None = None) -> None:
    """Enqueue one ``deliver_due`` wake-up (a batch of whatever is due); a broker failure is logged,
    not raised: the sweep finds the due deliveries.

    Skipped when ``WEBHOOK_MAX_PENDING_WAKEUPS`` wake-ups of the same queue are already waiting
    in the broker (counted in Redis by one atomic Lua script; each ``deliver_due`` task uncounts
    itself when it starts, ``wakeup_started``): a waiting wake-up starts after the caller's commit
    and claims whatever is due then, so a further one would only claim what the waiting ones take
    anyway (issue 7: a Celery enqueue costs ~1.4 ms of CPU, a task ~2 ms, against ~1 ms to send a
    delivery). The counter expires ``_PENDING_WAKEUPS_TTL_SECONDS`` (10 s) after it was first
    counted, so an over-count (a wake-up lost to a purge or a killed worker) lasts 10 s at most. If
    Redis cannot be reached the wake-up is enqueued. ``countdown`` (seconds) delays its start.
    """
    queue = queue or QUEUE_FIRST_ATTEMPTS
    redis_and_key = _pending_wakeups_redis()
    counted = False
    if redis_and_key is not None:
        client, make_key = redis_and_key
        try:
            # register_script only hashes the source; the call is one EVALSHA (EVAL if not cached)
            allowed = client.register_script(_COUNT_WAKEUP_LUA)(
                keys=[make_key(_PENDING_WAKEUPS_KEY.format(queue=queue))],
                args=[settings.WEBHOOK_MAX_PENDING_WAKEUPS, _PENDING_WAKEUPS_TTL_SECONDS])
            if not allowed:
                return
            counted = True
        except Exception:  # noqa: BLE001 — counting is an optimisation: without Redis, enqueue
            logger.warning("Could not count waiting wake-ups; enqueuing one", exc_info=True)
    try:
        deliver_due_task.apply_async((queue == QUEUE_PRIORITY,), queue=queue, countdown=countdown)
    except Exception:  # noqa: BLE001 — any broker error; the database still holds the deliveries
        logger.warning("Could not enqueue a delivery wake-up; the sweep will pick the deliveries up", exc_info=True)
        if counted:
            wakeup_started(queue=queue)


def priority_wakeup_waiting() -> bool | None:
    """Whether a wake-up of the ``priority`` queue is waiting to start (its counter in Redis is
    above zero, see ``enqueue_wakeup``); ``None`` when that cannot be told: wake-ups are not
    counted (no Redis cache, ``WEBHOOK_MAX_PENDING_WAKEUPS`` ≤ 0) or Redis cannot be read. A
    priority re-check enqueued with a countdown counts as waiting too."""
    redis_and_key = _pending_wakeups_redis()
    if redis_and_key is None:
        return None
    client, make_key = redis_and_key
    try:
        return int(client.get(make_key(_PENDING_WAKEUPS_KEY.format(queue=QUEUE_PRIORITY))) or 0) > 0
    except Exception:  # noqa: BLE001 — the caller then stops draining, as if one waited
        logger.warning("Could not read the priority wake-up counter", exc_info=True)
        return None


def forget_pending_wakeups() -> None:
    """Reset the waiting wake-up counters (delete their keys); call after purging the broker's
    queues, whose wake-ups will never start (otherwise the counters would hold further ones back
    until they expire). Redis errors are logged, not raised."""
    redis_and_key = _pending_wakeups_redis()
    if redis_and_key is None:
        return
    client, make_key = redis_and_key
    try:
        client.delete(*(make_key(_PENDING_WAKEUPS_KEY.format(queue=q)) for q in (QUEUE_PRIORITY, QUEUE_FIRST_ATTEMPTS)))
    except Exception:  # noqa: BLE001 — the counters expire on their own
        logger.warning("Could not reset the waiting wake-up counters", exc_info=True)


def wakeup_started(*, queue: str) -> None:
    """Uncount one waiting wake-up of ``queue`` (``enqueue_wakeup``); called when a ``deliver_due``
    task starts, before it claims. One atomic Lua script: an existing counter above zero is
    decremented; a missing one (expired while this wake-up waited) is not re-created, so never
    below zero and never without expiry. Errors are logged, not raised."""
    redis_and_key = _pending_wakeups_redis()
    if redis_and_key is None:
        return
    client, make_key = redis_and_key
    try:
        client.register_script(_UNCOUNT_WAKEUP_LUA)(keys=[make_key(_PENDING_WAKEUPS_KEY.format(queue=queue))])
    except Exception:  # noqa: BLE001 — the counter expires on its own
        logger.warning("Could not uncount a wake-up", exc_info=True)


def enqueue_on_commit(delivery_id: int, countdown: float | None = None, queue: str | None = None) -> None:
    """Enqueue ``deliver(delivery_id)`` after the current transaction commits (STYLE.md rule 8)."""
    transaction.on_commit(functools.partial(_enqueue, delivery_id, countdown, queue), robust=True)


def postpone(*, delivery: Delivery, until: datetime, reason: str) -> None:
    """Move a waiting delivery's next attempt to ``until`` without spending an attempt (busy
    endpoint, open circuit, rate limit) and re-arm its wake-up when it is near enough."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk, status__in=Delivery.DUE_STATUSES).update(next_attempt_at=until, updated_at=now)
    delay = max((until - now).total_seconds(), 0.05)
    if delay <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
        _enqueue(delivery.pk, countdown=delay, queue=QUEUE_RETRIES if delivery.attempt_count else QUEUE_FIRST_ATTEMPTS)
    logger.debug("Delivery %s postponed (%s) until %s", delivery.pk, reason, until)


def _claim(delivery_id: int, *, timeout_seconds: int) -> bool:
    now = timezone.now()
    claimed_until = now + timedelta(seconds=timeout_seconds + settings.WEBHOOK_CLAIM_MARGIN_SECONDS)
    updated = Delivery.objects.filter(
        pk=delivery_id, status__in=Delivery.DUE_STATUSES, next_attempt_at__lte=now
    ).update(status=Delivery.Status.IN_FLIGHT, claimed_until=claimed_until, updated_at=now)
    return updated == 1


def attempt_delivery(*, delivery_id: int) -> AttemptOutcome:
    """Make the next attempt of a delivery, if one is due. Idempotent: safe to call many times.

    Skips (returns ``status="skipped"``) a delivery that is final, held (paused/disabled
    endpoint), claimed by another worker or not yet due (a wake-up that came early is re-armed).
    Otherwise: claim → build and sign → send → record the attempt and the new state, and enqueue
    the next retry. Returns the new status and the attempt row.
    """
    delivery = Delivery.objects.select_related("endpoint", "event__event_type").filter(pk=delivery_id).first()
    if delivery is None or delivery.status not in Delivery.DUE_STATUSES or delivery.next_attempt_at is None:
        return AttemptOutcome(status="skipped")
    endpoint = delivery.endpoint
    if endpoint is None:
        cancel(delivery=delivery, reason="Endpoint deleted.")
        return AttemptOutcome(status=Delivery.Status.CANCELLED)
    if endpoint.status != WebhookEndpoint.Status.ACTIVE:
        return AttemptOutcome(status="skipped")  # held; the sweep wakes it when the endpoint is active
    remaining = (delivery.next_attempt_at - timezone.now()).total_seconds()
    if remaining > 0:
        if remaining <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
            _enqueue(delivery.pk, countdown=remaining, queue=QUEUE_RETRIES if delivery.attempt_count else None)
        return AttemptOutcome(status="skipped")
    gate = health.gate_delivery(delivery=delivery, endpoint=endpoint)
    if not gate.allowed:
        postpone(delivery=delivery, until=gate.wait_until, reason=gate.reason)
        return AttemptOutcome(status="skipped")
    if not _claim(delivery.pk, timeout_seconds=endpoint.timeout_seconds):
        return AttemptOutcome(status="skipped")

    attempt_number = delivery.attempt_count + 1
    started_at = timezone.now()
    request, result = build_and_send(
        endpoint=endpoint, event=delivery.event, delivery_public_id=delivery.public_id,
        attempt_number=attempt_number, is_replay=delivery.is_replay, url=gate.url,
    )
    outcome = record_attempt(
        delivery=delivery, endpoint=endpoint, request=request, result=result,
        attempt_number=attempt_number, started_at=started_at,
    )
    health.after_attempt(delivery=delivery, endpoint=endpoint, url=request.url, status_code=result.status_code,
                         error_class=result.error_class)
    return outcome


def build_and_send(*, endpoint: WebhookEndpoint, event: Event, **build_kwargs) -> tuple[WebhookRequest, sender.SendResult]:
    """Build (``build_request(**build_kwargs)``) and send one request; never raises. A template,
    signing or unexpected failure becomes a ``SendResult`` with ``error_class`` ``template_error``,
    ``signing_error`` or ``internal_error`` and no request is sent, so every claimed attempt ends
    recorded instead of stuck in flight."""
    request, failure = build_or_fail(endpoint=endpoint, event=event, **build_kwargs)
    if failure is not None:
        return request, failure
    return request, send_or_fail(request=request, endpoint=endpoint)


def build_or_fail(*, endpoint: WebhookEndpoint, event: Event, **build_kwargs) -> tuple[WebhookRequest,
                                                                                       sender.SendResult | None]:
    """The build half of ``build_and_send``: ``(request, None)``, or an unsent request and the
    failure to record. Reads the database (named templates), so the batch worker calls it in its
    own thread, never in the sending threads."""
    unsent = WebhookRequest(method=endpoint.http_method, url=build_kwargs.get("url") or endpoint.url, headers={},
                            body=None)
    try:
        return build_request(endpoint=endpoint, event=event, **build_kwargs), None
    except TransformationFailed as exc:
        return unsent, sender.SendResult(status_code=None, error_class="template_error", error_message=str(exc))
    except ValueError as exc:
        return unsent, sender.SendResult(status_code=None, error_class="signing_error", error_message=str(exc))
    except Exception as exc:  # noqa: BLE001 — a bug must end as a recorded attempt, not a stuck claim
        logger.exception("Building a request for endpoint %s failed", endpoint.pk)
        return unsent, sender.SendResult(status_code=None, error_class="internal_error", error_message=type(exc).__name__)


def send_or_fail(*, request: WebhookRequest, endpoint: WebhookEndpoint,
                 timeout_seconds: float | None = None) -> sender.SendResult:
    """The send half of ``build_and_send``; never raises. Thread-safe: no database access.
    ``timeout_seconds`` overrides the endpoint's deadline (``send_request``)."""
    try:
        return send_request(request=request, endpoint=endpoint, timeout_seconds=timeout_seconds)
    except Exception as exc:  # noqa: BLE001 — same: record it; the retry policy bounds repeats
        logger.exception("Sending a request to endpoint %s failed", endpoint.pk)
        return sender.SendResult(status_code=None, error_class="internal_error", error_message=type(exc).__name__)


@dataclass
class PlannedAttempt:
    """One finished attempt, ready to store: the unsaved ``DeliveryAttempt`` row and the delivery's
    next state (``new_status``, ``next_attempt_at``, ``last_error``)."""

    delivery: Delivery
    attempt: DeliveryAttempt
    new_status: str
    next_attempt_at: datetime | None
    last_error: str
    status_code: int | None
    now: datetime


def plan_attempt(
    *,
    delivery: Delivery,
    endpoint: WebhookEndpoint,
    request: WebhookRequest,
    result: sender.SendResult,
    attempt_number: int,
    started_at: datetime,
) -> PlannedAttempt:
    """Classify one attempt's result and work out the delivery's next state; no writes.

    Next state: ``succeeded``; ``failed`` (answer not retried by the policy); ``retrying`` at
    ``next_attempt_at`` (backoff with jitter, ``Retry-After`` honoured); ``dead_lettered`` when
    ``attempt_count`` reaches the policy's ``max_attempts`` or retries are disabled.
    """
    policy = normalize_retry_policy(endpoint.retry_policy)
    outcome = retry.classify(status_code=result.status_code, error_class=result.error_class, policy=policy)
    now = timezone.now()
    next_attempt_at = None
    if outcome == retry.SUCCEEDED:
        new_status = Delivery.Status.SUCCEEDED
    elif outcome == retry.FAILED:
        new_status = Delivery.Status.FAILED
    elif not policy["enabled"] or attempt_number >= policy["max_attempts"]:
        # Also ends a manual retry past max_attempts after one try.
        new_status = Delivery.Status.DEAD_LETTERED
    else:
        new_status = Delivery.Status.RETRYING
        delay = retry.next_delay_seconds(
            policy=policy,
            attempt_number=attempt_number,
            retry_after_seconds=retry.parse_retry_after(_header(result.headers, "Retry-After"), now=now),
            jitter_ratio=settings.WEBHOOK_RETRY_JITTER_RATIO,
            retry_after_max_seconds=settings.WEBHOOK_RETRY_AFTER_MAX_SECONDS,
        )
        if endpoint.failover_url and request.url == endpoint.url:
            delay = 0.0  # the primary failed: the next attempt goes to the failover URL at once
        next_attempt_at = now + timedelta(seconds=delay)

    body = request.signed_body or request.body or b""  # stored uncompressed, as signed
    last_error = result.error_message or (
        "" if new_status == Delivery.Status.SUCCEEDED else f"HTTP {result.status_code}: {result.body[:500]}"
    )
    attempt = DeliveryAttempt(
        delivery=delivery,
        attempt_number=attempt_number,
        url=request.url,
        http_method=request.method,
        request_headers=mask_headers(request.headers),
        request_body=body[: settings.WEBHOOK_REQUEST_BODY_STORE_LIMIT_BYTES].decode("utf-8", errors="replace"),
        request_body_sha256=hashlib.sha256(body).hexdigest(),
        request_body_size=len(body),
        response_status_code=result.status_code,
        response_headers=result.headers,
        response_body=result.body,
        duration_ms=result.duration_ms,
        error_class=result.error_class or ("" if result.status_code is None or result.status_code < 300 else f"http_{result.status_code}"),
        error_message=result.error_message,
        outcome=outcome,
        started_at=started_at,
    )
    return PlannedAttempt(delivery=delivery, attempt=attempt, new_status=new_status, next_attempt_at=next_attempt_at,
                          last_error=last_error[:2000], status_code=result.status_code, now=now)


def store_attempts(*, planned: list[PlannedAttempt], returning: bool = True) -> list[AttemptOutcome]:
    """Store finished attempts and move their deliveries to their next state, in one transaction,
    then enqueue the retries that are near enough after commit. The one place every attempt's
    outcome (``attempt.outcome``) and duration (``attempt.duration_ms``) is recorded.

    Statements: one ``INSERT`` of all attempt rows, and one ``UPDATE`` per group of deliveries
    that end in the same state (all successes of a batch share one), guarded by
    ``status = in_flight`` so a delivery cancelled meanwhile is not overwritten. With
    ``returning=False`` (the batch engine, which never reads the attempt rows back) the rows are
    written on PostgreSQL with one ``COPY`` (``_copy_attempts``) and the returned attempts have
    no primary key; otherwise with ``bulk_create``, which sets them.
    """
    return _store(planned=planned, returning=returning, health_of=frozenset())[0]


def store_batch_attempts(*, planned: list[PlannedAttempt], health_of: set[int]) -> set[int]:
    """``store_attempts`` for the batch engine (``returning=False``), which also needs to know
    which of the endpoints ``health_of`` (ids) are not healthy (an open or half-open circuit, or a
    failure streak): a success changes only their health. Returns those ids.

    On PostgreSQL that read rides in the round trip of the first ``UPDATE`` (a data-modifying
    ``WITH``), within the store's transaction: one round trip less per batch (~3 ms of a ~68 ms
    batch in bench scenario 1, issue 7), the same read as a separate ``SELECT`` at that moment.
    Elsewhere it is a separate ``SELECT`` (SQLite has no ``UPDATE`` in ``WITH``)."""
    return _store(planned=planned, returning=False, health_of=frozenset(health_of))[1]


def _unhealthy_sql() -> tuple[str, list]:
    """PostgreSQL ``SELECT`` of the endpoint ids among ``%s`` (an array) whose health row is not the
    healthy default (the ``EndpointHealth`` query ``_store`` runs elsewhere); ``(sql, params
    without the array)``."""
    meta = EndpointHealth._meta
    quote = connection.ops.quote_name
    column = {f.name: quote(f.column) for f in meta.concrete_fields}
    sql = (f"SELECT {quote(meta.pk.column)} FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = ANY(%s) "
           f"AND NOT ({column['circuit_state']} = %s AND {column['consecutive_failures']} = 0)")
    return sql, [EndpointHealth.CircuitState.CLOSED]


def _store(*, planned: list[PlannedAttempt], returning: bool,
           health_of: frozenset[int]) -> tuple[list[AttemptOutcome], set[int]]:
    """The body of ``store_attempts`` and ``store_batch_attempts``: the outcomes, and the ids of
    ``health_of`` that are not healthy (empty when ``health_of`` is)."""
    if not planned:
        return [], set()
    groups: dict[tuple, list[int]] = {}
    for plan in planned:
        key = (plan.new_status, plan.attempt.attempt_number, plan.next_attempt_at, plan.last_error, plan.status_code)
        groups.setdefault(key, []).append(plan.delivery.pk)
    now = max(plan.now for plan in planned)  # one time for the whole batch, so equal outcomes share one UPDATE
    unhealthy: set[int] | None = None if health_of else set()
    with transaction.atomic():
        attempts = [plan.attempt for plan in planned]
        if not returning and connection.vendor == "postgresql":
            _copy_attempts(attempts)
        else:
            DeliveryAttempt.objects.bulk_create(attempts)
        for (new_status, attempt_number, next_attempt_at, last_error, status_code), ids in groups.items():
            deliveries = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.IN_FLIGHT)
            values = {
                "status": new_status,
                "attempt_count": attempt_number,
                "next_attempt_at": next_attempt_at,
                "claimed_until": None,
                "last_attempt_at": now,
                "last_status_code": status_code,
                "last_error": last_error,
                "completed_at": now if new_status in Delivery.FINAL_STATUSES else None,
                "updated_at": now,
            }
            if unhealthy is None and connection.vendor == "postgresql":
                unhealthy = _update_and_read_health(deliveries, values, health_of)
            else:
                deliveries.update(**values)
        if unhealthy is None:
            unhealthy = set(EndpointHealth.objects.filter(pk__in=health_of).exclude(
                circuit_state=EndpointHealth.CircuitState.CLOSED, consecutive_failures=0).values_list("pk", flat=True))
        for plan in planned:
            if plan.new_status == Delivery.Status.RETRYING:
                delay = (plan.next_attempt_at - plan.now).total_seconds()
                if delay <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
                    enqueue_on_commit(plan.delivery.pk, countdown=delay, queue=QUEUE_RETRIES)
    metrics.observe_attempts((plan.attempt.outcome, plan.new_status, plan.attempt.duration_ms) for plan in planned)
    return [AttemptOutcome(status=plan.new_status, attempt=attempt) for plan, attempt in zip(planned, attempts)], unhealthy


def _update_and_read_health(deliveries, values: dict, health_of: frozenset[int]) -> set[int]:
    """``deliveries.update(**values)`` and the ``_unhealthy_sql`` read of ``health_of`` in one
    statement (PostgreSQL): ``WITH done AS (UPDATE …) SELECT …``. The ``UPDATE`` is compiled by
    Django's own update compiler, as ``QuerySet.update`` does; a data-modifying ``WITH`` always runs
    to completion whether or not the ``SELECT`` reads it (PostgreSQL manual, "WITH Queries",
    section "Data-Modifying Statements in WITH")."""
    query = deliveries.query.chain(UpdateQuery)
    query.add_update_values(values)
    update, update_params = query.get_compiler(deliveries.db).as_sql()
    select, select_params = _unhealthy_sql()
    with transaction.mark_for_rollback_on_error(deliveries.db), connection.cursor() as cursor:
        cursor.execute(f"WITH done AS ({update}) {select}", [*update_params, list(health_of), *select_params])
        return {row[0] for row in cursor.fetchall()}


def _copy_attempts(rows: list[DeliveryAttempt]) -> None:
    """Insert ``rows`` with one ``COPY … FROM STDIN`` (PostgreSQL); their primary keys stay unset.

    Measured on the bench machine for 50 attempt rows: ``bulk_create`` (Django 5.2 sends
    ``UNNEST`` arrays, every JSON and text value quoted again as an array element) 14–19 ms,
    ``COPY`` 7–10 ms, with 40 % less client CPU (README, "Performance"). Plain text, integer,
    boolean, foreign-key and datetime values go as they are; JSON and ``auto_now_add`` columns
    through the field's own ``get_db_prep_save``, as ``bulk_create`` does (``_copy_fields``). The
    ``COPY`` runs through the cursor's execute wrappers, so anything counting statements
    (``connection.execute_wrapper``, the benchmark's count) sees it as one statement.
    """
    meta = DeliveryAttempt._meta
    fields, plain = _copy_fields()
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = f"COPY {connection.ops.quote_name(meta.db_table)} ({columns}) FROM STDIN"
    values = [[getattr(row, f.attname) if is_plain else f.get_db_prep_save(f.pre_save(row, True), connection)
               for f, is_plain in zip(fields, plain)] for row in rows]

    def copy(sql, values, many, context):
        with context["cursor"].cursor.copy(sql) as stream:  # the psycopg 3 cursor under Django's wrapper
            for value in values:
                stream.write_row(value)

    with connection.cursor() as cursor, connection.wrap_database_errors:
        connection.validate_no_broken_transaction()
        # Logged like any statement when queries are recorded (DEBUG, CaptureQueriesContext),
        # without its values: they are whole request bodies.
        logged = cursor.debug_sql(sql) if isinstance(cursor, CursorDebugWrapper) else contextlib.nullcontext()
        with logged:
            cursor._execute_with_wrappers(sql, values, many=True, executor=copy)


@functools.cache
def _copy_fields() -> tuple[list, list[bool]]:
    """The attempt table's columns for ``COPY`` (all but the primary key), and for each whether its
    Python value goes as it is: text, integer, boolean, foreign-key and plain datetime columns,
    whose values psycopg adapts exactly as their ``get_db_prep_save`` would hand them over (on
    PostgreSQL that is the value itself), at about half the CPU (0.094 → 0.051 ms per row). JSON
    and ``auto_now_add`` columns go through the field's own preparation."""
    from django.db import models

    fields = [f for f in DeliveryAttempt._meta.concrete_fields if not f.primary_key]
    # Exact classes: a subclass (an encrypted text field, say) may prepare its value itself.
    plain_types = {models.CharField, models.TextField, models.IntegerField, models.PositiveIntegerField,
                   models.BooleanField, models.ForeignKey}
    plain = [type(f) in plain_types or (type(f) is models.DateTimeField and not (f.auto_now or f.auto_now_add))
             for f in fields]
    return fields, plain


def record_attempt(
    *,
    delivery: Delivery,
    endpoint: WebhookEndpoint,
    request: WebhookRequest,
    result: sender.SendResult,
    attempt_number: int,
    started_at: datetime,
) -> AttemptOutcome:
    """Store one attempt and move the delivery to its next state in one transaction, then
    enqueue the next retry after commit (``plan_attempt`` + ``store_attempts``)."""
    plan = plan_attempt(delivery=delivery, endpoint=endpoint, request=request, result=result,
                        attempt_number=attempt_number, started_at=started_at)
    return store_attempts(planned=[plan])[0]


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def retry_now(*, delivery: Delivery) -> Delivery:
    """Manual retry (``POST /deliveries/retry/{id}``): make the next attempt now.

    Allowed for ``failed``, ``dead_lettered``, ``cancelled`` (one more attempt; if it fails the
    delivery returns to a final state) and for waiting ``pending``/``retrying`` deliveries
    (brought forward). Raises ``Conflict`` (409) for ``succeeded`` or ``in_flight`` deliveries and
    for deliveries whose endpoint was deleted. Earlier attempts are never rewritten.
    """
    with transaction.atomic():
        locked = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if locked.status in (Delivery.Status.SUCCEEDED, Delivery.Status.IN_FLIGHT):
            raise Conflict(
                f"Delivery {locked.public_id} is {locked.status} and cannot be retried.",
                details={"delivery_id": locked.pk, "status": locked.status},
                code="DELIVERY_NOT_RETRYABLE",
            )
        if locked.endpoint_id is None:
            raise Conflict("The delivery's endpoint was deleted.", details={"delivery_id": locked.pk},
                           code="ENDPOINT_DELETED")
        now = timezone.now()
        locked.status = Delivery.Status.RETRYING if locked.attempt_count else Delivery.Status.PENDING
        locked.next_attempt_at = now
        locked.completed_at = None
        locked.save(update_fields=["status", "next_attempt_at", "completed_at", "updated_at"])
        enqueue_on_commit(locked.pk)
    return locked


def cancel(*, delivery: Delivery, reason: str) -> Delivery:
    """Cancel a delivery that is not final yet (``pending``/``retrying``); no-op otherwise."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk, status__in=Delivery.DUE_STATUSES).update(
        status=Delivery.Status.CANCELLED, last_error=reason, completed_at=now, next_attempt_at=None, updated_at=now
    )
    delivery.refresh_from_db()
    return delivery



@dataclass(frozen=True)
class TestSendResult:
    """Result of a test send: the receiver's answer and the request as sent (credentials masked)."""

    success: bool
    request: WebhookRequest
    result: sender.SendResult
    event_id: str


def send_test(*, endpoint: WebhookEndpoint, event_type: EventType, data: dict | None = None) -> TestSendResult:
    """Send one signed test event to ``endpoint`` (saved or not) and return the receiver's answer.

    The event is ``event_type`` with ``data`` (default: the type's ``sample_data``), a fresh
    ``evt_test_…`` id and ``metadata.test = true``. Nothing is stored and nothing is retried.
    """
    import secrets

    event = Event(
        event_id=f"evt_test_{secrets.token_hex(8)}", event_type=event_type, timestamp=timezone.now(),
        data=event_type.sample_data if data is None else data, metadata={"test": True},
    )
    request, result = build_and_send(
        endpoint=endpoint, event=event, delivery_public_id=f"dlv_test_{secrets.token_hex(6)}", attempt_number=1
    )
    success = result.status_code is not None and 200 <= result.status_code < 300
    masked = WebhookRequest(method=request.method, url=request.url, headers=mask_headers(request.headers),
                            body=request.signed_body or request.body)
    return TestSendResult(success=success, request=masked, result=result, event_id=event.event_id)
