"""Dead letters and replay (issue 4, "Replay and dead letters").

* Bulk retry and discard of deliveries that ended without success. A retry queues one more
  attempt of the same delivery (new ``DeliveryAttempt`` rows, earlier ones untouched); a discard
  ends a dead-lettered or failed delivery as ``cancelled`` with ``last_error = "Discarded by
  <actor>"``.
* Replay: a **new** ``Delivery`` of an existing event (same ``event_id``, so receivers
  de-duplicate as usual), marked ``is_replay`` and linked to the original delivery of that event
  to that endpoint (``replay_of``, null when the endpoint never had one: it was down and missed
  the fan-out, or it was created later). The receiver sees ``X-Vocelio-Replay: true``. History is
  never rewritten.

A replay goes only where the event would go if it were published now: same environment, the
endpoint ``active`` or ``paused`` (a paused endpoint's replays wait), its event-type patterns and
payload filters matching (``endpoint_accepts``). That holds for an explicitly named endpoint too:
filters often decide which partner may see which data, so a replay never overrides them.

The API, the admin and the operators' commands (``replay_events``, ``retry_deliveries``) call
these same functions; the commands use the ``select``/``plan`` step and the ``*_many`` /
``create_replays`` step separately, in batches, to show progress.

The read side (selections, ``endpoint_accepts``, ``candidate_events``, ``plan_replay``) is in
``selection``; this module writes.
"""
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.services import batch, wakeups
from deliveries.services.selection import (
    BATCH_SIZE,
    DISCARDABLE_STATUSES,
    MAX_BULK,
    REPLAYABLE_ENDPOINT_STATUSES,
    RETRYABLE_STATUSES,
    DeliverySelection,
    ReplayPlan,
    ReplayTarget,
    candidate_events,
    delivery_history,
    endpoint_accepts,
    plan_replay,
    select_deliveries,
)
from endpoints.models import WebhookEndpoint
from endpoints.services import lock_endpoints
from events.models import Event
from vocelio_webhooks.errors import Conflict, NotFound, ValidationFailed

logger = logging.getLogger(__name__)


# --- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BulkResult:
    """``matched``: deliveries the selection found (at most the limit); ``changed``: those
    retried or discarded (a delivery that changed state meanwhile is skipped); ``delivery_ids``:
    the changed ones."""

    matched: int
    changed: int
    delivery_ids: list[int]
    dry_run: bool


@dataclass(frozen=True)
class ReplayResult:
    """``matched``: replays planned (at most the limit); ``replayed``: deliveries created
    (0 for a dry run); ``delivery_ids``: the new deliveries, oldest event first."""

    matched: int
    replayed: int
    delivery_ids: list[int]
    dry_run: bool
    limit_reached: bool


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _wake_on_commit(*, ordinary: int, high_priority: int = 0) -> None:
    """After commit, wake the batch engine for that many deliveries now due (``ordinary``, and
    ``high_priority`` ones of high-priority event types): one ``deliver_due`` wake-up per
    ``WEBHOOK_BATCH_SIZE`` of them, on the ``priority`` queue for the high-priority ones, as a
    publish does (at most ``WEBHOOK_MAX_PENDING_WAKEUPS`` wait per queue; a wake-up drains full
    batches and re-arms). Not one ``deliver`` task each: found by the operators' pass, one bulk
    retry of 5,000 put 5,000 tasks on the ``deliveries`` queue, ~100 s of a two-process worker. A
    broker error is logged by the wake-up; the sweep sends whatever is due anyway."""
    if ordinary:
        batch.enqueue_wakeups_on_commit(deliveries=ordinary)
    if high_priority:
        batch.enqueue_wakeups_on_commit(deliveries=high_priority, queue=wakeups.QUEUE_PRIORITY)


