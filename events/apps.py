from django.apps import AppConfig


class EventsConfig(AppConfig):
    """Event type catalog, published events, publishing and fan-out."""

    name = "events"
