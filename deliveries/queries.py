"""Read-side functions over deliveries and attempts (HackSoft's selectors; writes live in
``deliveries.services``): the retention purge preview and the per-endpoint health table of the
operator commands, and the event type a test send uses."""
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import EndpointHealth, WebhookEndpoint
from events.models import Event, EventType


# --- retention purge preview --------------------------------------------------------------------
@dataclass(frozen=True)
class PurgePreview:
    """Rows a retention purge would touch now, counted the way ``PurgeResult`` counts them
    (children deleted with their delivery or event are counted in their own table)."""

    attempt_bodies_blanked: int
    attempts_deleted: int
    deliveries_deleted: int
    events_deleted: int

    @property
    def total(self) -> int:
        return self.attempt_bodies_blanked + self.attempts_deleted + self.deliveries_deleted + self.events_deleted


def retention_cutoffs(
    *, now: datetime, events_days: int | None = None, deliveries_days: int | None = None,
    attempts_days: int | None = None, successful_bodies_days: int | None = None,
) -> dict[str, datetime | None]:
    """The cut-off time of each purge step for the given periods (each defaults to its
    ``WEBHOOK_RETENTION_*`` setting; a period of 0 or less turns the step off: ``None``), as
    ``deliveries.services.retention.purge_expired_data`` reads them."""
    def cutoff(value: int | None, setting: int) -> datetime | None:
        days = setting if value is None else value
        return now - timedelta(days=days) if days > 0 else None

    return {
        "successful_bodies": cutoff(successful_bodies_days, settings.WEBHOOK_RETENTION_SUCCESSFUL_BODIES_DAYS),
        "attempts": cutoff(attempts_days, settings.WEBHOOK_RETENTION_ATTEMPTS_DAYS),
        "deliveries": cutoff(deliveries_days, settings.WEBHOOK_RETENTION_DELIVERIES_DAYS),
        "events": cutoff(events_days, settings.WEBHOOK_RETENTION_EVENTS_DAYS),
    }


def purge_preview(
    *, now: datetime | None = None, events_days: int | None = None, deliveries_days: int | None = None,
    attempts_days: int | None = None, successful_bodies_days: int | None = None,
) -> PurgePreview:
    """Count what ``purge_expired_data`` would blank and delete with the same arguments, without
    writing (the ``purge --dry-run`` preview; the service has no dry-run mode).

    The rules are the service's (``deliveries/services/retention.py``): successful attempts with a
    body older than the bodies period are blanked; attempts, deliveries and events older than
    their periods are deleted, except anything belonging to a delivery that is not final; an
    event's deliveries and attempts, and a delivery's attempts, go with it. Each row is counted
    once, in its own table, as the service counts cascades. ``tests/deliveries/test_commands.py``
    checks the preview equals a real run, so the two cannot drift apart unnoticed. Four
    ``COUNT`` queries; raises only database errors.
    """
    now = now or timezone.now()
    cut = retention_cutoffs(now=now, events_days=events_days, deliveries_days=deliveries_days,
                            attempts_days=attempts_days, successful_bodies_days=successful_bodies_days)
    final = list(Delivery.FINAL_STATUSES)
    live = Delivery.objects.filter(event=OuterRef("pk")).exclude(status__in=final)
    expired_events = (Event.objects.filter(received_at__lt=cut["events"]).exclude(Exists(live))
                      if cut["events"] else None)

    blanked = 0
    if cut["successful_bodies"]:
        blanked = DeliveryAttempt.objects.filter(
            Q(request_body__gt="") | Q(response_body__gt=""),
            outcome=DeliveryAttempt.Outcome.SUCCEEDED, created_at__lt=cut["successful_bodies"],
        ).count()

    delivery_rules = []
    if cut["deliveries"]:
        delivery_rules.append(Q(created_at__lt=cut["deliveries"], status__in=final))
    if expired_events is not None:
        delivery_rules.append(Q(event__in=expired_events))
    doomed_deliveries = Delivery.objects.filter(_any(delivery_rules)) if delivery_rules else None
    deliveries = doomed_deliveries.count() if doomed_deliveries is not None else 0

    attempt_rules = []
    if cut["attempts"]:
        attempt_rules.append(Q(created_at__lt=cut["attempts"], delivery__status__in=final))
    if doomed_deliveries is not None:
        attempt_rules.append(Q(delivery__in=doomed_deliveries.values("pk")))
    attempts = DeliveryAttempt.objects.filter(_any(attempt_rules)).count() if attempt_rules else 0

    events = expired_events.count() if expired_events is not None else 0
    return PurgePreview(attempt_bodies_blanked=blanked, attempts_deleted=attempts, deliveries_deleted=deliveries,
                        events_deleted=events)


def _any(rules: list[Q]) -> Q:
    combined = rules[0]
    for rule in rules[1:]:
        combined |= rule
    return combined


