"""Recording attempts: work out each finished attempt's outcome and its delivery's next state
(``plan_attempt``, no writes), then store attempts and states in one transaction
(``store_attempts`` for the single path, ``store_batch_attempts`` for the batch engine, both
through ``_store``): one ``INSERT`` (``COPY`` on PostgreSQL for the batch engine,
``_copy_attempts``), one ``UPDATE`` per resulting state (the first one also reading the
endpoints' health on PostgreSQL, ``_update_and_read_health``), retries enqueued after commit.
"""
import contextlib
import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorDebugWrapper
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from deliveries import retry, sender
from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services.building import WebhookRequest, mask_headers
from deliveries.services.wakeups import QUEUE_RETRIES, enqueue_on_commit
from endpoints.models import EndpointHealth, WebhookEndpoint, normalize_retry_policy
from vocelio_webhooks import metrics


@dataclass(frozen=True)
class AttemptOutcome:
    """Result of ``attempt_delivery``: ``status`` is the delivery's new status, or ``"skipped"``
    when there was nothing to do (already final, not due, claimed elsewhere, endpoint paused)."""

    status: str
    attempt: DeliveryAttempt | None = None


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
        error_class=result.error_class or ("" if result.status_code is None or result.status_code < 300
                                           else f"http_{result.status_code}"),
        error_message=result.error_message,
        outcome=outcome,
        started_at=started_at,
    )
    return PlannedAttempt(delivery=delivery, attempt=attempt, new_status=new_status, next_attempt_at=next_attempt_at,
                          last_error=last_error[:2000], status_code=result.status_code, now=now)


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


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


def _unhealthy(endpoint_ids: frozenset[int]):
    """The ids among ``endpoint_ids`` whose health row is not the healthy default (an open or
    half-open circuit, or a failure streak), as a query: run on its own, or compiled into the
    store's ``UPDATE`` (``_update_and_read_health``), so the rule is written once."""
    return EndpointHealth.objects.filter(pk__in=endpoint_ids).exclude(
        circuit_state=EndpointHealth.CircuitState.CLOSED, consecutive_failures=0).values_list("pk", flat=True)


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
            unhealthy = set(_unhealthy(health_of))
        for plan in planned:
            if plan.new_status == Delivery.Status.RETRYING:
                delay = (plan.next_attempt_at - plan.now).total_seconds()
                if delay <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
                    enqueue_on_commit(plan.delivery.pk, countdown=delay, queue=QUEUE_RETRIES)
    metrics.observe_attempts((plan.attempt.outcome, plan.new_status, plan.attempt.duration_ms) for plan in planned)
    outcomes = [AttemptOutcome(status=plan.new_status, attempt=attempt) for plan, attempt in zip(planned, attempts)]
    return outcomes, unhealthy


def _update_and_read_health(deliveries, values: dict, health_of: frozenset[int]) -> set[int]:
    """``deliveries.update(**values)`` and the ``_unhealthy`` read of ``health_of`` in one
    statement (PostgreSQL): ``WITH done AS (UPDATE …) SELECT …``. Both are compiled by Django's own
    compilers (the ``UPDATE`` as ``QuerySet.update`` does); a data-modifying ``WITH`` always runs
    to completion whether or not the ``SELECT`` reads it (PostgreSQL manual, "WITH Queries",
    section "Data-Modifying Statements in WITH")."""
    query = deliveries.query.chain(UpdateQuery)
    query.add_update_values(values)
    update, update_params = query.get_compiler(deliveries.db).as_sql()
    read = _unhealthy(health_of).query
    select, select_params = read.get_compiler(deliveries.db).as_sql()
    with transaction.mark_for_rollback_on_error(deliveries.db), connection.cursor() as cursor:
        cursor.execute(f"WITH done AS ({update}) {select}", [*update_params, *select_params])
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
