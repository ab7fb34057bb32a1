"""Delivery under stress (issue 4): the gates an attempt passes before it is sent, and what an
attempt's outcome does to the endpoint afterwards.

Before sending (``gate_delivery``), in this order, none of which spends an attempt:

1. **Per-endpoint concurrency cap** — at most ``WEBHOOK_ENDPOINT_MAX_IN_FLIGHT`` attempts to one
   endpoint at a time, so a slow or hanging receiver cannot occupy every worker slot; the rest
   wait ``WEBHOOK_BUSY_RETRY_SECONDS``.
2. **Circuit breaker** (``endpoints.health``) — while open, deliveries go to the ``failover_url``
   if there is one, else wait for the half-open trial.
3. **Failover** — right after a retryable failure at the primary URL, the next attempt (sent at
   once, no backoff) goes to the ``failover_url``, signed the same way.
4. **Rate limit** — ``rate_limit_per_minute`` slots, counted atomically in the database across
   workers; over the limit, the delivery waits for the next minute.

After an attempt at the primary URL (``after_attempt``): the circuit and failure streak are
updated; ``410 Gone`` or ``WEBHOOK_AUTO_DISABLE_AFTER_SECONDS`` of uninterrupted failure disable
the endpoint (``system.health_alert`` event + mail to ``owner_email``); ``401``/``403`` tell the
owner (mail + ``system.error`` event, at most once per ``WEBHOOK_OWNER_ALERT_INTERVAL_SECONDS``).
The beat task ``probe_disabled_endpoints`` sends a signed test event to each endpoint the service
disabled itself and re-enables it on a 2xx.

Alerts are atomic with the change they report (a transactional outbox: the event row and its
delivery rows are the outbox, their wake-ups are sent on commit). The automatic disable, the
re-enable and the 401/403 throttle claim (``last_owner_alert_at``) commit in ONE transaction with
their alert event, so a worker killed in between (OOM, deploy, SIGKILL) leaves neither: the
endpoint stays as it was and the next outcome decides again, instead of a disabled endpoint nobody
was told about, or an alert suppressed for the whole interval without ever being sent. The owner
mail is sent after commit (``transaction.on_commit``), best effort. If the publish itself fails
(an ``Exception``: the event type was deleted from the catalog, a database error, ...), only the
publish is rolled back (it runs in a savepoint) and logged with ``logger.exception``; the state
change still commits and the mail still goes out: an endpoint failing for days must not stay
enabled because its alert cannot be written (the alert event is then missing; the log says so).
"""
import contextlib
import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt
from endpoints import services as endpoint_services
from endpoints.models import EndpointHealth, WebhookEndpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateResult:
    """``allowed`` with the ``url`` to use (primary or failover), or wait until ``wait_until``
    (``reason`` says why: ``busy``, ``circuit_open``, ``rate_limited``)."""

    allowed: bool
    url: str = ""
    wait_until: datetime | None = None
    reason: str = ""


def _failed_at_primary_last_time(delivery: Delivery, endpoint: WebhookEndpoint) -> bool:
    if not delivery.attempt_count:
        return False
    last = DeliveryAttempt.objects.filter(delivery_id=delivery.pk).order_by("-attempt_number", "-id").only(
        "url", "outcome").first()
    return last is not None and last.url == endpoint.url and last.outcome == DeliveryAttempt.Outcome.RETRY


def gate_delivery(*, delivery: Delivery, endpoint: WebhookEndpoint, check_busy: bool = True) -> GateResult:
    """Decide whether (and where) the next attempt of ``delivery`` may be sent now. ``check_busy``
    False skips the concurrency cap: the batch worker applies it when it claims (``batch``)."""
    now = timezone.now()
    busy = (Delivery.objects.filter(endpoint_id=endpoint.pk, status=Delivery.Status.IN_FLIGHT).count()
            if check_busy else 0)
    if busy >= settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT:
        return GateResult(False, wait_until=now + timedelta(seconds=settings.WEBHOOK_BUSY_RETRY_SECONDS), reason="busy")
    url = endpoint.url
    circuit = endpoint_services.check_circuit(endpoint_id=endpoint.pk)
    if circuit.decision == "wait":
        if not endpoint.failover_url:
            return GateResult(False, wait_until=circuit.retry_at, reason="circuit_open")
        url = endpoint.failover_url
    elif endpoint.failover_url and _failed_at_primary_last_time(delivery, endpoint):
        url = endpoint.failover_url
    next_slot = endpoint_services.take_rate_limit_slot(endpoint_id=endpoint.pk,
                                                       limit_per_minute=endpoint.rate_limit_per_minute)
    if next_slot is not None:
        return GateResult(False, wait_until=next_slot, reason="rate_limited")
    return GateResult(True, url=url)