# --- retry ------------------------------------------------------------------------------------
def retry_many(*, delivery_ids: Sequence[int]) -> list[int]:
    """Queue one more attempt, now, of each delivery in ``delivery_ids`` that is still
    ``dead_lettered``, ``failed`` or ``cancelled`` and whose endpoint exists; returns those ids.

    Rows are locked (``select_for_update(skip_locked=True)``: one being retried by someone else
    at this moment is skipped, not retried twice) and moved to ``retrying`` (``pending`` if it
    never had an attempt) with ``next_attempt_at = now``; the batch engine is woken after commit
    (``_wake_on_commit``) for those of active endpoints only, as ``create_replays`` does: a paused
    or disabled endpoint's wait for the sweep, which holds them and sends them once it is active
    again. One ``deliver`` task per delivery of a paused endpoint did nothing, and 20,000 of them
    (one bulk retry) kept the workers on the ``deliveries`` queue for minutes, during which the
    ``maintenance`` queue, served after it, ran no sweep.
    As with ``retry_now``, a delivery past its ``max_attempts`` gets exactly one more try.
    """
    now = timezone.now()
    retried: list[int] = []
    woken: Counter[bool] = Counter()  # high priority? -> deliveries of active endpoints to wake
    with transaction.atomic():
        for chunk in _chunks(list(delivery_ids), BATCH_SIZE):
            rows = list(
                Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk__in=chunk, status__in=RETRYABLE_STATUSES, endpoint__isnull=False)
                .values_list("pk", "endpoint__status", "event__event_type__is_high_priority")
            )
            ids = [pk for pk, _, _ in rows]
            woken.update(bool(high) for _, status, high in rows if status == WebhookEndpoint.Status.ACTIVE)
            for status_value, condition in ((Delivery.Status.RETRYING, Q(attempt_count__gt=0)),
                                            (Delivery.Status.PENDING, Q(attempt_count=0))):
                Delivery.objects.filter(condition, pk__in=ids).update(
                    status=status_value, next_attempt_at=now, completed_at=None, claimed_until=None, held=False,
                    updated_at=now,
                )
            retried.extend(ids)
        _wake_on_commit(ordinary=woken[False], high_priority=woken[True])
    return retried


def bulk_retry(*, selection: DeliverySelection, dry_run: bool = False, limit: int = MAX_BULK) -> BulkResult:
    """``POST /deliveries/retry``: retry (``retry_many``) the first ``limit`` (at most
    ``MAX_BULK``) deliveries of ``selection``, oldest first; statuses allowed:
    ``RETRYABLE_STATUSES`` (default ``dead_lettered``). ``dry_run`` only counts. Raises
    ``ValidationFailed`` for another status or a limit out of range."""
    limit = _check_limit(limit)
    with transaction.atomic():
        ids = list(select_deliveries(selection=selection, allowed_statuses=RETRYABLE_STATUSES)
                   .values_list("pk", flat=True)[:limit])
        if dry_run:
            return BulkResult(matched=len(ids), changed=0, delivery_ids=[], dry_run=True)
        retried = retry_many(delivery_ids=ids)
    return BulkResult(matched=len(ids), changed=len(retried), delivery_ids=retried, dry_run=False)


# --- discard ----------------------------------------------------------------------------------
def _discard_update(queryset: QuerySet[Delivery], *, actor: str) -> int:
    now = timezone.now()
    return queryset.filter(status__in=DISCARDABLE_STATUSES).update(
        status=Delivery.Status.CANCELLED, last_error=f"Discarded by {actor}"[:2000], completed_at=now,
        next_attempt_at=None, claimed_until=None, updated_at=now,
    )


def discard(*, delivery: Delivery, actor: str) -> Delivery:
    """``POST /deliveries/{id}/discard``: end a ``dead_lettered`` or ``failed`` delivery as
    ``cancelled`` with ``last_error = "Discarded by <actor>"`` (its attempts stay). One
    conditional UPDATE, so a concurrent retry and discard cannot both win. Raises ``Conflict``
    (409 ``DELIVERY_NOT_DISCARDABLE``) for any other status."""
    updated = _discard_update(Delivery.objects.filter(pk=delivery.pk), actor=actor)
    delivery.refresh_from_db()
    if not updated:
        raise Conflict(
            f"Delivery {delivery.public_id} is {delivery.status}; "
            "only dead_lettered or failed deliveries can be discarded.",
            details={"delivery_id": delivery.pk, "status": delivery.status,
                     "allowed_statuses": list(DISCARDABLE_STATUSES)},
            code="DELIVERY_NOT_DISCARDABLE",
        )
    return delivery


def discard_many(*, delivery_ids: Sequence[int], actor: str) -> list[int]:
    """Discard (as ``discard``) each delivery in ``delivery_ids`` that is still
    ``dead_lettered`` or ``failed``; returns the ids discarded. Others are skipped, not refused."""
    discarded: list[int] = []
    with transaction.atomic():
        for chunk in _chunks(list(delivery_ids), BATCH_SIZE):
            ids = list(
                Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk__in=chunk, status__in=DISCARDABLE_STATUSES).values_list("pk", flat=True)
            )
            _discard_update(Delivery.objects.filter(pk__in=ids), actor=actor)
            discarded.extend(ids)
    return discarded


