"""Write side of alerting: evaluate the stored rules (beat task ``evaluate_alert_rules``), record
alerts with their values, announce them (``system.health_alert`` event + the rule's action), and
edit rules. Decisions come from ``analytics.alerts.decisions``; measurements from
``analytics.alerts.queries``."""
import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from analytics.alerts.decisions import (
    Decision,
    Transition,
    decide,
    format_period,
    pending_seconds,
)
from analytics.alerts.queries import Measurement, measure
from analytics.models import Alert, AlertRule
from endpoints.models import WebhookEndpoint
from events import services as event_services
from vocelio_webhooks.errors import Conflict, ServiceError, ValidationFailed

logger = logging.getLogger(__name__)
ALERT_EVENT_TYPE = "system.health_alert"
SEVERITY = {
    AlertRule.Action.ALERT_OPERATIONS_TEAM: "critical",
    AlertRule.Action.ALERT_ENDPOINT_OWNER: "warning",
    AlertRule.Action.SCALE_PROCESSING_CAPACITY: "warning",
}


@dataclass(frozen=True)
class AlertChange:
    """One announced (or started/cancelled) change: ``transition`` of ``alert_id`` of ``rule``."""

    rule: str
    scope_key: str
    transition: str
    alert_id: int | None
    value: float | None


@dataclass
class EvaluationReport:
    """What one evaluation run did: rules evaluated and the changes (``fire``, ``resolve``,
    ``pending``, ``cancel``); scopes with nothing to announce are not listed."""

    rules_evaluated: int = 0
    changes: list[AlertChange] = field(default_factory=list)

    def count(self, transition: str) -> int:
        return sum(1 for change in self.changes if change.transition == transition)


def evaluate_alert_rules(*, now: datetime | None = None) -> EvaluationReport:
    """Evaluate every rule once (beat, every ``WEBHOOK_ALERT_EVALUATION_INTERVAL_SECONDS``).

    Enabled rules are measured and their alerts fire/resolve (``analytics.alerts.decisions``);
    a disabled rule's active alerts are closed (a firing one resolves with ``reason:
    rule_disabled``, a pending one is dropped). Idempotent and safe to run twice at once: each
    rule is evaluated under a row lock on the rule, the partial unique constraint allows one
    active alert per (rule, scope), and announcements use deterministic event ids. A rule whose
    evaluation fails is logged and skipped; the others still run. ``now`` defaults to now.
    """
    now = now or timezone.now()
    report = EvaluationReport()
    report.changes.extend(_close_orphans(now=now))
    for rule_id in AlertRule.objects.order_by("name").values_list("id", flat=True):
        try:
            report.changes.extend(evaluate_rule(rule_id=rule_id, now=now))
            report.rules_evaluated += 1
        except Exception:
            logger.exception("Evaluating alert rule %s failed", rule_id)
    return report


def _close_orphans(*, now: datetime) -> list[AlertChange]:
    """Active alerts whose rule was deleted without ``delete_rule`` (a bulk or admin delete: the
    FK is SET_NULL) resolve here, ``reason: rule_deleted``, so none stays firing forever."""
    try:
        with transaction.atomic(), _foreign_keys_checked_per_statement():
            orphans = _lock_active_alerts(Alert.objects.filter(rule__isnull=True).order_by("id"))
            return [_close(rule=None, alert=alert, now=now, reason="rule_deleted") for alert in orphans]
    except Exception:
        logger.exception("Resolving the alerts of deleted rules failed")
        return []


def evaluate_rule(*, rule_id: int, now: datetime) -> list[AlertChange]:
    """Evaluate one rule at ``now`` in one transaction (see ``evaluate_alert_rules``). Returns the
    changes it made; [] when the rule no longer exists.

    Each alert's state change and its event (``system.health_alert``, with its deliveries) are
    written in this one transaction: both are committed or neither. The rule's active alerts are
    locked through ``_lock_active_alerts``, in the order an endpoint delete takes its locks, and
    foreign keys are checked per statement (``_foreign_keys_checked_per_statement``), so an
    endpoint deleted meanwhile fails neither the delete nor this evaluation."""
    changes: list[AlertChange] = []
    with transaction.atomic(), _foreign_keys_checked_per_statement():
        rule = AlertRule.objects.select_for_update().filter(pk=rule_id).first()
        if rule is None:
            return changes
        active = {a.scope_key: a for a in _lock_active_alerts(Alert.objects.filter(rule=rule))}
        if not rule.enabled:
            for alert in active.values():
                changes.append(_close_for_disabled_rule(rule=rule, alert=alert, now=now))
            return changes
        measurements = measure(rule=rule, now=now)
        breached = {key for key, m in measurements.items() if m.value is not None and m.value > rule.threshold}
        for scope_key in sorted(set(active) | breached):
            measurement = measurements.get(scope_key) or Measurement(scope_key, None, 0)
            change = _apply(rule=rule, alert=active.get(scope_key), measurement=measurement, now=now)
            if change is not None:
                changes.append(change)
    return changes


