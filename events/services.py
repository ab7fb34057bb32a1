"""Publishing: store an event and fan it out to one delivery per matching endpoint."""
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery
from endpoints import routing as endpoint_routing
from endpoints.filters import FilterValidationError, evaluate_filters
from endpoints.models import WebhookEndpoint
from events.models import Environment, Event, EventType
from vocelio_webhooks.errors import ServiceUnavailable, ValidationFailed

logger = logging.getLogger(__name__)
EVENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}$")


@dataclass(frozen=True)
class PublishResult:
    """``created`` is False when ``event_id`` had been published before: ``event`` and
    ``deliveries`` are then the first publication's, and nothing new was created."""

    event: Event
    created: bool
    deliveries: list[Delivery] = field(default_factory=list)
    matched_endpoints: int = 0
    filtered_out: int = 0


def generate_event_id() -> str:
    """``evt_`` + 24 hex characters."""
    return f"evt_{secrets.token_hex(12)}"


def publish(
    *,
    event_type: str,
    data: dict[str, Any],
    event_id: str | None = None,
    timestamp: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    environment: str | None = None,
) -> PublishResult:
    """Publish an event (``POST /events/publish``).

    In one transaction: the ``Event`` row (idempotent on ``event_id``) and one ``pending``
    ``Delivery`` per endpoint of the same environment whose ``events`` patterns match, whose
    payload ``filters`` match (``endpoints.filters.evaluate_filters``; a filtered-out endpoint gets
    no delivery and is counted in ``filtered_out``) and whose status is ``active`` or ``paused``
    (a paused endpoint's deliveries wait; a disabled endpoint gets none). Wake-ups are enqueued after commit; if the broker is down they are logged and the
    sweep sends them. ``timestamp`` defaults to now and ``environment`` to
    ``WEBHOOK_DEFAULT_ENVIRONMENT``. Raises ``ValidationFailed`` (400) for an unknown event type,
    environment or malformed ``event_id``.

    Cost (issue 7): event types and endpoints come from the per-process routing cache
    (``endpoints.routing``, one primary-key SELECT of its version when nothing changed), and the
    idempotency check is the unique index itself: the INSERT is tried and a duplicate falls back to
    the first publication. So a new event costs BEGIN, two INSERTs and COMMIT besides that SELECT.
    """
    routing = endpoint_routing.current()
    type_route = routing.event_types.get(event_type)
    if type_route is None:
        raise ValidationFailed(
            f"Unknown event type {event_type!r}. Create it first (see GET /event-types).",
            details={"event_type": event_type}, code="UNKNOWN_EVENT_TYPE",
        )
    environment = environment or settings.WEBHOOK_DEFAULT_ENVIRONMENT
    if environment not in Environment.values:
        raise ValidationFailed(
            f"Unknown environment {environment!r}.", details={"allowed": Environment.values}, code="VALIDATION_ERROR"
        )
    if event_id is not None and not EVENT_ID_RE.match(event_id):
        raise ValidationFailed(
            "event_id must be 1-255 characters: letters, digits, '_', '.', ':' or '-'.",
            details={"event_id": event_id}, code="VALIDATION_ERROR",
        )
    event_id = event_id or generate_event_id()
    queue_full = _queue_full()
    if queue_full is not None:
        # A repeat of an event_id creates nothing, so it is answered (200, the first publication)
        # even while new events are refused.
        existing = _published(event_id)
        if existing is not None:
            return _duplicate(existing)
        raise queue_full
    # Matching needs only the event, not its row: done before the transaction, which then holds
    # its locks for the two INSERTs alone.
    event = Event(
        event_id=event_id, event_type=EventType(id=type_route.id, name=type_route.name,
                                                is_high_priority=type_route.is_high_priority),
        timestamp=timestamp or timezone.now(), data=data, metadata=metadata or {}, environment=environment,
    )
    subscribed = routing.subscribed(environment=environment, event_type=type_route.name)
    # No filter (null or []) matches everything: the envelope is only built when a filter needs it.
    envelope = None
    endpoints = []
    for endpoint in subscribed:
        if endpoint.filters is not None and endpoint.filters != []:
            envelope = envelope or filter_envelope(event)
            if not _filters_match(endpoint, envelope):
                continue
        endpoints.append(endpoint)
    try:
        with transaction.atomic():
            event.save(force_insert=True)
            now = timezone.now()
            deliveries = Delivery.objects.bulk_create(
                [Delivery(event=event, endpoint_id=endpoint.id, next_attempt_at=now) for endpoint in endpoints]
            )
            # Wake-ups, not one task per delivery: each claims a batch of whatever is due (issue 7).
            delivery_services.enqueue_wakeups_on_commit(
                deliveries=sum(1 for e in endpoints if e.status == WebhookEndpoint.Status.ACTIVE),
                queue="priority" if type_route.is_high_priority else None,
            )
    except IntegrityError:
        # event_id was published before (or a concurrent publish of it won): answer with the first.
        existing = _published(event_id)
        if existing is None:
            raise
        return _duplicate(existing)
    return PublishResult(
        event=event, created=True, deliveries=deliveries, matched_endpoints=len(endpoints),
        filtered_out=len(subscribed) - len(endpoints),
    )


def _published(event_id: str) -> Event | None:
    return Event.objects.select_related("event_type").filter(event_id=event_id).first()


_queue_size_seen: tuple[float, int] = (0.0, 0)  # (monotonic time, waiting deliveries) of the last count


def _queue_full() -> ServiceUnavailable | None:
    """The error that refuses a publish (503 ``QUEUE_FULL``) while more than
    ``WEBHOOK_MAX_QUEUE_SIZE`` deliveries wait (``pending``/``retrying``), else ``None``:
    back-pressure instead of an unbounded backlog. The count is taken at most once a second per
    process, so the limit is approximate by one second's worth."""
    global _queue_size_seen
    limit = settings.WEBHOOK_MAX_QUEUE_SIZE
    if not limit:
        return None
    import time

    seen_at, waiting = _queue_size_seen
    if time.monotonic() - seen_at > 1.0:
        waiting = Delivery.objects.filter(status__in=Delivery.DUE_STATUSES).count()
        _queue_size_seen = (time.monotonic(), waiting)
    if waiting >= limit:
        return ServiceUnavailable(
            f"{waiting} deliveries are waiting, at or above WEBHOOK_MAX_QUEUE_SIZE ({limit}); retry shortly.",
            details={"waiting": waiting, "max_queue_size": limit}, code="QUEUE_FULL",
        )
    return None


def filter_envelope(event: Event) -> dict[str, Any]:
    """The event as payload filters see it: the seed's envelope fields, ``timestamp`` as ISO-8601."""
    return {
        "event_type": event.event_type.name,
        "event_id": event.event_id,
        "timestamp": delivery_services.format_timestamp(event.timestamp),
        "data": event.data,
        "metadata": event.metadata,
    }


def _filters_match(endpoint: endpoint_routing.EndpointRoute, envelope: dict[str, Any]) -> bool:
    """Payload filters of one endpoint. Filters stored before a validation rule tightened may no
    longer validate: such an endpoint gets nothing (filters decide who may see what) and a
    warning is logged, instead of the whole publish failing."""
    try:
        return evaluate_filters(endpoint.filters, envelope).matched
    except FilterValidationError as exc:
        logger.warning("Endpoint %s has invalid filters (%s); event not routed to it", endpoint.id, exc)
        return False


def _duplicate(event: Event) -> PublishResult:
    deliveries = list(event.deliveries.order_by("id"))
    return PublishResult(event=event, created=False, deliveries=deliveries, matched_endpoints=len(deliveries))
