"""API shapes of alert rules and alerts (``/alert-rules``, ``/alerts``). A rule's period is
accepted and shown both in the seed's notation (``"5m"``) and in seconds."""
from rest_framework import serializers

from analytics.alerts.decisions import format_period, parse_period
from analytics.models import Alert, AlertRule


class AlertRuleSerializer(serializers.ModelSerializer):
    """Output, and input for ``POST``/``PUT``/``PATCH``: ``period`` (``"30s"``, ``"5m"``, ``"1h"``)
    or ``period_seconds``; the service validates the rest (``AlertRule.clean``)."""

    period = serializers.CharField(required=False, help_text="The seed's notation: '30s', '5m', '1h'.")
    period_seconds = serializers.IntegerField(required=False, min_value=1, max_value=86400)
    firing_alerts = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = ["id", "name", "description", "metric", "threshold", "period", "period_seconds", "action",
                  "min_samples", "resolve_ratio", "enabled", "firing_alerts", "created_at", "updated_at"]
        read_only_fields = ["id", "firing_alerts", "created_at", "updated_at"]
        # Uniqueness and cross-field rules are checked once, by the service (AlertRule.full_clean).
        validators = []
        extra_kwargs = {"name": {"validators": []}}

    def to_representation(self, rule: AlertRule) -> dict:
        data = super().to_representation(rule)
        data["period"] = format_period(rule.period_seconds)
        return data

    def validate_period(self, value: str) -> int:
        try:
            return parse_period(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, attrs: dict) -> dict:
        if "period" in attrs:
            seconds = attrs.pop("period")
            if "period_seconds" in attrs and attrs["period_seconds"] != seconds:
                raise serializers.ValidationError(
                    {"period": "Give period or period_seconds, not two different values."})
            attrs["period_seconds"] = seconds
        if self.instance is None and "period_seconds" not in attrs:
            raise serializers.ValidationError({"period": "This field is required (or period_seconds)."})
        return attrs

    def get_firing_alerts(self, rule: AlertRule) -> int:
        return getattr(rule, "firing_count", None) or rule.alerts.filter(status=Alert.Status.FIRING).count()


class AlertSerializer(serializers.ModelSerializer):
    """An alert with the values it was recorded with. ``rule``, ``metric``, ``action``,
    ``threshold`` and ``period`` are the rule as the alert fired (a snapshot: later edits do not
    rewrite history); ``rule_id`` is null once the rule is deleted."""

    rule = serializers.CharField(source="rule_name", read_only=True)
    rule_id = serializers.IntegerField(read_only=True, allow_null=True)
    period = serializers.SerializerMethodField()
    scope = serializers.CharField(source="scope_key", read_only=True)
    endpoint = serializers.SerializerMethodField()

    class Meta:
        model = Alert
        fields = ["id", "rule", "rule_id", "metric", "action", "scope", "endpoint", "status", "pending_since",
                  "fired_at", "resolved_at", "threshold", "period", "period_seconds", "value_at_fire", "peak_value",
                  "last_value", "last_evaluated_at", "details", "firing_event_id", "resolved_event_id", "created_at",
                  "updated_at"]
        read_only_fields = fields

    def get_period(self, alert: Alert) -> str | None:
        return format_period(alert.period_seconds) if alert.period_seconds else None

    def get_endpoint(self, alert: Alert) -> dict | None:
        endpoint = alert.endpoint
        return {"id": endpoint.pk, "name": endpoint.name} if endpoint else None
