"""Read side of alerting: the measurements the rules compare with their thresholds, and the
firing alerts ``/metrics`` exposes to autoscalers. Interpretations of the seed's rules:

* ``delivery_failure_rate_percent`` — percent of delivery attempts recorded in the last
  ``period_seconds`` whose outcome is not ``succeeded`` (a retry counts: the receiver failed that
  time). Global. Attempts of the service's own ``system.*`` events (alerts, owner notices) are not
  counted, so an operator endpoint that is down cannot keep the failure-rate alert alive by
  failing to receive that very alert.
* ``endpoint_avg_response_time_ms`` — mean ``duration_ms`` of one endpoint's attempts in the
  window, timeouts included (a timeout is the slowest answer there is), every event type counted
  (an alert delivered slowly to a slow endpoint cannot start a second episode: one active alert
  per endpoint). The mean, not p95: it is one portable SQL aggregate on SQLite and PostgreSQL,
  and with ``min_samples`` it still ignores a lone slow request.
* ``queue_backlog_deliveries`` — deliveries that are due now (``pending``/``retrying`` whose next
  attempt is not in the future) for active endpoints: work more workers could do right now.
  Retries waiting out their backoff and deliveries of paused endpoints are excluded, since more
  capacity would not send them any sooner.
"""
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, Max, Min, Q

from analytics.models import Alert, AlertRule
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import WebhookEndpoint
from events.models import EventType


@dataclass(frozen=True)
class Measurement:
    """One metric value for one scope. ``value`` is None when there is no data (fewer than the
    rule's ``min_samples``). ``details`` are the counts behind the value, stored on the alert."""

    scope_key: str
    value: float | None
    samples: int
    endpoint_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def endpoint_scope(endpoint_id: int) -> str:
    """The ``Alert.scope_key`` of an endpoint: ``endpoint:<id>``."""
    return f"endpoint:{endpoint_id}"


def _attempts(*, since: datetime, until: datetime):
    return DeliveryAttempt.objects.filter(created_at__gt=since, created_at__lte=until)


def _own_notice_attempts(attempts):
    """The attempts among ``attempts`` that carried the service's own ``system.*`` events."""
    # Event.metadata is JSON stored as text (key order kept), so it offers no key lookups; publish
    # writes it compactly, which makes this substring the exact key/value pair.
    marker = json.dumps({"source_service": settings.WEBHOOK_SOURCE_SERVICE}, ensure_ascii=False,
                        separators=(",", ":"))[1:-1]
    system_types = list(EventType.objects.filter(category="system").values_list("id", flat=True))
    return attempts.filter(delivery__event__event_type_id__in=system_types, delivery__event__metadata__contains=marker)


def measure_delivery_failure_rate(*, period_seconds: int, min_samples: int, now: datetime) -> dict[str, Measurement]:
    """Failed attempts in ``(now - period_seconds, now]`` as a percentage (0-100) of all counted
    attempts there (see the module docstring); one global measurement."""
    window = _attempts(since=now - timedelta(seconds=period_seconds), until=now)
    counting = {"total": Count("id"), "failed": Count("id", filter=~Q(outcome=DeliveryAttempt.Outcome.SUCCEEDED))}
    # Two cheap counts and a subtraction: excluding through the event join costs ~6x more
    # (PostgreSQL, 100,000 attempts in the window: 543 ms against 93 ms).
    counts, own = window.aggregate(**counting), _own_notice_attempts(window).aggregate(**counting)
    total, failed = counts["total"] - own["total"], counts["failed"] - own["failed"]
    value = round(100.0 * failed / total, 3) if total and total >= min_samples else None
    details = {"failed_attempts": failed, "total_attempts": total, "window_seconds": period_seconds}
    return {Alert.GLOBAL_SCOPE: Measurement(Alert.GLOBAL_SCOPE, value, total, details=details)}