def _lock_active_alerts(alerts: QuerySet[Alert]) -> list[Alert]:
    """Lock and return the active (pending or firing) alerts of ``alerts``, with their endpoints,
    inside the caller's transaction; on PostgreSQL their endpoints' rows first, in id order,
    ``FOR KEY SHARE``.

    Why the endpoints first: the caller then publishes the alerts' events, whose deliveries take
    each endpoint routed to ``FOR KEY SHARE`` (their foreign-key checks), while
    ``endpoints.services.delete_endpoint`` locks the endpoint ``FOR UPDATE`` and then sets its
    alerts' endpoint to null, waiting for the alert rows. Alert rows then endpoint here, endpoint
    then alert rows there: PostgreSQL found a deadlock and aborted one side, the evaluation or the
    delete (``DELETE /endpoints/{id}`` answered 500). Taking the endpoints first is the delete's
    order, so one side simply waits for the other: a delete that came first commits, and these
    alerts are then read with their endpoint null; else the delete waits for this commit and
    detaches the deliveries just published. ``KEY SHARE`` is what the foreign-key check takes
    anyway: it blocks deletes, key changes and ``FOR UPDATE`` readers of the endpoint (an API
    ``PUT``/``PATCH``, a secret rotation wait for this commit), not plain status or health updates.

    The endpoints are those of the alerts read before the lock, and only those alerts are
    locked: an alert's endpoint only ever changes to null afterwards, so no locked alert points
    to an endpoint that was not locked first. An alert that joined ``alerts`` in between (under
    the rule's lock none can; a rule deleted meanwhile makes new orphans) is left to the next run."""
    candidates = list(alerts.filter(status__in=Alert.ACTIVE_STATUSES).values_list("pk", "endpoint_id"))
    if not candidates:
        return []
    endpoint_ids = sorted({endpoint_id for _, endpoint_id in candidates if endpoint_id is not None})
    if endpoint_ids and connection.vendor == "postgresql":
        table = connection.ops.quote_name(WebhookEndpoint._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE", [endpoint_ids])
    return list(alerts.select_for_update(of=("self",)).select_related("endpoint")
                .filter(pk__in=[pk for pk, _ in candidates], status__in=Alert.ACTIVE_STATUSES))


@contextlib.contextmanager
def _foreign_keys_checked_per_statement() -> Iterator[None]:
    """Inside the caller's transaction, check foreign keys at the end of each statement instead of
    at COMMIT (PostgreSQL: ``SET CONSTRAINTS ALL IMMEDIATE``; Django creates them ``DEFERRABLE
    INITIALLY DEFERRED``, the schema's only deferrable constraints); back to deferred when the block
    ends without an error (an error rolls the setting back with the transaction or savepoint).
    No-op elsewhere.

    Why: publishing inside a transaction relies on it. ``events.services.publish`` routes an event
    again when an endpoint deleted after its routing read fails its delivery INSERT; deferred, the
    check failed only at this transaction's COMMIT, and the whole evaluation (or rule edit) with
    it. Checked at the INSERT, the delivery also takes the endpoint's row (``FOR KEY SHARE``) at
    once, so a later delete of that endpoint waits for this commit and detaches the delivery. And
    ``_start`` sees an alert's endpoint deleted meanwhile as the ``IntegrityError`` it handles."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _apply(*, rule: AlertRule, alert: Alert | None, measurement: Measurement, now: datetime) -> AlertChange | None:
    decision: Decision = decide(
        status=alert.status if alert else None, value=measurement.value, threshold=rule.threshold,
        resolve_ratio=rule.resolve_ratio,
        pending_for_seconds=pending_seconds(metric=rule.metric, period_seconds=rule.period_seconds),
        clear_for_seconds=rule.period_seconds, pending_since=alert.pending_since if alert else None,
        clear_since=alert.clear_since if alert else None, now=now,
    )
    transition = decision.transition
    if alert is None:
        if transition == Transition.NONE:
            return None
        alert = _start(rule=rule, measurement=measurement, now=now)
        if alert is None:  # a concurrent evaluation started it first
            return None
    if transition == Transition.CANCEL:
        alert_id = alert.pk
        alert.delete()
        return AlertChange(rule.name, measurement.scope_key, transition, alert_id, measurement.value)
    _record_value(alert=alert, measurement=measurement, now=now, clear_since=decision.clear_since)
    if transition == Transition.FIRE:
        _fire(rule=rule, alert=alert, measurement=measurement, now=now)
    elif transition == Transition.RESOLVE:
        _resolve(rule=rule, alert=alert, measurement=measurement, now=now, reason="condition_cleared")
    alert.save()
    if transition == Transition.NONE:
        return None
    return AlertChange(rule.name, measurement.scope_key, transition, alert.pk, measurement.value)


def _start(*, rule: AlertRule, measurement: Measurement, now: datetime) -> Alert | None:
    endpoint = None
    if measurement.endpoint_id is not None:
        endpoint = WebhookEndpoint.objects.filter(pk=measurement.endpoint_id).first()
    try:
        with transaction.atomic():
            alert = Alert(rule=rule, scope_key=measurement.scope_key, endpoint=endpoint, status=Alert.Status.PENDING,
                          pending_since=now, details=dict(measurement.details))
            _snapshot_rule(rule=rule, alert=alert)
            alert.save()
            return alert
    except IntegrityError:
        return None


def _snapshot_rule(*, rule: AlertRule, alert: Alert) -> None:
    """Copy what the alert is about from ``rule`` (at start, and again at firing): later edits or
    the rule's deletion must not rewrite the alert's history (``/alerts``, resolved events)."""
    alert.rule_name, alert.metric, alert.action = rule.name, rule.metric, rule.action
    alert.threshold, alert.period_seconds = rule.threshold, rule.period_seconds


def _record_value(*, alert: Alert, measurement: Measurement, now: datetime, clear_since: datetime | None) -> None:
    alert.last_value = measurement.value
    alert.last_evaluated_at = now
    if measurement.value is not None and (alert.peak_value is None or measurement.value > alert.peak_value):
        alert.peak_value = measurement.value
    if alert.status == Alert.Status.FIRING:
        alert.clear_since = clear_since


def _fire(*, rule: AlertRule, alert: Alert, measurement: Measurement, now: datetime) -> None:
    alert.status = Alert.Status.FIRING
    alert.fired_at = now
    _snapshot_rule(rule=rule, alert=alert)
    alert.value_at_fire = measurement.value
    alert.clear_since = None
    alert.details = {**measurement.details, "samples": measurement.samples}
    alert.firing_event_id = _announce(rule=rule, alert=alert, status="firing")


def _resolve(*, rule: AlertRule | None, alert: Alert, measurement: Measurement | None, now: datetime,
             reason: str) -> None:
    alert.status = Alert.Status.RESOLVED
    alert.resolved_at = now
    alert.details = {**alert.details, "resolution": {
        "reason": reason, "value": measurement.value if measurement else None,
        **({"details": measurement.details} if measurement and measurement.details else {}),
    }}
    alert.resolved_event_id = _announce(rule=rule, alert=alert, status="resolved")


def _close_for_disabled_rule(*, rule: AlertRule, alert: Alert, now: datetime) -> AlertChange:
    return _close(rule=rule, alert=alert, now=now, reason="rule_disabled")


def _close(*, rule: AlertRule | None, alert: Alert, now: datetime, reason: str) -> AlertChange:
    """End an active alert for a reason other than its measurement: a pending one is dropped
    (never announced), a firing one resolves and publishes its ``resolved`` event with
    ``details.resolution.reason`` = ``reason``. ``rule`` is None for an alert whose rule is gone."""
    name = _described(rule=rule, alert=alert)[0]
    if alert.status == Alert.Status.PENDING:
        alert_id = alert.pk
        alert.delete()
        return AlertChange(name, alert.scope_key, Transition.CANCEL, alert_id, None)
    _resolve(rule=rule, alert=alert, measurement=None, now=now, reason=reason)
    alert.save()
    return AlertChange(name, alert.scope_key, Transition.RESOLVE, alert.pk, None)


def alert_payload(*, rule: AlertRule | None, alert: Alert, status: str) -> dict[str, Any]:
    """The ``data`` of the ``system.health_alert`` event for ``alert`` (``status``: ``firing`` or
    ``resolved``), shaped like the catalog's sample (``{"alert": {...}}``) plus the rule, scope
    and endpoint, so a Slack template can use ``{{ data.alert.value }}`` and the like. Name,
    metric, action, threshold and period are the alert's snapshot of ``rule`` (as it fired), so
    the resolved event describes the same condition as the firing one."""
    endpoint = alert.endpoint
    name, metric, action, period_seconds = _described(rule=rule, alert=alert)
    return {
        "alert": {
            "id": f"alert_{alert.pk}",
            "name": name,
            "status": status,
            "severity": SEVERITY.get(action, "warning") if status == "firing" else "info",
            "service": "webhooks",
            "metric": metric,
            "value": alert.value_at_fire,
            "last_value": alert.last_value,
            "peak_value": alert.peak_value,
            "threshold": alert.threshold,
            "period": format_period(period_seconds) if period_seconds else None,
            "period_seconds": period_seconds,
            "action": action,
            "scope": alert.scope_key,
            "triggered_at": alert.fired_at.isoformat() if alert.fired_at else None,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "details": alert.details,
        },
        "endpoint": ({"id": endpoint.pk, "name": endpoint.name, "url": endpoint.url,
                      "environment": endpoint.environment} if endpoint else None),
    }


def _described(*, rule: AlertRule | None, alert: Alert) -> tuple[str, str, str, int | None]:
    """(name, metric, action, period_seconds) of ``alert``: its snapshot, or ``rule`` where the
    snapshot is empty (an alert being started)."""
    if rule is None:
        return alert.rule_name, alert.metric, alert.action, alert.period_seconds
    return (alert.rule_name or rule.name, alert.metric or rule.metric, alert.action or rule.action,
            alert.period_seconds or rule.period_seconds)


def _announce(*, rule: AlertRule | None, alert: Alert, status: str) -> str:
    """Publish the ``system.health_alert`` event (event id ``alert_<id>_<status>``, so a re-run
    never publishes twice) and, after commit, mail whom the rule's action names. Returns the
    event id, or "" when publishing failed (logged; the alert is still recorded)."""
    event_id = f"alert_{alert.pk}_{status}"
    name, _, action, _ = _described(rule=rule, alert=alert)
    environment = alert.endpoint.environment if alert.endpoint else settings.WEBHOOK_ALERT_ENVIRONMENT
    try:
        event_services.publish(
            event_type=ALERT_EVENT_TYPE, data=alert_payload(rule=rule, alert=alert, status=status), event_id=event_id,
            environment=environment, back_pressure=False,
            metadata={"source_service": settings.WEBHOOK_SOURCE_SERVICE, "alert_id": alert.pk, "rule": name},
        )
    except Conflict:
        # Published before, in another environment (the endpoint moved or was deleted since): a
        # re-run must not publish twice, so this is the same as a duplicate answer.
        logger.info("Alert %s (%s) was already published as %s", alert.pk, name, event_id)
    except ServiceError as exc:  # e.g. the system.health_alert type was deleted from the catalog
        logger.error("Alert %s (%s) could not be published: %s", alert.pk, name, exc)
        event_id = ""
    recipients = mail_recipients(action=action, endpoint=alert.endpoint)
    if recipients:
        transaction.on_commit(functools.partial(
            _send_mail, subject=_mail_subject(rule=rule, alert=alert, status=status),
            body=_mail_body(rule=rule, alert=alert, status=status), recipients=recipients,
        ))
    return event_id


def mail_recipients(*, action: str, endpoint: WebhookEndpoint | None) -> list[str]:
    """Who is mailed for an alert with ``action`` (the rule's, as the alert fired, so the resolved
    mail goes where the firing one went): ``alert_operations_team`` → ``WEBHOOK_ALERT_OPERATOR_EMAILS``;
    ``alert_endpoint_owner`` → the endpoint's ``owner_email``, or the operators when it has none
    (an alert nobody reads is no alert); ``scale_processing_capacity`` → nobody (event + metric)."""
    operators = list(settings.WEBHOOK_ALERT_OPERATOR_EMAILS)
    if action == AlertRule.Action.ALERT_OPERATIONS_TEAM:
        return operators
    if action == AlertRule.Action.ALERT_ENDPOINT_OWNER:
        return [endpoint.owner_email] if endpoint is not None and endpoint.owner_email else operators
    return []


def _mail_subject(*, rule: AlertRule | None, alert: Alert, status: str) -> str:
    where = f" on {alert.endpoint.name}" if alert.endpoint else ""
    return f"[Vocelio Webhooks] {status.upper()}: {_described(rule=rule, alert=alert)[0]}{where}"


def _mail_body(*, rule: AlertRule | None, alert: Alert, status: str) -> str:
    name, metric, _, period_seconds = _described(rule=rule, alert=alert)
    lines = [
        f"Alert rule: {name} ({dict(AlertRule.Metric.choices).get(metric, metric)})",
        f"Status: {status}",
        (f"Value at firing: {alert.value_at_fire}  (threshold {alert.threshold:g}, "
         f"period {format_period(period_seconds) if period_seconds else '-'})"),
        f"Last value: {alert.last_value}",
        f"Fired at: {alert.fired_at.isoformat() if alert.fired_at else '-'}",
    ]
    if alert.resolved_at:
        lines.append(f"Resolved at: {alert.resolved_at.isoformat()}")
    if alert.endpoint:
        lines.append(f"Endpoint: {alert.endpoint.name} ({alert.endpoint.url}), id {alert.endpoint.pk}")
    lines.append(f"Details: {alert.details}")
    return "\n".join(lines) + "\n"


def _send_mail(*, subject: str, body: str, recipients: list[str]) -> None:
    # After commit and outside any transaction: a slow SMTP server must not hold row locks.
    try:
        send_mail(subject=subject, message=body, from_email=None, recipient_list=recipients)
    except Exception:
        logger.exception("Alert mail to %s failed", ", ".join(recipients))


# --- rule edits ----------------------------------------------------------------------------
RULE_FIELDS = frozenset({"name", "description", "metric", "threshold", "period_seconds", "action", "min_samples",
                         "resolve_ratio", "enabled"})


def create_rule(**fields: Any) -> AlertRule:
    """Store a new rule from ``fields`` (``AlertRule`` field names) and return it. Raises
    ``ValidationFailed`` (400) for unknown fields, invalid values or a name already taken."""
    return _save_rule(rule=AlertRule(), fields=fields)


def update_rule(*, rule: AlertRule, now: datetime | None = None, **fields: Any) -> AlertRule:
    """Change ``fields`` of ``rule`` and return it; raises ``ValidationFailed`` (400).

    Threshold, period and the like apply from the next evaluation (a firing alert then resolves
    against the new threshold with the usual hysteresis). Two edits end the rule's active alerts
    at once, in the same transaction (firing ones resolve and publish their ``resolved`` event,
    pending ones are dropped): ``enabled=false`` (reason ``rule_disabled``; the beat run would
    otherwise do it up to ``WEBHOOK_ALERT_EVALUATION_INTERVAL_SECONDS`` later) and a new
    ``metric`` (reason ``rule_metric_changed``: an alert about the failure rate cannot go on as
    one about the backlog; the new metric starts its own episode at the next evaluation).
    ``now`` (the resolution time) defaults to now.
    """
    with transaction.atomic(), _foreign_keys_checked_per_statement():
        # The evaluation holds this row lock too: an edit never interleaves with a run.
        previous = AlertRule.objects.select_for_update().filter(pk=rule.pk).values("metric", "enabled").first() or {}
        rule = _save_rule(rule=rule, fields=fields)
        reason = None
        if previous.get("enabled") and not rule.enabled:
            reason = "rule_disabled"
        elif previous and previous["metric"] != rule.metric:
            reason = "rule_metric_changed"
        if reason is not None:
            _close_active(rule=rule, now=now or timezone.now(), reason=reason)
    return rule


def delete_rule(*, rule: AlertRule, now: datetime | None = None) -> None:
    """Delete ``rule``, the way Svix and PagerDuty retire a source: its firing alerts resolve
    first (``resolved`` event and mail, ``details.resolution.reason: rule_deleted``) so no
    subscriber is left with an alert that never ends; pending ones are dropped. The alert history
    stays (``Alert.rule`` becomes null; the alerts keep the rule's name, metric, action, threshold
    and period). ``now`` (the resolution time) defaults to now."""
    with transaction.atomic(), _foreign_keys_checked_per_statement():
        locked = AlertRule.objects.select_for_update().filter(pk=rule.pk).first()
        if locked is None:
            return
        _close_active(rule=locked, now=now or timezone.now(), reason="rule_deleted")
        locked.delete()


def _close_active(*, rule: AlertRule, now: datetime, reason: str) -> list[AlertChange]:
    active = _lock_active_alerts(Alert.objects.filter(rule=rule).order_by("scope_key"))
    return [_close(rule=rule, alert=alert, now=now, reason=reason) for alert in active]


def _save_rule(*, rule: AlertRule, fields: dict[str, Any]) -> AlertRule:
    unknown = set(fields) - RULE_FIELDS
    if unknown:
        raise ValidationFailed(f"Unknown alert rule fields: {', '.join(sorted(unknown))}.",
                               details={"fields": {name: ["Unknown field."] for name in sorted(unknown)}})
    for name, value in fields.items():
        setattr(rule, name, value)
    try:
        rule.full_clean()
    except ValidationError as exc:
        raise ValidationFailed("The alert rule is invalid.", details={"fields": exc.message_dict}) from exc
    rule.save()
    return rule
