"""Alert rules (metric, threshold, period, action) and the alerts they raise (issue 6, "Monitoring
and alerting"; the seed's "Alerting Rules"). Evaluation lives in ``analytics.alerts``."""
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from endpoints.models import WebhookEndpoint
from vocelio_webhooks.validators import reject_control_characters

__all__ = ["ALLOWED_ACTIONS", "Alert", "AlertRule"]


class AlertRule(models.Model):
    """One stored, editable rule. ``threshold`` is in the metric's unit (see ``Metric``);
    ``period_seconds`` is the measurement window of windowed metrics, or how long a gauge must
    stay above the threshold before the alert fires. Hysteresis: a firing alert resolves only
    once the value stays at or below ``threshold × resolve_ratio`` for ``period_seconds``."""

    class Metric(models.TextChoices):
        # Percent (0-100) of delivery attempts in the window that did not succeed; global.
        DELIVERY_FAILURE_RATE_PERCENT = "delivery_failure_rate_percent", "failed attempts, % of attempts in the period"
        # Mean ``duration_ms`` of one endpoint's attempts in the window; evaluated per endpoint.
        ENDPOINT_AVG_RESPONSE_TIME_MS = "endpoint_avg_response_time_ms", "mean response time per endpoint, ms"
        # Deliveries due now (pending/retrying, next attempt not in the future) of active endpoints.
        QUEUE_BACKLOG_DELIVERIES = "queue_backlog_deliveries", "deliveries waiting to be sent"

    class Action(models.TextChoices):
        ALERT_OPERATIONS_TEAM = "alert_operations_team", "mail the operators + system.health_alert event"
        ALERT_ENDPOINT_OWNER = "alert_endpoint_owner", "mail the endpoint's owner + system.health_alert event"
        SCALE_PROCESSING_CAPACITY = "scale_processing_capacity", "system.health_alert event + autoscaler metric"

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True, validators=[reject_control_characters])
    metric = models.CharField(max_length=40, choices=Metric.choices)
    threshold = models.FloatField(validators=[MinValueValidator(0)])
    period_seconds = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(86400)])
    action = models.CharField(max_length=40, choices=Action.choices)
    # Windowed metrics below this many attempts count as "no data" (one failed attempt out of one
    # is not a 100 % failure rate worth waking anyone for).
    min_samples = models.PositiveIntegerField(default=1)
    resolve_ratio = models.FloatField(default=0.8, validators=[MinValueValidator(0), MaxValueValidator(1)])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.metric} > {self.threshold:g} over {self.period_seconds}s → {self.action})"

    def clean(self) -> None:
        """Cross-field rules, raised as ``ValidationError`` by field: a percentage threshold is at
        most 100; a name is not all digits (``/alert-rules/{id or name}`` reads digits as an id, so
        a rule named ``123`` could never be fetched by name); the action must suit the metric
        (``ALLOWED_ACTIONS``)."""
        errors = {}
        if (self.metric == self.Metric.DELIVERY_FAILURE_RATE_PERCENT and self.threshold is not None
                and self.threshold > 100):
            errors["threshold"] = "A failure rate threshold is a percentage: 0 to 100."
        if self.name and self.name.isdigit():
            errors["name"] = "A rule name cannot be all digits: /alert-rules/{id or name} would read it as an id."
        allowed = ALLOWED_ACTIONS.get(self.metric)
        if allowed is not None and self.action and self.action not in allowed:
            errors["action"] = (f"{self.action} does not suit {self.metric}; "
                                f"allowed: {', '.join(sorted(allowed))}.")
        if errors:
            raise ValidationError(errors)


# Which actions make sense for which metric. ``alert_endpoint_owner`` needs an endpoint, so only the
# per-endpoint metric has an owner to mail (the global metrics would always fall back to the
# operators: a second, misleading name for ``alert_operations_team``). ``scale_processing_capacity``
# only for the backlog: more workers drain due deliveries, but make no receiver faster or less
# failing, and its gauge (value / threshold) is a capacity ratio only for a count of waiting work.
ALLOWED_ACTIONS: dict[str, frozenset[str]] = {
    AlertRule.Metric.DELIVERY_FAILURE_RATE_PERCENT: frozenset({AlertRule.Action.ALERT_OPERATIONS_TEAM}),
    AlertRule.Metric.ENDPOINT_AVG_RESPONSE_TIME_MS: frozenset({AlertRule.Action.ALERT_OPERATIONS_TEAM,
                                                                AlertRule.Action.ALERT_ENDPOINT_OWNER}),
    AlertRule.Metric.QUEUE_BACKLOG_DELIVERIES: frozenset({AlertRule.Action.ALERT_OPERATIONS_TEAM,
                                                           AlertRule.Action.SCALE_PROCESSING_CAPACITY}),
}


class Alert(models.Model):
    """One episode of a rule's condition for one scope (the whole service, or one endpoint).

    ``pending``: a gauge is above the threshold but not yet for ``period_seconds`` (no event, no
    mail; deleted if the value drops back). ``firing``: announced. ``resolved``: the condition
    cleared (with hysteresis) and that was announced too. At most one pending-or-firing alert
    per (rule, scope) — a partial unique constraint, so two concurrent evaluations cannot both fire.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        FIRING = "firing"
        RESOLVED = "resolved"

    ACTIVE_STATUSES = (Status.PENDING, Status.FIRING)
    GLOBAL_SCOPE = "global"

    # SET_NULL: deleting a rule resolves its firing alerts first (``delete_rule``) and keeps the
    # history, which then names the rule through the snapshot below.
    rule = models.ForeignKey(AlertRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts")
    # The rule as it was when this alert started (name) and fired (metric, action, period, and
    # ``threshold`` below): later edits or deletion of the rule do not rewrite what happened.
    rule_name = models.CharField(max_length=100, blank=True)
    metric = models.CharField(max_length=40, choices=AlertRule.Metric.choices, blank=True)
    action = models.CharField(max_length=40, choices=AlertRule.Action.choices, blank=True)
    period_seconds = models.PositiveIntegerField(null=True, blank=True)
    # "global", or "endpoint:<id>"; kept when the endpoint is deleted (the FK then becomes null).
    scope_key = models.CharField(max_length=64, default=GLOBAL_SCOPE)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="alerts")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    pending_since = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Since when the value has stayed at or below threshold × resolve_ratio (hysteresis clock).
    clear_since = models.DateTimeField(null=True, blank=True)
    threshold = models.FloatField()
    value_at_fire = models.FloatField(null=True, blank=True)
    peak_value = models.FloatField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    # The measurement at firing (counts, window) and at resolution.
    details = models.JSONField(default=dict, blank=True)
    firing_event_id = models.CharField(max_length=255, blank=True)
    resolved_event_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "scope_key"], condition=Q(status__in=["pending", "firing"]),
                name="alert_one_active_per_rule_scope",
            ),
        ]

    def __str__(self) -> str:
        return f"alert {self.pk}: {self.rule_name or self.rule_id} {self.scope_key} ({self.status})"