def measure_endpoint_response_times(*, period_seconds: int, min_samples: int, now: datetime) -> dict[str, Measurement]:
    """Mean attempt ``duration_ms`` per endpoint over ``(now - period_seconds, now]``; one
    measurement per endpoint that had attempts (value None below ``min_samples``)."""
    rows = (
        _attempts(since=now - timedelta(seconds=period_seconds), until=now)
        .filter(delivery__endpoint_id__isnull=False)
        .values("delivery__endpoint_id")
        .annotate(samples=Count("id"), avg_ms=Avg("duration_ms"), max_ms=Max("duration_ms"), min_ms=Min("duration_ms"))
    )
    result = {}
    for row in rows:
        endpoint_id, samples = row["delivery__endpoint_id"], row["samples"]
        value = round(float(row["avg_ms"]), 1) if samples >= min_samples else None
        details = {"attempts": samples, "max_duration_ms": row["max_ms"], "min_duration_ms": row["min_ms"],
                   "window_seconds": period_seconds}
        scope = endpoint_scope(endpoint_id)
        result[scope] = Measurement(scope, value, samples, endpoint_id=endpoint_id, details=details)
    return result


def measure_queue_backlog(*, now: datetime) -> dict[str, Measurement]:
    """Deliveries due now for active endpoints (see the module docstring); one global measurement
    with the ``pending``/``retrying`` split and the age of the oldest in ``details``."""
    due = Delivery.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        status__in=Delivery.DUE_STATUSES, endpoint__status=WebhookEndpoint.Status.ACTIVE,
    )
    counts = due.aggregate(
        total=Count("id"), pending=Count("id", filter=Q(status=Delivery.Status.PENDING)),
        retrying=Count("id", filter=Q(status=Delivery.Status.RETRYING)), oldest=Min("next_attempt_at"),
    )
    oldest = counts["oldest"]
    details = {"pending": counts["pending"], "retrying": counts["retrying"],
               "oldest_due_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0.0}
    measurement = Measurement(Alert.GLOBAL_SCOPE, float(counts["total"]), counts["total"], details=details)
    return {Alert.GLOBAL_SCOPE: measurement}


def measure(*, rule: AlertRule, now: datetime) -> dict[str, Measurement]:
    """The measurements of ``rule``'s metric, by scope key."""
    metric = AlertRule.Metric
    if rule.metric == metric.DELIVERY_FAILURE_RATE_PERCENT:
        return measure_delivery_failure_rate(period_seconds=rule.period_seconds, min_samples=rule.min_samples, now=now)
    if rule.metric == metric.ENDPOINT_AVG_RESPONSE_TIME_MS:
        return measure_endpoint_response_times(period_seconds=rule.period_seconds, min_samples=rule.min_samples,
                                               now=now)
    if rule.metric == metric.QUEUE_BACKLOG_DELIVERIES:
        return measure_queue_backlog(now=now)
    raise ValueError(f"Unknown alert metric {rule.metric!r}")


@dataclass(frozen=True)
class FiringAlertSample:
    """One firing alert as ``/metrics`` exposes it: labels (``rule``, ``metric``, ``action``,
    ``scope``) and values (``value`` is the last measurement, ``threshold`` the rule's;
    ``capacity_ratio`` = value / threshold, ≥ 1 while firing — an autoscaler's scale factor)."""

    rule: str
    metric: str
    action: str
    scope: str
    endpoint_id: int | None
    value: float
    threshold: float
    capacity_ratio: float
    fired_at: datetime


def firing_alerts_for_metrics() -> list[FiringAlertSample]:
    """Every firing alert (one query), for the Prometheus exposition in ``/metrics``: e.g.
    ``vocelio_alert_firing{rule,metric,action,scope} 1`` and, for ``scale_processing_capacity``,
    ``vocelio_alert_capacity_ratio{rule} value/threshold`` (README "Alerting")."""
    samples = []
    # An alert whose rule is gone (deleted outside ``delete_rule``) is left out: no rule gauge
    # names it, and the next evaluation resolves it.
    firing = Alert.objects.filter(status=Alert.Status.FIRING, rule__isnull=False).select_related("rule")
    for alert in firing.order_by("rule__name", "scope_key"):
        value = alert.last_value if alert.last_value is not None else (alert.value_at_fire or 0.0)
        threshold = alert.rule.threshold
        samples.append(FiringAlertSample(
            rule=alert.rule.name, metric=alert.rule.metric, action=alert.rule.action, scope=alert.scope_key,
            endpoint_id=alert.endpoint_id, value=value, threshold=threshold,
            capacity_ratio=round(value / threshold, 3) if threshold else 1.0, fired_at=alert.fired_at,
        ))
    return samples
