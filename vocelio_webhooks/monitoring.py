"""Readiness (``GET /health/ready``) and the heartbeats behind it.

``/health`` says the web process answers (liveness). Readiness says the whole service can do its
job: the database answers, the broker accepts a connection, at least one Celery worker and the
beat scheduler showed a sign of life within ``WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS``. Heartbeats
are rows in the database (``Heartbeat``), written by the worker and beat processes themselves
(``vocelio_webhooks.heartbeats``), because the database is the one store web, worker and beat
share in every deployment.

Check results never carry URLs, host names or exception messages (the endpoint is unauthenticated
and a broker URL may hold a password): only a status, ages in seconds, counts and an error class.
"""
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import Heartbeat

logger = logging.getLogger(__name__)

# Rows of processes gone for this long are deleted when their component next writes (a worker
# container gets a new node name at each restart).
STALE_ROW_RETENTION = timedelta(days=1)

OK = "ok"
FAIL = "fail"


def record_heartbeat(*, component: str, instance: str, seen_at: datetime | None = None) -> Heartbeat:
    """Store that ``instance`` of ``component`` (``Heartbeat.Component``: ``worker`` or
    ``beat``) is alive at ``seen_at`` (default now) and delete rows of the same component not
    seen for a day. Returns the row. Raises database errors (callers in Celery log them)."""
    seen_at = seen_at or timezone.now()
    heartbeat, _ = Heartbeat.objects.update_or_create(
        component=component, instance=instance[:255], defaults={"seen_at": seen_at}
    )
    Heartbeat.objects.filter(component=component, seen_at__lt=seen_at - STALE_ROW_RETENTION).delete()
    return heartbeat


def forget_heartbeat(*, component: str, instance: str) -> None:
    """Delete ``instance``'s heartbeat (a worker shutting down cleanly), so readiness notices at
    once instead of after ``WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS``."""
    Heartbeat.objects.filter(component=component, instance=instance[:255]).delete()


@dataclass(frozen=True)
class Readiness:
    """Result of ``check_readiness``: ``ready`` when every check passed; ``checks`` maps check
    name (``database``, ``broker``, ``worker``, ``beat``) to ``{"status": "ok"|"fail", ...}``."""

    ready: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_readiness(*, now: datetime | None = None) -> Readiness:
    """Run the four readiness checks and return a ``Readiness``; never raises.

    * ``database``: ``SELECT 1`` on the default connection.
    * ``broker``: a kombu connection to ``CELERY_BROKER_URL`` (Redis, or the embedded
      filesystem broker), waiting at most ``WEBHOOK_READY_BROKER_TIMEOUT_SECONDS``.
    * ``worker`` / ``beat``: the newest heartbeat of that component is at most
      ``WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS`` old; ``worker`` also counts fresh workers.
    """
    now = now or timezone.now()
    checks = {"database": _check_database(), "broker": _check_broker()}
    if checks["database"]["status"] == OK:
        checks.update(_check_heartbeats(now=now))
    else:
        skipped = {"status": FAIL, "error": "database_unavailable"}
        checks.update(worker=dict(skipped), beat=dict(skipped))
    return Readiness(ready=all(check["status"] == OK for check in checks.values()), checks=checks)


def _check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 — any driver error means "not ready"
        logger.warning("Readiness: database check failed (%s)", type(exc).__name__)
        return {"status": FAIL, "error": type(exc).__name__}
    return {"status": OK}


def _check_broker() -> dict[str, Any]:
    from vocelio_webhooks.celery import app

    timeout = settings.WEBHOOK_READY_BROKER_TIMEOUT_SECONDS
    try:
        with app.connection_for_read(connect_timeout=timeout) as conn:
            # One try, no retry loop: a probe must answer within the orchestrator's timeout.
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 — kombu/redis raise many types; the class is enough
        logger.warning("Readiness: broker check failed (%s)", type(exc).__name__)
        return {"status": FAIL, "error": type(exc).__name__}
    return {"status": OK}


