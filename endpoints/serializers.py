"""API shapes for endpoints. Secrets are write-only: responses show them masked, except the
create response, which shows the full secret once."""
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from endpoints.models import WebhookEndpoint, number_ranges, unknown_event_types, validate_custom_headers
from events.serializers import StringField
from vocelio_webhooks.crypto import is_credential_header, mask
from vocelio_webhooks.errors import ValidationFailed
from vocelio_webhooks.validators import reject_control_characters, reject_nul_characters


def mask_custom_headers(headers: dict[str, str]) -> dict[str, str]:
    """Custom headers for display: credential-looking headers (``Authorization``,
    ``X-Api-Key``, ``*token*`` …) keep only their last 4 characters (``***1234``)."""
    return {
        name: mask(value) if is_credential_header(name) else value
        for name, value in (headers or {}).items()
    }


def endpoint_health(endpoint: WebhookEndpoint) -> dict:
    """The endpoint's circuit breaker and failure streak as the API shows them."""
    from django.core.exceptions import ObjectDoesNotExist

    try:
        # Lists load it with select_related("health"): no query per endpoint.
        row = endpoint.health if endpoint.pk else None
    except ObjectDoesNotExist:
        row = None
    if row is None:
        return {"circuit_state": "closed", "consecutive_failures": 0, "next_probe_at": None, "failing_since": None,
                "last_success_at": None, "last_failure_at": None, "auto_disabled_at": None}
    return {"circuit_state": row.circuit_state, "consecutive_failures": row.consecutive_failures,
            "next_probe_at": row.next_probe_at, "failing_since": row.failing_since,
            "last_success_at": row.last_success_at, "last_failure_at": row.last_failure_at,
            "auto_disabled_at": row.auto_disabled_at}


class EndpointSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(required=False, allow_blank=True, max_length=500, trim_whitespace=False)
    api_key = serializers.CharField(required=False, allow_blank=True, max_length=500, trim_whitespace=False)
    custom_headers = serializers.JSONField(required=False, validators=[validate_custom_headers])
    # Declared (not derived from the model) so that every out-of-range value gets the field's one
    # documented range message (``endpoints.models.number_ranges``), instead of DRF's bounds of
    # the database column ("less than or equal to 9223372036854775807") for large ones.
    timeout_seconds = serializers.IntegerField(required=False)
    rate_limit_per_minute = serializers.IntegerField(required=False, allow_null=True)
    batch_max_events = serializers.IntegerField(required=False)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "name", "description", "url", "http_method", "events", "custom_headers", "secret",
            "signature_method", "api_key", "retry_policy", "timeout_seconds", "rate_limit_per_minute", "gzip_requests",
            "batch_max_events",
            "environment", "status", "status_reason", "failover_url", "allowed_ip_ranges", "verify_ssl",
            "ca_bundle", "owner_email", "filters", "transformation", "previous_secret_expires_at", "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "status_reason", "previous_secret_expires_at", "created_at", "updated_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, (_low, _high, message) in number_ranges().items():
            # DRF refuses integers written with more than 1,000 digits before any validator runs.
            self.fields[name].error_messages["max_string_length"] = message

    def _in_range(self, name: str, value: int | None) -> int | None:
        low, high, message = number_ranges()[name]
        if value is not None and not low <= value <= high:
            raise serializers.ValidationError(message)
        return value

    def validate_timeout_seconds(self, value):
        return self._in_range("timeout_seconds", value)

    def validate_rate_limit_per_minute(self, value):
        return self._in_range("rate_limit_per_minute", value)

    def validate_batch_max_events(self, value):
        return self._in_range("batch_max_events", value)

    def validate_events(self, value):
        """Exact event type names must exist (400 ``UNKNOWN_EVENT_TYPE``, as Svix refuses unknown
        ``filterTypes``); wildcards always pass, and on update the names the endpoint already had
        are not checked again (``endpoints.models.unknown_event_types``)."""
        unknown = unknown_event_types(value, already_subscribed=self.instance.events if self.instance else ())
        if unknown:
            message = (f"Unknown event type{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}. "
                       "GET /event-types lists them; wildcards such as 'lead.*' or '*' are always accepted.")
            raise ValidationFailed(message, code="UNKNOWN_EVENT_TYPE",
                                   details={"event_type": unknown[0], "event_types": unknown,
                                            "fields": {"events": [message]}})
        return value

    def validate(self, attrs):
        # Every JSON field (filters, custom_headers, transformation, ...): PostgreSQL stores them,
        # or their audit entry, as jsonb, which cannot hold a NUL character (a 500 otherwise).
        for name, value in attrs.items():
            if isinstance(self.fields.get(name), serializers.JSONField):
                try:
                    reject_nul_characters(value)
                except DjangoValidationError as exc:
                    raise serializers.ValidationError({name: exc.messages}) from exc
        return attrs

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["health"] = endpoint_health(instance)
        # The secret is shown in full only when the service generated or issued it (create,
        # rotate); the api_key is always the caller's own and always masked.
        if not self.context.get("reveal_secret"):
            data["secret"] = mask(instance.secret)
        data["api_key"] = mask(instance.api_key)
        data["custom_headers"] = mask_custom_headers(instance.custom_headers)
        return data


class EndpointStatusSerializer(serializers.Serializer):
    """``PUT /endpoints/{id}/status`` body."""

    status = serializers.ChoiceField(choices=WebhookEndpoint.Status.choices)
    # Shown in the admin and the API as status_reason: no control or bidi characters.
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="",
                                   validators=[reject_control_characters])


class FilterTestSerializer(serializers.Serializer):
    """``POST /endpoints/{id}/filters/test`` body: a sample event in the seed's envelope shape."""

    # JSON strings only, as POST /events/publish takes them: a number is not an event type.
    event_type = StringField(max_length=100)
    data = serializers.JSONField(required=False, default=dict)
    metadata = serializers.JSONField(required=False, default=dict)
    event_id = StringField(required=False, default="evt_sample", max_length=255)
    timestamp = StringField(required=False, default="2025-08-05T17:30:00Z", max_length=64)

    def validate(self, attrs):
        for name in ("data", "metadata"):
            if not isinstance(attrs.get(name), dict):
                raise serializers.ValidationError({name: ["Must be a JSON object."]})
        return attrs

    def envelope(self) -> dict:
        data = self.validated_data
        return {key: data[key] for key in ("event_type", "event_id", "timestamp", "data", "metadata")}


class RotateSecretSerializer(serializers.Serializer):
    """``POST /endpoints/{id}/rotate-secret`` body (all optional)."""

    secret = serializers.CharField(required=False, max_length=500, trim_whitespace=False)
    overlap_seconds = serializers.IntegerField(required=False, min_value=0, max_value=7 * 86400)
