from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """Analytics: overview and trends (read side, roll-ups), alert rules and monitoring."""

    name = "analytics"

    def ready(self) -> None:
        # analytics plugs its alert gauges into /metrics, so nothing outside analytics imports it
        # (DESIGN.md: "nothing imports analytics").
        from analytics.alerts.metrics import alert_metric_families
        from vocelio_webhooks import metrics

        metrics.add_scrape_source(alert_metric_families)