def _check_heartbeats(*, now: datetime) -> dict[str, dict[str, Any]]:
    max_age = settings.WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS
    fresh_after = now - timedelta(seconds=max_age)
    results = {}
    for component in (Heartbeat.Component.WORKER, Heartbeat.Component.BEAT):
        rows = list(Heartbeat.objects.filter(component=component).values_list("seen_at", flat=True))
        newest = max(rows, default=None)
        check: dict[str, Any] = {
            "status": OK if newest is not None and newest >= fresh_after else FAIL,
            "last_seen_seconds_ago": None if newest is None else round(max((now - newest).total_seconds(), 0.0), 1),
            "max_age_seconds": max_age,
        }
        if component == Heartbeat.Component.WORKER:
            check["alive"] = sum(1 for seen_at in rows if seen_at >= fresh_after)
        if newest is None:
            check["error"] = "no_heartbeat"
        elif check["status"] == FAIL:
            check["error"] = "stale_heartbeat"
        results[component.value] = check
    return results


@dataclass(frozen=True)
class DeliveryState:
    """What ``/metrics`` reports from the database at one moment (counts of rows)."""

    waiting_by_status: dict[str, int]
    due: int
    held: int
    dead_letters: int
    circuits_by_state: dict[str, int]
    endpoints_by_status: dict[str, int]


def delivery_state(*, now: datetime | None = None) -> DeliveryState:
    """Read the delivery backlog and endpoint health counts for ``/metrics``.

    ``waiting_by_status``: deliveries ``pending``/``retrying``/``in_flight`` (every status
    present, 0 when none). ``due``: ``pending``/``retrying`` deliveries to *active* endpoints
    whose ``next_attempt_at`` is at or before ``now`` — the backlog more workers would drain
    (deliveries of paused endpoints and retries waiting for their backoff are not in it).
    ``held``: ``pending``/``retrying`` deliveries the sweep holds for a paused or disabled
    endpoint (``deliveries.services.sweep.hold_and_release``): the backlog a resume releases.
    ``dead_letters``: deliveries ``dead_lettered`` now. ``circuits_by_state`` and
    ``endpoints_by_status``: every choice, 0 when none (an endpoint without a health row counts
    as ``closed``). Six ``COUNT`` queries, all on indexed columns or small tables; raises
    database errors.
    """
    from django.db.models import Count

    from deliveries.models import Delivery
    from endpoints.models import EndpointHealth, WebhookEndpoint

    now = now or timezone.now()
    waiting_statuses = (Delivery.Status.PENDING, Delivery.Status.RETRYING, Delivery.Status.IN_FLIGHT)
    waiting = {status.value: 0 for status in waiting_statuses}
    for row in Delivery.objects.filter(status__in=waiting_statuses).values("status").annotate(n=Count("id")).order_by():
        waiting[row["status"]] = row["n"]
    due = Delivery.objects.filter(
        status__in=Delivery.DUE_STATUSES, next_attempt_at__lte=now, endpoint__status=WebhookEndpoint.Status.ACTIVE
    ).count()
    held = Delivery.objects.filter(status__in=Delivery.DUE_STATUSES, held=True).count()
    dead_letters = Delivery.objects.filter(status=Delivery.Status.DEAD_LETTERED).count()
    endpoints = dict.fromkeys(WebhookEndpoint.Status.values, 0)
    for row in WebhookEndpoint.objects.values("status").annotate(n=Count("id")).order_by():
        endpoints[row["status"]] = row["n"]
    circuits = dict.fromkeys(EndpointHealth.CircuitState.values, 0)
    for row in EndpointHealth.objects.values("circuit_state").annotate(n=Count("endpoint_id")).order_by():
        circuits[row["circuit_state"]] = row["n"]
    circuits[EndpointHealth.CircuitState.CLOSED] += sum(endpoints.values()) - sum(circuits.values())
    return DeliveryState(waiting_by_status=waiting, due=due, held=held, dead_letters=dead_letters,
                         circuits_by_state=circuits, endpoints_by_status=endpoints)
