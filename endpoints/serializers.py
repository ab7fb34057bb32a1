"""API shapes for endpoints. Secrets are write-only: responses show them masked, except the
create response, which shows the full secret once."""
from rest_framework import serializers

from endpoints.models import WebhookEndpoint
from vocelio_webhooks.crypto import mask

SENSITIVE_HEADER_WORDS = ("authorization", "api-key", "apikey", "secret", "token", "password", "cookie")


def mask_custom_headers(headers: dict[str, str]) -> dict[str, str]:
    """Custom headers for display: credential-looking headers (``Authorization``,
    ``X-Api-Key``, ``*token*`` …) keep only a recognisable head."""
    return {
        name: mask(value) if any(word in name.lower() for word in SENSITIVE_HEADER_WORDS) else value
        for name, value in (headers or {}).items()
    }


class EndpointSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(required=False, allow_blank=True, max_length=500, trim_whitespace=False)
    api_key = serializers.CharField(required=False, allow_blank=True, max_length=500, trim_whitespace=False)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "name", "description", "url", "http_method", "events", "custom_headers", "secret",
            "signature_method", "api_key", "retry_policy", "timeout_seconds", "rate_limit_per_minute",
            "environment", "status", "status_reason", "failover_url", "allowed_ip_ranges", "verify_ssl",
            "owner_email", "filters", "transformation", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "status_reason", "created_at", "updated_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("reveal_secret"):
            data["secret"] = mask(instance.secret)
            data["api_key"] = mask(instance.api_key)
        data["custom_headers"] = mask_custom_headers(instance.custom_headers)
        return data


class EndpointStatusSerializer(serializers.Serializer):
    """``PUT /endpoints/{id}/status`` body."""

    status = serializers.ChoiceField(choices=WebhookEndpoint.Status.choices)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
