"""Celery tasks: thin adapters that take ids and call one service (STYLE.md rules 7–10)."""
from celery import shared_task
from django.db import InterfaceError, OperationalError

# Delivery tasks are idempotent (claims are atomic), so acks_late with reject_on_worker_lost is safe;
# database errors (a restart) are retried with backoff, anything left over is found by the sweep.
_DELIVERY_TASK_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 10,
}


@shared_task(**_DELIVERY_TASK_OPTIONS)
def deliver(delivery_id: int) -> None:
    """Make the next attempt of delivery ``delivery_id`` if it is due (idempotent).

    Database errors (a restart) are retried with backoff; anything left over is found by the sweep.
    """
    from deliveries import services as delivery_services

    delivery_services.attempt_delivery(delivery_id=delivery_id)


@shared_task(**_DELIVERY_TASK_OPTIONS)
def deliver_due(high_priority_only: bool = False) -> None:
    """Wake-up: claim, send and store batches of due deliveries while they come back full, for up
    to ``WEBHOOK_WAKEUP_BUDGET_SECONDS`` (``run_wakeup``); those of high-priority event types only
    when ``high_priority_only`` (wake-ups on the ``priority`` queue).

    Idempotent like ``deliver``: a wake-up that finds nothing due does nothing. A worker that dies
    mid-batch leaves its claims to expire; the sweep makes them due again.
    """
    from deliveries import services as delivery_services

    delivery_services.run_wakeup(high_priority_only=high_priority_only)


@shared_task(ignore_result=True)
def sweep_due_deliveries() -> None:
    """Periodic (beat): recover abandoned claims and enqueue overdue deliveries."""
    from deliveries import services as delivery_services

    delivery_services.sweep_due_deliveries()


@shared_task(ignore_result=True)
def purge_expired_data() -> None:
    """Periodic (beat, every ``WEBHOOK_RETENTION_INTERVAL_SECONDS``): delete or blank what is older
    than the ``WEBHOOK_RETENTION_*`` periods, in batches (``deliveries.services.purge_expired_data``)."""
    from deliveries import services as delivery_services

    delivery_services.purge_expired_data()


@shared_task(ignore_result=True)
def probe_disabled_endpoints() -> None:
    """Periodic (beat): try endpoints the service disabled itself; re-enable those that answer 2xx."""
    from deliveries import services as delivery_services

    delivery_services.probe_disabled_endpoints()
