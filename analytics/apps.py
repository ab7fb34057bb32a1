from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """Read-only analytics (issue 6 fills this app in)."""

    name = "analytics"