def after_attempt(*, delivery: Delivery, endpoint: WebhookEndpoint, url: str, status_code: int | None,
                  error_class: str) -> None:
    """Apply an attempt's outcome to the endpoint (see the module docstring). Never raises an
    ``Exception``: a failure here is logged and must not lose the recorded attempt (a
    ``BaseException`` such as ``SystemExit``, the process going away, propagates; whatever it
    interrupted is rolled back whole)."""
    try:
        if url == endpoint.url:
            record_endpoint_outcome(endpoint=endpoint, status_code=status_code, error_class=error_class)
        if status_code in (401, 403) and not _is_own_alert(delivery):
            _announce(endpoint=endpoint, event_type="system.error", change="authentication_failed",
                      reason=f"The receiver answered {status_code} to delivery {delivery.public_id}.", throttle=True)
    except Exception:  # health bookkeeping must never fail the delivery
        logger.exception("Updating the health of endpoint %s failed", endpoint.pk)


def record_endpoint_outcome(*, endpoint: WebhookEndpoint, status_code: int | None, error_class: str):
    """Update the endpoint's shared health with one outcome at its primary URL; announce an
    automatic disable (``system.health_alert`` + owner mail) in the disable's own transaction
    (module docstring). Returns the ``HealthChange``; ``endpoint`` is refreshed when disabled."""

    def announce_disable() -> None:
        endpoint.refresh_from_db()
        _announce(endpoint=endpoint, event_type=endpoint_services.HEALTH_ALERT_EVENT_TYPE,
                  change="endpoint_disabled", reason=endpoint.status_reason, throttle=False)

    change = endpoint_services.record_health(endpoint_id=endpoint.pk, status_code=status_code,
                                             error_class=error_class, on_disabled=announce_disable)
    if change.opened:
        logger.warning("Circuit opened for endpoint %s", endpoint.pk)
    if change.closed and change.held_until is not None:
        _release_held(endpoint=endpoint, until=change.held_until)
    return change


def _release_held(*, endpoint: WebhookEndpoint, until: datetime) -> int:
    """The circuit just closed: the endpoint's deliveries that its open circuit held back become
    due now, and wake-ups are enqueued. Those are exactly the ones waiting until ``until``, the
    circuit's last ``next_probe_at``: the gate holds a delivery until the stored ``next_probe_at``
    (the cool-down's end, or the trial's deadline; ``endpoints.services.check_circuit``). Other
    waits (a retry's own backoff, a receiver's ``Retry-After``, a rate limit) end at other times and
    are left alone. Without this, the deliveries that lost the race for the trial waited until the
    trial's deadline (``WEBHOOK_MAX_TIMEOUT_SECONDS`` + ``WEBHOOK_CLAIM_MARGIN_SECONDS``, 90 s by
    default) after the trial had succeeded; found by the README walk, which promises they "go out
    at once". Returns how many were released."""
    from deliveries.services import batch

    now = timezone.now()
    if until <= now:
        return 0  # already due
    released = Delivery.objects.filter(
        endpoint_id=endpoint.pk, status__in=Delivery.DUE_STATUSES, next_attempt_at=until,
    ).update(next_attempt_at=now, updated_at=now)
    if released:
        logger.info("Circuit closed for endpoint %s: %s held deliveries are due now", endpoint.pk, released)
        batch.enqueue_wakeups_on_commit(deliveries=released)
    return released


def _is_own_alert(delivery: Delivery) -> bool:
    # An alert about a failing endpoint delivered to that same endpoint must not alert again (a loop).
    event = delivery.event
    return event.event_type.name.startswith("system.") and (event.metadata or {}).get(
        "source_service") == settings.WEBHOOK_SOURCE_SERVICE


