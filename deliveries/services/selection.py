"""The read side of dead letters and replay (``deliveries.services.replay`` writes; its docstring
has the rules): which deliveries a bulk retry or discard acts on (``DeliverySelection``,
``select_deliveries``, ``event_type_q``), whether an endpoint would get an event published now
(``endpoint_accepts``), and which replays a request makes (``candidate_events``, ``plan_replay``,
``ReplayTarget``, ``ReplayPlan``), with the limits and statuses both sides share. Nothing here
writes.
"""
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from deliveries.models import Delivery
from endpoints.filters import (
    FilterValidationError,
    evaluate_filters,
    event_type_matches,
)
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from vocelio_webhooks.errors import ValidationFailed

logger = logging.getLogger(__name__)

MAX_BULK = 10_000  # most deliveries one API call may retry, discard or replay
BATCH_SIZE = 500  # rows per query / per transaction in the commands
RETRYABLE_STATUSES = (Delivery.Status.DEAD_LETTERED, Delivery.Status.FAILED, Delivery.Status.CANCELLED)
DISCARDABLE_STATUSES = (Delivery.Status.DEAD_LETTERED, Delivery.Status.FAILED)
REPLAYABLE_ENDPOINT_STATUSES = (WebhookEndpoint.Status.ACTIVE, WebhookEndpoint.Status.PAUSED)
# Deliveries that mean "the endpoint has it, or is about to get it" (``only_failed`` skips them).
_RECEIVED_OR_COMING = frozenset({
    Delivery.Status.SUCCEEDED, Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT, Delivery.Status.RETRYING,
})


# --- selections -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliverySelection:
    """Which deliveries a bulk retry or discard acts on. ``event_type`` is an exact name,
    ``lead.*`` (prefix) or ``*``; ``created_after`` is inclusive, ``created_before`` exclusive;
    ``environments`` limits to events of those environments (empty: all)."""

    statuses: tuple[str, ...] = (Delivery.Status.DEAD_LETTERED,)
    endpoint_id: int | None = None
    event_type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    environments: tuple[str, ...] = ()


def event_type_q(patterns: str | None, field: str) -> Q:
    """A ``Q`` on the event-type name at ``field`` (``event_type__name`` for events,
    ``event__event_type__name`` for deliveries) for a comma-separated list of event-type patterns,
    with the meaning endpoint subscriptions give them (``endpoints.filters.event_type_matches``):
    an exact type (``lead.created``), a prefix wildcard (``lead.*``: every type starting with
    ``lead.``) or ``*`` (everything). Blank items are ignored; ``None`` or a list of blanks
    matches everything. Callers validate the patterns first
    (``events.filtersets.validate_event_type_patterns``)."""
    query = Q()
    for pattern in filter(None, (item.strip() for item in (patterns or "").split(","))):
        if pattern == "*":
            return Q()
        if pattern.endswith(".*"):
            query |= Q(**{f"{field}__startswith": pattern[:-1]})
        else:
            query |= Q(**{field: pattern})
    return query


def select_deliveries(*, selection: DeliverySelection, allowed_statuses: Sequence[str]) -> QuerySet[Delivery]:
    """Deliveries in ``selection``, oldest first. Deliveries whose endpoint was deleted are left
    out (they can be neither retried nor replayed). Raises ``ValidationFailed`` when a status
    is not in ``allowed_statuses``."""
    statuses = tuple(selection.statuses) or (Delivery.Status.DEAD_LETTERED,)
    refused = sorted(set(statuses) - set(allowed_statuses))
    if refused:
        raise ValidationFailed(
            f"status must be among {', '.join(allowed_statuses)}; got {', '.join(refused)}.",
            details={"status": refused, "allowed": list(allowed_statuses)},
        )
    queryset = Delivery.objects.filter(status__in=statuses, endpoint__isnull=False)
    queryset = queryset.filter(event_type_q(selection.event_type, "event__event_type__name"))
    if selection.endpoint_id is not None:
        queryset = queryset.filter(endpoint_id=selection.endpoint_id)
    if selection.created_after is not None:
        queryset = queryset.filter(created_at__gte=selection.created_after)
    if selection.created_before is not None:
        queryset = queryset.filter(created_at__lt=selection.created_before)
    if selection.environments:
        queryset = queryset.filter(event__environment__in=selection.environments)
    return queryset.order_by("id")


# --- replay: matching -------------------------------------------------------------------------
@dataclass(frozen=True)
class Acceptance:
    """Whether an endpoint would get an event published now, and if not, why (one sentence)."""

    accepted: bool
    reason: str


def endpoint_accepts(*, endpoint: WebhookEndpoint, event: Event, envelope: dict | None = None) -> Acceptance:
    """Would ``endpoint`` get ``event`` if it were published now (the rule of
    ``events.services.publish``)? Same environment, status ``active``/``paused``, an
    event-type pattern matching, payload filters passing. ``envelope`` is
    ``events.services.filter_envelope(event)`` when the caller has it already."""
    if endpoint.environment != event.environment:
        return Acceptance(False, f"the endpoint is in {endpoint.environment}, the event in {event.environment}")
    if endpoint.status not in REPLAYABLE_ENDPOINT_STATUSES:
        return Acceptance(False, f"the endpoint is {endpoint.status}")
    type_name = event.event_type.name
    if not event_type_matches(endpoint.events or [], type_name):
        return Acceptance(False, f"{type_name} is not in the endpoint's events {endpoint.events}")
    if envelope is None:
        # events.services imports this package
        from events.services import filter_envelope

        envelope = filter_envelope(event)
    try:
        result = evaluate_filters(endpoint.filters, envelope)
    except FilterValidationError as exc:
        logger.warning("Endpoint %s has invalid filters (%s); treated as not matching", endpoint.pk, exc)
        return Acceptance(False, f"the endpoint's filters are invalid: {exc}")
    if not result.matched:
        return Acceptance(False, f"the endpoint's filters do not match: {result.reason}")
    return Acceptance(True, "matches")


