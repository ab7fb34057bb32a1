from django.apps import AppConfig


class VocelioWebhooksConfig(AppConfig):
    """Project app: owns API keys (the API's credentials) and the shared error format."""

    name = "vocelio_webhooks"
    verbose_name = "API access"

    def ready(self) -> None:
        # Our JSON-in-text fields are JSON in the API, not strings.
        from rest_framework import serializers

        from vocelio_webhooks.crypto import EncryptedJSONField
        from vocelio_webhooks.fields import OrderedJSONField

        serializers.ModelSerializer.serializer_field_mapping[OrderedJSONField] = serializers.JSONField
        serializers.ModelSerializer.serializer_field_mapping[EncryptedJSONField] = serializers.JSONField