def _announce(*, endpoint: WebhookEndpoint, event_type: str, change: str, reason: str, throttle: bool) -> None:
    """Publish a system event about ``endpoint`` and, after commit, mail its owner; throttled ones
    at most once per ``WEBHOOK_OWNER_ALERT_INTERVAL_SECONDS`` per endpoint (a conditional update
    decides).

    Transactions (module docstring): called inside the transaction of the change it reports (the
    disable or re-enable), it joins it; the throttle's claim and the event commit together here.
    Either way nothing is published or claimed unless all of it commits. A publish that raises an
    ``Exception`` is rolled back alone (savepoint) and logged; the change, the claim and the mail
    go ahead."""
    from events import services as event_services

    now = timezone.now()
    with transaction.atomic():
        if throttle:
            cutoff = now - timedelta(seconds=settings.WEBHOOK_OWNER_ALERT_INTERVAL_SECONDS)
            EndpointHealth.objects.get_or_create(pk=endpoint.pk)
            won = EndpointHealth.objects.filter(
                Q(last_owner_alert_at__isnull=True) | Q(last_owner_alert_at__lt=cutoff), pk=endpoint.pk
            ).update(last_owner_alert_at=now)
            if not won:
                return
        data = {"alert": {"name": change, "severity": "critical" if "disabled" in change else "warning",
                          "service": "webhooks", "triggered_at": now.isoformat()},
                "endpoint": {"id": endpoint.pk, "name": endpoint.name, "url": endpoint.url, "status": endpoint.status},
                "reason": reason}
        try:
            with transaction.atomic():
                event_services.publish(
                    event_type=event_type, data=data, environment=endpoint.environment, back_pressure=False,
                    metadata={"source_service": settings.WEBHOOK_SOURCE_SERVICE, "endpoint_id": endpoint.pk})
        except Exception:  # an alert that cannot be written must not undo the change it reports
            logger.exception("Publishing the %s alert %r about endpoint %s failed; the change itself stands",
                             event_type, change, endpoint.pk)
        if endpoint.owner_email:
            transaction.on_commit(functools.partial(
                send_mail, subject=f"[Vocelio Webhooks] {endpoint.name}: {change.replace('_', ' ')}",
                message=f"Endpoint {endpoint.name} ({endpoint.url})\n\n{reason}\n",
                from_email=None, recipient_list=[endpoint.owner_email], fail_silently=True,
            ), robust=True)


@dataclass(frozen=True)
class ProbeResult:
    """Counts from one probe run."""

    probed: int
    reenabled: int


PROBE_RUN_KEY = "probe-disabled-endpoints-run"


def probe_disabled_endpoints() -> ProbeResult:
    """Beat task body: send a signed test event to every endpoint the service disabled itself
    (``EndpointHealth.auto_disabled_at``); a 2xx re-enables it (``system.health_alert`` event in
    the same transaction, and a mail to the owner after commit). Endpoints disabled by a person are
    left alone."""
    from deliveries.services.attempts import send_test
    from events.models import EventType

    event_type = EventType.objects.filter(name=endpoint_services.HEALTH_ALERT_EVENT_TYPE).first()
    if event_type is None:
        # Protected in the admin (events/service_types.py), so only a hand-made SQL delete gets here.
        logger.error("No %s event type: endpoints the service disabled are not probed (see events/service_types.py)",
                     endpoint_services.HEALTH_ALERT_EVENT_TYPE)
        return ProbeResult(probed=0, reenabled=0)
    # One run at a time (every process sharing the cache): a run sends to each endpoint for up to
    # its timeout, so it can outlast WEBHOOK_PROBE_INTERVAL_SECONDS, and each run beat enqueued
    # meanwhile probed everything again in another worker process, taken before any delivery (the
    # maintenance queue comes first). The claim expires with Celery's hard time limit, so a killed
    # run holds the next ones back for that long at most.
    token = uuid.uuid4().hex
    try:
        claimed = cache.add(PROBE_RUN_KEY, token, timeout=settings.CELERY_TASK_TIME_LIMIT)
    except Exception:  # a cache (Redis) outage must not stop the probes: run unguarded, as before
        logger.warning("Cache unavailable; probing without the one-run-at-a-time claim", exc_info=True)
        claimed, token = True, None
    if not claimed:
        logger.info("A probe run is under way; this one probes nothing")
        return ProbeResult(probed=0, reenabled=0)
    probed = reenabled = 0
    try:
        for endpoint in WebhookEndpoint.objects.filter(status=WebhookEndpoint.Status.DISABLED,
                                                       health__auto_disabled_at__isnull=False):
            probed += 1
            outcome = send_test(endpoint=endpoint, event_type=event_type,
                                data={"probe": True, "reason": "re-enable check after automatic disable"})
            if outcome.success and endpoint_services.reenable_automatically(
                    endpoint_id=endpoint.pk, on_reenabled=functools.partial(_announce_reenable, endpoint=endpoint)):
                reenabled += 1
    finally:
        if token is not None:
            with contextlib.suppress(Exception):  # else the claim expires with the time limit
                if cache.get(PROBE_RUN_KEY) == token:
                    cache.delete(PROBE_RUN_KEY)
    return ProbeResult(probed=probed, reenabled=reenabled)


def _announce_reenable(*, endpoint: WebhookEndpoint) -> None:
    # Runs in the re-enable's transaction (endpoints.services.reenable_automatically).
    endpoint.refresh_from_db()
    _announce(endpoint=endpoint, event_type=endpoint_services.HEALTH_ALERT_EVENT_TYPE, change="endpoint_reenabled",
              reason="The probe got a 2xx answer; deliveries resume.", throttle=False)
