from django.apps import AppConfig


class VocelioWebhooksConfig(AppConfig):
    """Project app: owns API keys (the API's credentials) and the shared error format."""

    name = "vocelio_webhooks"
    verbose_name = "API access"