def bulk_discard(*, selection: DeliverySelection, actor: str, dry_run: bool = False,
                 limit: int = MAX_BULK) -> BulkResult:
    """``POST /deliveries/discard``: discard the first ``limit`` (at most ``MAX_BULK``)
    deliveries of ``selection``; statuses allowed: ``DISCARDABLE_STATUSES`` (default
    ``dead_lettered``). ``dry_run`` only counts. Raises ``ValidationFailed`` for another status."""
    limit = _check_limit(limit)
    with transaction.atomic():
        ids = list(select_deliveries(selection=selection, allowed_statuses=DISCARDABLE_STATUSES)
                   .values_list("pk", flat=True)[:limit])
        if dry_run:
            return BulkResult(matched=len(ids), changed=0, delivery_ids=[], dry_run=True)
        discarded = discard_many(delivery_ids=ids, actor=actor)
    return BulkResult(matched=len(ids), changed=len(discarded), delivery_ids=discarded, dry_run=False)


def _check_limit(limit: int | None) -> int:
    if limit is None:
        return MAX_BULK
    if not 1 <= limit <= MAX_BULK:
        raise ValidationFailed(f"limit must be between 1 and {MAX_BULK}.", details={"limit": limit})
    return limit


# --- replay: writing --------------------------------------------------------------------------
def _lock_named_endpoint(*, endpoint: WebhookEndpoint, missing: Callable[[], Exception]) -> None:
    """Lock ``endpoint`` (``lock_endpoints``) in a replay to it; raise ``missing()`` when it was
    deleted since the caller read it, as the caller answers for an endpoint that never existed.
    Called after planning, which reads without locks: the lock then lasts only for the writes
    (it makes ``update_endpoint``'s ``FOR UPDATE`` wait, and planning 10,000 events takes seconds)."""
    if endpoint.pk not in lock_endpoints(endpoint_ids=[endpoint.pk]):
        raise missing()


def create_replays(*, targets: Sequence[ReplayTarget]) -> list[int]:
    """Create one ``pending`` replay ``Delivery`` (``is_replay=True``, ``replay_of``) per target
    in one transaction and wake the batch engine for those of active endpoints after commit
    (``_wake_on_commit``; a paused endpoint's wait until it is resumed). Targets whose endpoint
    was deleted or disabled since planning are skipped; the endpoints left are locked against a
    delete first (``lock_endpoints``), so one being deleted at this moment is skipped too instead
    of failing the commit. Returns the new delivery ids in the order of ``targets``."""
    if not targets:
        return []
    now = timezone.now()
    with transaction.atomic():
        statuses = {pk: status for pk, status in lock_endpoints(endpoint_ids=(t.endpoint_id for t in targets)).items()
                    if status in REPLAYABLE_ENDPOINT_STATUSES}
        kept = [t for t in targets if t.endpoint_id in statuses]
        deliveries = Delivery.objects.bulk_create([
            Delivery(event_id=t.event_pk, endpoint_id=t.endpoint_id, next_attempt_at=now, is_replay=True,
                     replay_of_id=t.replay_of_id)
            for t in kept
        ])
        active = [t for t in kept if statuses[t.endpoint_id] == WebhookEndpoint.Status.ACTIVE]
        urgent = set(Event.objects.filter(pk__in={t.event_pk for t in active}, event_type__is_high_priority=True)
                     .values_list("pk", flat=True)) if active else set()
        high = sum(1 for t in active if t.event_pk in urgent)
        _wake_on_commit(ordinary=len(active) - high, high_priority=high)
    return [d.pk for d in deliveries]


def _result(plan: ReplayPlan, *, dry_run: bool) -> ReplayResult:
    if dry_run:
        return ReplayResult(matched=len(plan.targets), replayed=0, delivery_ids=[], dry_run=True,
                            limit_reached=plan.limit_reached)
    ids = create_replays(targets=plan.targets)
    return ReplayResult(matched=len(plan.targets), replayed=len(ids), delivery_ids=ids, dry_run=False,
                        limit_reached=plan.limit_reached)


def _check_endpoint_accepts(*, endpoint: WebhookEndpoint, event: Event) -> None:
    if endpoint.status not in REPLAYABLE_ENDPOINT_STATUSES:
        raise Conflict(f"Endpoint {endpoint.pk} is {endpoint.status}; enable it before replaying to it.",
                       details={"endpoint_id": endpoint.pk, "status": endpoint.status}, code="ENDPOINT_DISABLED")
    acceptance = endpoint_accepts(endpoint=endpoint, event=event)
    if not acceptance.accepted:
        raise Conflict(
            f"Endpoint {endpoint.pk} would not receive event {event.event_id}: {acceptance.reason}.",
            details={"endpoint_id": endpoint.pk, "event_id": event.event_id, "reason": acceptance.reason},
            code="ENDPOINT_NOT_MATCHING",
        )


