from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    """Deliveries (one event to one endpoint) and their attempts; the deliver task and the sweep."""

    name = "deliveries"
