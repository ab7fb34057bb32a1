"""The beat sweep: the safety net that makes the database, not the broker, the source of truth."""
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.services.claim import endpoints_at_cap_sql
from deliveries.services.wakeups import enqueue_delivery
from endpoints.models import RateLimitWindow, WebhookEndpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """Counts from one sweep: ``recovered`` abandoned claims, ``cancelled`` orphans,
    ``enqueued`` due deliveries."""

    recovered: int
    cancelled: int
    enqueued: int


def sweep_due_deliveries() -> SweepResult:
    """The beat sweep (every ``WEBHOOK_SWEEP_INTERVAL_SECONDS``): the safety net that makes the
    database, not the broker, the source of truth.

    1. ``in_flight`` deliveries whose claim expired (the worker died mid-attempt) become due again.
    2. Waiting deliveries of deleted endpoints are cancelled.
    3. Due deliveries of active endpoints that are overdue by more than
       ``WEBHOOK_SWEEP_GRACE_SECONDS`` (their wake-up was lost, or was never sent because the delay
       was too long for a countdown, or their endpoint was paused) are enqueued, oldest first, at
       most ``WEBHOOK_SWEEP_BATCH_SIZE`` per sweep; their ``next_attempt_at`` is set to now so the
       next sweep does not enqueue them again before the grace period has passed. Deliveries of an
       endpoint at its in-flight cap (``WEBHOOK_ENDPOINT_MAX_IN_FLIGHT`` × ``batch_max_events``)
       are left alone: they wait for a slot, not for a lost wake-up, and the store of each
       finished attempt wakes the batch engine, which claims them oldest first. Enqueued one by
       one, they used to poll the cap every ``WEBHOOK_BUSY_RETRY_SECONDS`` and push their
       ``next_attempt_at`` past the batch claims meanwhile: a receiver answering in 2 s with a cap
       of 10 got 2.3–2.7 deliveries/s instead of ~5 (issue 7, the README walk).
    """
    now = timezone.now()
    recovered = 0
    for status_value, condition in ((Delivery.Status.RETRYING, Q(attempt_count__gt=0)),
                                    (Delivery.Status.PENDING, Q(attempt_count=0))):
        recovered += Delivery.objects.filter(
            condition, status=Delivery.Status.IN_FLIGHT, claimed_until__lt=now
        ).update(status=status_value, next_attempt_at=now, claimed_until=None, updated_at=now)
    cancelled = Delivery.objects.filter(status__in=Delivery.DUE_STATUSES, endpoint__isnull=True).update(
        status=Delivery.Status.CANCELLED, last_error="Endpoint deleted.", completed_at=now,
        next_attempt_at=None, updated_at=now,
    )
    cutoff = now - timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_SECONDS)
    due_ids = list(
        Delivery.objects.filter(
            status__in=Delivery.DUE_STATUSES, next_attempt_at__lte=cutoff,
            endpoint__status=WebhookEndpoint.Status.ACTIVE,
        ).exclude(endpoint_id__in=RawSQL(endpoints_at_cap_sql(), []))
        .order_by("next_attempt_at").values_list("pk", flat=True)[: settings.WEBHOOK_SWEEP_BATCH_SIZE]
    )
    if due_ids:
        Delivery.objects.filter(pk__in=due_ids, status__in=Delivery.DUE_STATUSES).update(next_attempt_at=now)
        retried = set(Delivery.objects.filter(pk__in=due_ids, attempt_count__gt=0).values_list("pk", flat=True))
        for delivery_id in due_ids:
            enqueue_delivery(delivery_id, queue="retries" if delivery_id in retried else None)
    RateLimitWindow.objects.filter(window_start__lt=now - timedelta(minutes=2)).delete()
    if recovered or cancelled or due_ids:
        logger.info("sweep: recovered=%s cancelled=%s enqueued=%s", recovered, cancelled, len(due_ids))
    return SweepResult(recovered=recovered, cancelled=cancelled, enqueued=len(due_ids))

