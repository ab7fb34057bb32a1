"""Retention: purge what is older than the configured periods, in small batches.

Issue 5, "Data protection": events, deliveries and attempts older than configurable periods are
purged by a beat task in batches, and successful attempts' bodies can be kept for less time than
failures' (they are what is least needed and most likely to hold personal data).
"""
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt
from deliveries.queries import retention_cutoffs
from events.models import Event

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PurgeResult:
    """Counts from one purge run. ``batches`` is the number of write transactions; ``complete``
    is False when the run stopped at its time budget with work left (the next run goes on)."""

    attempt_bodies_blanked: int
    attempts_deleted: int
    deliveries_deleted: int
    events_deleted: int
    batches: int
    complete: bool


def purge_expired_data(
    *,
    now: datetime | None = None,
    events_days: int | None = None,
    deliveries_days: int | None = None,
    attempts_days: int | None = None,
    successful_bodies_days: int | None = None,
    batch_size: int | None = None,
    max_seconds: float | None = None,
) -> PurgeResult:
    """Apply the retention periods (each argument defaults to its ``WEBHOOK_RETENTION_*`` setting).

    In this order, each step in batches of ``batch_size`` rows, one transaction per batch:

    1. Successful attempts created more than ``successful_bodies_days`` ago get their
       ``request_body`` and ``response_body`` blanked (hash, size, status and timing stay).
    2. Attempts created more than ``attempts_days`` ago are deleted.
    3. Deliveries created more than ``deliveries_days`` ago are deleted with their attempts.
    4. Events received more than ``events_days`` ago are deleted with their deliveries and attempts.

    A delivery that is not final (``pending``, ``in_flight``, ``retrying``) is never deleted, nor
    are its attempts, nor its event: steps 2–4 skip them, and re-check it in the ``DELETE`` so a
    replay that starts between the select and the delete keeps its event. A period of 0 or less
    turns its step off. The run starts no new batch after ``max_seconds``
    (``WEBHOOK_RETENTION_MAX_SECONDS_PER_RUN``) and reports ``complete=False``.
    Returns a ``PurgeResult``; raises only database errors.
    """
    now = now or timezone.now()
    batch_size = max(1, batch_size or settings.WEBHOOK_RETENTION_BATCH_SIZE)
    max_seconds = settings.WEBHOOK_RETENTION_MAX_SECONDS_PER_RUN if max_seconds is None else max_seconds
    deadline = time.monotonic() + max_seconds

    cutoffs = retention_cutoffs(now=now, events_days=events_days, deliveries_days=deliveries_days,
                                attempts_days=attempts_days, successful_bodies_days=successful_bodies_days)
    final = list(Delivery.FINAL_STATUSES)
    live_delivery = Delivery.objects.filter(event=OuterRef("pk")).exclude(status__in=final)
    steps: list[tuple[str, QuerySet, str]] = []
    if cutoff := cutoffs["successful_bodies"]:
        steps.append(("attempt_bodies_blanked", DeliveryAttempt.objects.filter(
            Q(request_body__gt="") | Q(response_body__gt=""),
            outcome=DeliveryAttempt.Outcome.SUCCEEDED, created_at__lt=cutoff,
        ), "blank"))
    if cutoff := cutoffs["attempts"]:
        steps.append(("attempts_deleted", DeliveryAttempt.objects.filter(
            created_at__lt=cutoff, delivery__status__in=final), "delete"))
    if cutoff := cutoffs["deliveries"]:
        steps.append(("deliveries_deleted", Delivery.objects.filter(created_at__lt=cutoff, status__in=final), "delete"))
    if cutoff := cutoffs["events"]:
        steps.append(("events_deleted", Event.objects.filter(received_at__lt=cutoff).exclude(Exists(live_delivery)),
                      "delete"))

    counts = {"attempt_bodies_blanked": 0, "attempts_deleted": 0, "deliveries_deleted": 0, "events_deleted": 0}
    # Deleting a delivery or an event deletes its children too; they are counted where they belong.
    counter_of = {DeliveryAttempt._meta.label: "attempts_deleted", Delivery._meta.label: "deliveries_deleted",
                  Event._meta.label: "events_deleted"}
    batches = 0
    complete = True
    for name, queryset, action in steps:
        while True:
            if time.monotonic() > deadline:
                complete = False
                break
            ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            with transaction.atomic():
                # The step's own conditions are applied again: a row that changed since the select
                # (a replay made its event live again) is left alone.
                batch = queryset.model.objects.filter(pk__in=ids) & queryset
                if action == "blank":
                    counts[name] += batch.update(request_body="", response_body="")
                else:
                    for label, deleted in batch.delete()[1].items():
                        if label in counter_of:
                            counts[counter_of[label]] += deleted
            batches += 1
            if len(ids) < batch_size:
                break
        if not complete:
            break
    result = PurgeResult(**counts, batches=batches, complete=complete)
    if batches:
        logger.info(
            "retention purge: bodies_blanked=%s attempts=%s deliveries=%s events=%s batches=%s complete=%s",
            result.attempt_bodies_blanked, result.attempts_deleted, result.deliveries_deleted,
            result.events_deleted, result.batches, result.complete,
        )
    return result