# --- endpoint health table ----------------------------------------------------------------------
@dataclass(frozen=True)
class EndpointHealthRow:
    """One endpoint as ``endpoint_health`` shows it. ``success_rate_24h`` is the share (0–1) of
    the endpoint's attempts in the last 24 hours that succeeded, ``None`` without attempts; last
    success/failure are the newest attempt of each kind (``None``: none kept)."""

    id: int
    name: str
    host: str
    environment: str
    status: str
    circuit_state: str
    consecutive_failures: int
    next_probe_at: datetime | None
    attempts_24h: int
    success_rate_24h: float | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    pending: int
    retrying: int
    dead_lettered: int

    def as_dict(self) -> dict:
        """JSON-ready: datetimes as ISO-8601 strings."""
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(self).items()}


def endpoint_health_rows(
    *, statuses: list[str] | None = None, endpoint_ids: list[int] | None = None, now: datetime | None = None,
) -> list[EndpointHealthRow]:
    """Every endpoint (or those with one of ``statuses`` / ids in ``endpoint_ids``), ordered by
    id, with its circuit breaker state (``EndpointHealth``; closed with 0 failures when it has no
    row yet), attempt success rate over the 24 hours before ``now``, newest success and failure,
    and how many of its deliveries are pending, retrying and dead-lettered.

    Four queries whatever the number of endpoints (endpoints with health, delivery counts,
    24-hour attempt counts, newest attempts), each grouped by endpoint.
    """
    now = now or timezone.now()
    endpoints = WebhookEndpoint.objects.select_related("health").order_by("pk")
    if statuses:
        endpoints = endpoints.filter(status__in=statuses)
    if endpoint_ids:
        endpoints = endpoints.filter(pk__in=endpoint_ids)
    endpoints = list(endpoints)
    ids = [endpoint.pk for endpoint in endpoints]

    waiting = {(row["endpoint_id"], row["status"]): row["n"] for row in Delivery.objects.filter(
        endpoint_id__in=ids,
        status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING, Delivery.Status.DEAD_LETTERED],
    ).values("endpoint_id", "status").annotate(n=Count("pk")).order_by()}
    succeeded = Q(outcome=DeliveryAttempt.Outcome.SUCCEEDED)
    recent = {row["delivery__endpoint_id"]: row for row in DeliveryAttempt.objects.filter(
        delivery__endpoint_id__in=ids, created_at__gte=now - timedelta(hours=24),
    ).values("delivery__endpoint_id").annotate(total=Count("pk"), ok=Count("pk", filter=succeeded)).order_by()}
    newest = {row["delivery__endpoint_id"]: row for row in DeliveryAttempt.objects.filter(
        delivery__endpoint_id__in=ids,
    ).values("delivery__endpoint_id").annotate(
        last_ok=Max("created_at", filter=succeeded), last_failed=Max("created_at", filter=~succeeded),
    ).order_by()}

    rows = []
    for endpoint in endpoints:
        health = getattr(endpoint, "health", None)
        counts = recent.get(endpoint.pk) or {"total": 0, "ok": 0}
        times = newest.get(endpoint.pk) or {}
        rows.append(EndpointHealthRow(
            id=endpoint.pk, name=endpoint.name, host=urlsplit(endpoint.url).netloc or endpoint.url,
            environment=endpoint.environment, status=endpoint.status,
            circuit_state=health.circuit_state if health else EndpointHealth.CircuitState.CLOSED,
            consecutive_failures=health.consecutive_failures if health else 0,
            next_probe_at=health.next_probe_at if health else None,
            attempts_24h=counts["total"],
            success_rate_24h=counts["ok"] / counts["total"] if counts["total"] else None,
            # The health row's times survive the retention purge of attempts; take the newer.
            last_success_at=_newest(times.get("last_ok"), health.last_success_at if health else None),
            last_failure_at=_newest(times.get("last_failed"), health.last_failure_at if health else None),
            pending=waiting.get((endpoint.pk, Delivery.Status.PENDING), 0),
            retrying=waiting.get((endpoint.pk, Delivery.Status.RETRYING), 0),
            dead_lettered=waiting.get((endpoint.pk, Delivery.Status.DEAD_LETTERED), 0),
        ))
    return rows


def _newest(*values: datetime | None) -> datetime | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


# --- test sends ---------------------------------------------------------------------------------
def event_type_for_test_send(*, endpoint: WebhookEndpoint, name: str | None = None) -> EventType | None:
    """The event type of a test send to ``endpoint``: ``name``, else the endpoint's first exact
    (wildcard-free) event type, else ``lead.created`` — the rule of ``POST /endpoints/{id}/test``.
    ``None`` when no such type exists."""
    if name is None:
        exact = [pattern for pattern in (endpoint.events or []) if "*" not in pattern]
        name = exact[0] if exact else "lead.created"
    return EventType.objects.filter(name=name).first()
