from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    """Webhook endpoints: where we send, how we sign, what they subscribe to."""

    name = "endpoints"