def replay_event(*, event: Event, endpoint: WebhookEndpoint | None = None) -> ReplayResult:
    """``POST /events/{event_id}/replay``: a new delivery of ``event`` to every endpoint that
    accepts it now (``endpoint_accepts``), or to ``endpoint`` only. Raises ``Conflict`` (409)
    when the named endpoint is disabled (``ENDPOINT_DISABLED``) or would not receive the event
    now (``ENDPOINT_NOT_MATCHING``: environment, event type or payload filters), and
    ``ValidationFailed`` (400, on the ``endpoint`` field, as the API's serializer answers for an
    unknown id) when the named endpoint was deleted after the caller read it (``lock_endpoints``)."""
    if endpoint is not None:
        _check_endpoint_accepts(endpoint=endpoint, event=event)
    events = Event.objects.select_related("event_type").filter(pk=event.pk)
    with transaction.atomic():
        plan = plan_replay(events=events, endpoint=endpoint, limit=None)
        if endpoint is not None:
            _lock_named_endpoint(endpoint=endpoint, missing=lambda: ValidationFailed(
                f"Endpoint {endpoint.pk} does not exist.",
                details={"fields": {"endpoint": [f'Invalid pk "{endpoint.pk}" - object does not exist.']}}))
        return _result(plan, dry_run=False)


def replay_endpoint(
    *,
    endpoint: WebhookEndpoint,
    since: datetime,
    until: datetime | None = None,
    event_type: str | None = None,
    only_failed: bool = False,
    dry_run: bool = False,
    limit: int = MAX_BULK,
    environments: Sequence[str] = (),
) -> ReplayResult:
    """``POST /endpoints/{id}/replay``: replay to ``endpoint`` every event received in
    ``[since, until)`` that it accepts now (``endpoint_accepts``), oldest first, at most
    ``limit`` (≤ ``MAX_BULK``). ``only_failed`` and the rest as in ``plan_replay``; one
    transaction. Raises ``Conflict`` (409 ``ENDPOINT_DISABLED``) for a disabled endpoint and
    ``ValidationFailed`` for ``until`` not after ``since`` or a limit out of range, ``NotFound``
    (404) when the endpoint was deleted after the caller read it (``lock_endpoints``)."""
    limit = _check_limit(limit)
    if endpoint.status not in REPLAYABLE_ENDPOINT_STATUSES:
        raise Conflict(f"Endpoint {endpoint.pk} is {endpoint.status}; enable it before replaying to it.",
                       details={"endpoint_id": endpoint.pk, "status": endpoint.status}, code="ENDPOINT_DISABLED")
    if until is not None and until <= since:
        raise ValidationFailed("until must be later than since.", details={"since": since, "until": until})
    events = candidate_events(since=since, until=until, event_type=event_type, endpoint=endpoint,
                              environments=environments)
    with transaction.atomic():
        plan = plan_replay(events=events, endpoint=endpoint, only_failed=only_failed, limit=limit)
        _lock_named_endpoint(endpoint=endpoint, missing=lambda: NotFound(
            f"Endpoint {endpoint.pk} does not exist (it was deleted).", details={"endpoint_id": endpoint.pk}))
        return _result(plan, dry_run=dry_run)


def replay_deliveries(*, delivery_ids: Sequence[int]) -> ReplayResult:
    """Replay the event of each delivery in ``delivery_ids`` to that delivery's endpoint (the
    admin's "Replay selected deliveries"), when the endpoint still exists and accepts the event
    now; others are skipped (``matched`` counts the replays made)."""
    deliveries = (Delivery.objects.filter(pk__in=list(delivery_ids), endpoint__isnull=False)
                  .select_related("event__event_type", "endpoint").order_by("id"))
    pairs = {}
    for delivery in deliveries:
        if endpoint_accepts(endpoint=delivery.endpoint, event=delivery.event).accepted:
            pairs.setdefault((delivery.event_id, delivery.endpoint_id), None)
    history = delivery_history(pairs)
    targets = [
        ReplayTarget(event_pk=event_pk, endpoint_id=endpoint_id,
                     replay_of_id=next(
                         (r["id"] for r in history.get((event_pk, endpoint_id), []) if not r["is_replay"]), None))
        for event_pk, endpoint_id in pairs
    ]
    return _result(ReplayPlan(targets=targets, limit_reached=False), dry_run=False)