# --- replay: planning -------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayTarget:
    """One replay to create: event ``event_pk`` to endpoint ``endpoint_id``; ``replay_of_id``
    is the original (first non-replay) delivery of that pair, or ``None``."""

    event_pk: int
    endpoint_id: int
    replay_of_id: int | None


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay would create; ``limit_reached`` says more would have matched."""

    targets: list[ReplayTarget]
    limit_reached: bool


def candidate_events(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    event_type: str | None = None,
    event_ids: Sequence[str] | None = None,
    endpoint: WebhookEndpoint | None = None,
    environments: Sequence[str] = (),
) -> QuerySet[Event]:
    """Events a replay looks at, oldest received first: ``received_at`` in ``[since, until)``
    (our clock, not the publisher's ``timestamp``), ``event_type`` exact/``prefix.*``/``*``,
    ``event_ids`` (client ids); with ``endpoint``, only its environment and the event types its
    patterns match (payload filters are checked per event in ``plan_replay``)."""
    queryset = Event.objects.select_related("event_type").filter(event_type_q(event_type, "event_type__name"))
    if since is not None:
        queryset = queryset.filter(received_at__gte=since)
    if until is not None:
        queryset = queryset.filter(received_at__lt=until)
    if event_ids:
        queryset = queryset.filter(event_id__in=list(event_ids))
    if environments:
        queryset = queryset.filter(environment__in=list(environments))
    if endpoint is not None:
        names = [name for name in EventType.objects.values_list("name", flat=True)
                 if event_type_matches(endpoint.events or [], name)]
        queryset = queryset.filter(environment=endpoint.environment, event_type__name__in=names)
    return queryset.order_by("received_at", "id")


def _batched(queryset: QuerySet, size: int) -> Iterator[list]:
    batch = []
    for row in queryset.iterator(chunk_size=size):
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def delivery_history(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], list[dict]]:
    """Existing deliveries of each ``(event pk, endpoint id)`` pair, oldest first, as dicts with
    ``id``, ``event_id``, ``endpoint_id``, ``status``, ``is_replay``; pairs without any are absent."""
    pairs = list(pairs)
    if not pairs:
        return {}
    rows = (Delivery.objects.filter(event_id__in={e for e, _ in pairs}, endpoint_id__in={p for _, p in pairs})
            .order_by("id").values("id", "event_id", "endpoint_id", "status", "is_replay"))
    history: dict[tuple[int, int], list[dict]] = {}
    for row in rows:
        history.setdefault((row["event_id"], row["endpoint_id"]), []).append(row)
    return history


def plan_replay(
    *,
    events: QuerySet[Event],
    endpoint: WebhookEndpoint | None = None,
    statuses: Sequence[str] | None = None,
    only_failed: bool = False,
    limit: int | None = MAX_BULK,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayPlan:
    """Which replays ``events`` (``candidate_events``) produce, without writing anything.

    Each event goes to ``endpoint`` or, without one, to every endpoint that accepts it now
    (``endpoint_accepts``). ``statuses``: keep only pairs whose latest delivery has one of these
    statuses (pairs never delivered are dropped). ``only_failed``: keep only pairs the endpoint
    has not received and is not about to receive — no delivery of the pair succeeded or is
    pending, in flight or retrying (so failed, dead-lettered, discarded and never-sent events).
    ``limit``: stop after that many replays (``None``: no limit, for the commands).
    ``on_progress(n)`` is called after each batch of ``n`` events.
    """
    from events.services import filter_envelope  # events.services imports this package

    if endpoint is not None:
        endpoints = [endpoint]
    else:
        endpoints = list(WebhookEndpoint.objects.filter(status__in=REPLAYABLE_ENDPOINT_STATUSES)
                         .only("id", "events", "status", "filters", "environment"))
    targets: list[ReplayTarget] = []
    for batch in _batched(events, BATCH_SIZE):
        pairs = []
        for event in batch:
            envelope = filter_envelope(event)
            pairs.extend((event.pk, candidate.pk) for candidate in endpoints
                         if endpoint_accepts(endpoint=candidate, event=event, envelope=envelope).accepted)
        history = delivery_history(pairs)
        for pair in pairs:
            rows = history.get(pair, [])
            if statuses is not None and (not rows or rows[-1]["status"] not in statuses):
                continue
            if only_failed and any(row["status"] in _RECEIVED_OR_COMING for row in rows):
                continue
            if limit is not None and len(targets) >= limit:
                return ReplayPlan(targets=targets, limit_reached=True)
            original = next((row["id"] for row in rows if not row["is_replay"]), None)
            targets.append(ReplayTarget(event_pk=pair[0], endpoint_id=pair[1], replay_of_id=original))
        if on_progress is not None:
            on_progress(len(batch))
    return ReplayPlan(targets=targets, limit_reached=False)
