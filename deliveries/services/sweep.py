"""The beat sweep: the safety net that makes the database, not the broker, the source of truth."""
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.services.claim import endpoints_at_cap_sql
from deliveries.services.wakeups import enqueue_delivery
from endpoints.models import RateLimitWindow, WebhookEndpoint

logger = logging.getLogger(__name__)

# Rows held and rows released per sweep, each: a released chunk must outrun what the engine can
# send in one sweep interval (~1,100 deliveries/s × 5 s on the bench machine, issue 7), and one
# UPDATE of this many rows takes a few hundred ms on PostgreSQL.
HOLD_BATCH_SIZE = 20_000


@dataclass(frozen=True)
class SweepResult:
    """Counts from one sweep: ``recovered`` abandoned claims, ``cancelled`` orphans,
    ``enqueued`` due deliveries, ``held`` and ``released`` deliveries (``hold_and_release``)."""

    recovered: int
    cancelled: int
    enqueued: int
    held: int = 0
    released: int = 0


def _release_room(limit: int) -> int:
    """How many held rows one sweep may release: ``limit``, and with ``WEBHOOK_MAX_QUEUE_SIZE`` set
    at most half the room left under it, so resuming an endpoint with a large backlog does not
    make publish answer ``503 QUEUE_FULL`` (the rest follow as the workers drain the queue)."""
    if not settings.WEBHOOK_MAX_QUEUE_SIZE:
        return limit
    waiting = Delivery.objects.filter(status__in=Delivery.DUE_STATUSES, held=False).count()
    return max(0, min(limit, (settings.WEBHOOK_MAX_QUEUE_SIZE - waiting) // 2))


def hold_and_release(*, limit: int = HOLD_BATCH_SIZE) -> tuple[int, int]:
    """Keep paused and disabled endpoints' due deliveries out of the claim's way; returns
    ``(held, released)``, each at most ``limit`` rows.

    A paused endpoint keeps its deliveries and keeps receiving new ones (they wait for it), and
    they are older than anything active, so the claim's scan (``delivery_claim_order_idx``, oldest
    first) walked all of them at every claim, under the claim lock: 91 ms a claim with 100,000 of
    them instead of 3 (``bench/paused_backlog.py``), growing with the pause. Here:

    1. **Release**: due deliveries with ``held`` set whose endpoint is ``active`` again are cleared,
       oldest first, so they are claimed again (and, being overdue, enqueued by this same sweep).
       That is the "within one sweep interval of becoming active" the endpoints' docs promise.
       With ``WEBHOOK_MAX_QUEUE_SIZE`` set, at most half the room under it is released per sweep
       (``_release_room``). Rows locked elsewhere are left to the next sweep.
    2. **Hold**: due deliveries of ``paused``/``disabled`` endpoints get ``held``, which takes them
       out of the claim's index. On PostgreSQL the transaction first locks those endpoints
       (``FOR NO KEY UPDATE SKIP LOCKED``: one being changed right now is left to the next sweep),
       so none of them can become active before the rows are held; delivery rows locked by
       someone else are skipped too. So the sweep never waits for a lock, and a row stays held
       after its endpoint is resumed only until the next sweep (SQLite has one writer at a time).

    ``held`` is only ever a filter in front of the claim: the claim still checks the endpoint's
    status itself, and a retry (``retry_now``, ``retry_many``) or a claim clears it.
    """
    due = Q(status__in=Delivery.DUE_STATUSES)
    postgresql = connection.vendor == "postgresql"
    # FOR NO KEY UPDATE (Django has no FOR SHARE): a resume's UPDATE waits for it, while a publish's
    # or replay's foreign-key check (FOR KEY SHARE) neither waits nor is waited for.
    rows = Delivery.objects.select_for_update(skip_locked=True, no_key=True, of=("self",)) if postgresql \
        else Delivery.objects.all()
    releasable = Delivery.objects.filter(due, held=True, endpoint__status=WebhookEndpoint.Status.ACTIVE)
    released = 0
    if releasable.exists():  # else no count of the whole queue for _release_room at every sweep
        with transaction.atomic():
            chosen = list(rows.filter(due, held=True, endpoint__status=WebhookEndpoint.Status.ACTIVE)
                          .order_by("next_attempt_at", "id").values_list("pk", flat=True)[:_release_room(limit)])
            released = Delivery.objects.filter(due, held=True, pk__in=chosen).update(held=False)
    with transaction.atomic():
        # Only those with something to hold are locked (delivery_endpoint_due_idx answers it).
        unheld = Delivery.objects.filter(due, held=False, endpoint_id=OuterRef("pk"))
        inactive = (WebhookEndpoint.objects.exclude(status=WebhookEndpoint.Status.ACTIVE)
                    .filter(Exists(unheld)).order_by("pk"))
        if postgresql:
            inactive = inactive.select_for_update(skip_locked=True, no_key=True)
        endpoint_ids = list(inactive.values_list("pk", flat=True))
        held = 0
        if endpoint_ids:
            chosen = list(rows.filter(due, held=False, endpoint_id__in=endpoint_ids)
                          .values_list("pk", flat=True)[:limit])
            held = Delivery.objects.filter(due, held=False, pk__in=chosen).update(held=True)
    return held, released


def sweep_due_deliveries() -> SweepResult:
    """The beat sweep (every ``WEBHOOK_SWEEP_INTERVAL_SECONDS``): the safety net that makes the
    database, not the broker, the source of truth.

    0. Paused and disabled endpoints' due deliveries are held, and held ones of endpoints active
       again released (``hold_and_release``).
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
    try:
        held, released = hold_and_release()
    except Exception:  # a failed hold must not cost the safety net below its run
        logger.exception("sweep: holding and releasing deliveries failed; the next sweep tries again")
        held = released = 0
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
            # attempt_count >= 0 (always true) lets it use delivery_claim_order_idx (Delivery.Meta)
            status__in=Delivery.DUE_STATUSES, held=False, attempt_count__gte=0, next_attempt_at__lte=cutoff,
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
    if recovered or cancelled or due_ids or held or released:
        logger.info("sweep: recovered=%s cancelled=%s enqueued=%s held=%s released=%s",
                    recovered, cancelled, len(due_ids), held, released)
    return SweepResult(recovered=recovered, cancelled=cancelled, enqueued=len(due_ids), held=held, released=released)

