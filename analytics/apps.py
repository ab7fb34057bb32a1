from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """Analytics: overview and trends (read side, roll-ups), alert rules and monitoring."""

    name = "analytics"
