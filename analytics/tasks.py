"""Celery tasks of the analytics app: thin adapters that call one service (STYLE.md rule 7)."""
from celery import shared_task


@shared_task(ignore_result=True)
def evaluate_alert_rules() -> None:
    """Periodic (beat, every ``WEBHOOK_ALERT_EVALUATION_INTERVAL_SECONDS``): evaluate the stored
    alert rules; fire and resolve alerts (``analytics.alerts.services.evaluate_alert_rules``)."""
    from analytics.alerts import services as alert_services

    alert_services.evaluate_alert_rules()


@shared_task(ignore_result=True)
def rollup_delivery_stats() -> None:
    """Periodic (beat, every ``WEBHOOK_ANALYTICS_ROLLUP_INTERVAL_SECONDS``): bring the analytics
    roll-up tables up to date (``analytics.services.rollup_delivery_stats``; idempotent)."""
    from analytics import services as analytics_services

    analytics_services.rollup_delivery_stats()
