"""Writes of the analytics app: the roll-up of delivery statistics (issue 6, "fast at scale").

``rollup_delivery_stats`` runs every ``WEBHOOK_ANALYTICS_ROLLUP_INTERVAL_SECONDS`` (beat task
``analytics.tasks.rollup_delivery_stats``). Each run:

1. takes the closed minutes up to ``now - WEBHOOK_ANALYTICS_ROLLUP_LAG_SECONDS`` (rounded down to
   a minute): rows are stamped ``created_at`` by the application just before their INSERT, and a
   transaction may commit a little later, so a row may show up "late" for its minute;
2. re-aggregates, from the raw ``DeliveryAttempt``/``Delivery`` rows, every minute from
   ``watermark - WEBHOOK_ANALYTICS_ROLLUP_RECHECK_SECONDS`` to that cut-off (delete + insert, so
   rows that committed late within the recheck window are counted, and running twice changes
   nothing), in chunks of at most a day (to midnight UTC), each in its own transaction that also moves the
   watermark — a crash loses no work and double-counts nothing;
3. re-sums the touched hours from their minutes and the touched days from their hours;
4. deletes minute roll-ups older than ``WEBHOOK_ANALYTICS_MINUTE_ROLLUP_RETENTION_DAYS`` and hour
   and day roll-ups older than ``WEBHOOK_ANALYTICS_ROLLUP_RETENTION_DAYS``. The raw attempts' own
   retention (``deliveries.services.retention``) does not touch roll-ups.

The watermark row is locked (``SELECT … FOR UPDATE``) while a chunk is written, so two runs at once
serialize instead of racing.
"""
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from analytics.histogram import BIN_FIELDS
from analytics.models import AttemptRollup, ErrorRollup, Granularity, RollupState
from analytics.queries.aggregation import (
    ROLLUP_STATE_NAME,
    Filters,
    Measures,
    ceil_to,
    floor_to,
    raw_errors,
    raw_measures,
    rollup_measures,
)
from deliveries.models import Delivery, DeliveryAttempt
from deliveries.queries import retention_cutoffs
from vocelio_webhooks.errors import ValidationFailed

logger = logging.getLogger(__name__)

CHUNK = timedelta(days=1)  # chunks end at midnight UTC, so a backfill sums each day once


@dataclass(frozen=True)
class RollupResult:
    """What one run did: the watermark after it (``None`` when there is nothing to roll up),
    minutes re-aggregated, roll-up rows written and deleted, and whether it caught up with the
    cut-off (``False``: the time budget ran out; the next run goes on)."""

    watermark: datetime | None
    minutes: int
    rows_written: int
    rows_pruned: int
    complete: bool
    seconds: float


def rollup_delivery_stats(*, now: datetime | None = None, max_seconds: float | None = None,
                          recheck_seconds: float | None = None) -> RollupResult:
    """Bring the roll-up tables up to ``now - WEBHOOK_ANALYTICS_ROLLUP_LAG_SECONDS`` (see the module
    docstring). Inputs: ``now`` (default: the clock), ``max_seconds`` (time budget; no new chunk
    starts after it; default ``WEBHOOK_ANALYTICS_ROLLUP_MAX_SECONDS_PER_RUN``), ``recheck_seconds``
    (default ``WEBHOOK_ANALYTICS_ROLLUP_RECHECK_SECONDS``). Idempotent. Output: ``RollupResult``."""
    began = time.monotonic()
    now = now or timezone.now()
    max_seconds = settings.WEBHOOK_ANALYTICS_ROLLUP_MAX_SECONDS_PER_RUN if max_seconds is None else max_seconds
    recheck = timedelta(seconds=settings.WEBHOOK_ANALYTICS_ROLLUP_RECHECK_SECONDS
                        if recheck_seconds is None else recheck_seconds)
    cutoff = floor_to(now - timedelta(seconds=settings.WEBHOOK_ANALYTICS_ROLLUP_LAG_SECONDS), "minute")
    state = _state()
    watermark = state.watermark
    if watermark is None:
        watermark = _first_data_minute()
        if watermark is None:
            return RollupResult(None, 0, 0, 0, True, time.monotonic() - began)
    low = watermark - recheck
    minutes = rows = 0
    complete = True
    while low < cutoff:
        if time.monotonic() - began > max_seconds:
            complete = False
            break
        next_row = _first_data_minute(since=low)
        if next_row is None or next_row >= cutoff:
            watermark = _advance_watermark(cutoff, now=now, began=began)
            break
        # Skip stretches without raw rows (nothing to re-aggregate there), e.g. quiet nights.
        low = max(low, next_row)
        high = min(cutoff, floor_to(low, "day") + CHUNK)
        with transaction.atomic():
            locked = RollupState.objects.select_for_update().get(name=ROLLUP_STATE_NAME)
            rows += _rollup_minutes(low, high)
            rows += _resum(Granularity.HOUR, floor_to(low, "hour"), ceil_to(high, "hour"))
            rows += _resum(Granularity.DAY, floor_to(low, "day"), ceil_to(high, "day"))
            if locked.watermark is None or high > locked.watermark:
                locked.watermark = high
            locked.last_run_at = now
            locked.last_run_seconds = time.monotonic() - began
            locked.save()
            watermark = locked.watermark
        minutes += int((high - low) / timedelta(minutes=1))
        low = high
    pruned = _prune(now)
    result = RollupResult(watermark, minutes, rows, pruned, complete, time.monotonic() - began)
    logger.info("analytics roll-up: watermark %s, %d minutes, %d rows written, %d pruned, complete=%s, %.2fs",
                result.watermark, result.minutes, result.rows_written, result.rows_pruned, result.complete,
                result.seconds)
    return result


def rebuild_rollups(*, now: datetime | None = None, since: datetime | None = None) -> RollupResult:
    """Forget the watermark and roll up the stored attempts and deliveries again (an operator's
    repair after rows were imported or back-dated; the benchmark's first roll-up). No time budget.

    The rebuild starts at the oldest raw row, but never before ``retention_horizon(now)``: the
    first whole day whose raw rows the retention purge cannot have touched yet. Older roll-ups
    are kept as they are, because re-counting a day whose attempts were partly purged (a paused
    endpoint's pending delivery outlives the purge, for one) would erase history. ``since``
    (rounded down to midnight UTC) replaces the horizon: the operator knows best when raw rows
    were last removed. Raw rows newer than the horizon can be gone too: the purge deletes an old
    event with all its deliveries (replays included) and an old delivery with all its attempts,
    and ``erase_subject`` or ``purge --attempts-days`` remove rows early; a rebuild re-counts
    such days without them, so start it after them with ``since``. Raises ``ValidationFailed``
    when ``since`` is a day after ``now``'s: the watermark would move into the future and the
    every-minute roll-up would count nothing until that day (a mistyped year stopped the
    dashboard and the alert rules silently)."""
    now = now or timezone.now()
    if since is not None and floor_to(since, "day") > now:
        raise ValidationFailed(
            f"since {since:%Y-%m-%d} is in the future: the roll-ups would count nothing until then.",
            details={"since": since.isoformat()})
    first = _first_data_minute()
    horizon = floor_to(since, "day") if since is not None else retention_horizon(now)
    if first is not None and horizon is not None:
        first = max(first, horizon)
    with transaction.atomic():
        _state()
        RollupState.objects.filter(name=ROLLUP_STATE_NAME).update(watermark=first)
    return rollup_delivery_stats(now=now, max_seconds=float("inf"), recheck_seconds=0)


def retention_horizon(now: datetime) -> datetime | None:
    """Midnight (UTC) after the oldest moment the retention purge may have deleted raw rows
    from, with the configured ``WEBHOOK_RETENTION_EVENTS_DAYS``, ``..._DELIVERIES_DAYS`` and
    ``..._ATTEMPTS_DAYS`` (the shortest non-zero one; 0 turns a step off). ``None`` when every
    step is off: nothing is ever purged."""
    cutoffs = retention_cutoffs(now=now)
    latest = max((cutoffs[step] for step in ("events", "deliveries", "attempts") if cutoffs[step]), default=None)
    return ceil_to(latest, "day") if latest is not None else None


def _state() -> RollupState:
    try:
        with transaction.atomic():
            return RollupState.objects.get_or_create(name=ROLLUP_STATE_NAME)[0]
    except IntegrityError:  # created by a concurrent run between the get and the create
        return RollupState.objects.get(name=ROLLUP_STATE_NAME)


def _advance_watermark(moment: datetime, *, now: datetime, began: float) -> datetime:
    """Move the watermark to ``moment`` (no raw row lies between it and ``moment``); returns
    the watermark, which a concurrent run may have moved further."""
    with transaction.atomic():
        locked = RollupState.objects.select_for_update().get(name=ROLLUP_STATE_NAME)
        if locked.watermark is None or moment > locked.watermark:
            locked.watermark = moment
        locked.last_run_at = now
        locked.last_run_seconds = time.monotonic() - began
        locked.save()
    return locked.watermark


def _first_data_minute(*, since: datetime | None = None) -> datetime | None:
    """The minute of the oldest attempt or delivery created at or after ``since`` (indexed)."""
    attempts, deliveries = DeliveryAttempt.objects.all(), Delivery.objects.all()
    if since is not None:
        attempts, deliveries = attempts.filter(created_at__gte=since), deliveries.filter(created_at__gte=since)
    firsts = [
        attempts.aggregate(first=Min("created_at"))["first"],
        deliveries.aggregate(first=Min("created_at"))["first"],
    ]
    firsts = [moment for moment in firsts if moment is not None]
    return floor_to(min(firsts), "minute") if firsts else None


def _minute_key(created_at, endpoint_id, event_type, environment):
    return floor_to(created_at, "minute"), endpoint_id, event_type, environment


_ATTEMPT_COLUMNS = ("granularity", "bucket_start", "endpoint_id", "event_type", "environment", "deliveries", "replays",
                   "attempts", "succeeded", "retried", "failed", "duration_sum_ms", "duration_min_ms",
                   "duration_max_ms", *BIN_FIELDS)
_ERROR_COLUMNS = ("granularity", "bucket_start", "endpoint_id", "event_type", "environment", "status_code",
                  "error_class", "count", "example_attempt_id")


def _attempt_row(level: str, key: tuple, measures: Measures) -> tuple:
    bucket, endpoint_id, event_type, environment = key
    return (level, bucket, endpoint_id, event_type, environment, measures.deliveries, measures.replays,
            measures.attempts, measures.succeeded, measures.retried, measures.failed, measures.duration_sum_ms,
            measures.duration_min_ms, measures.duration_max_ms, *measures.histogram)


def _insert(model, columns: tuple[str, ...], rows: list[tuple]) -> int:
    """Insert plain tuples: ``COPY`` on PostgreSQL, ``executemany`` elsewhere. ``bulk_create``
    prepares each of a roll-up row's ~95 values through its field and was 20× slower here."""
    if not rows:
        return 0
    table = model._meta.db_table
    column_list = ", ".join(connection.ops.quote_name(column) for column in columns)
    bucket_index = columns.index("bucket_start")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({column_list}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            adapt = connection.ops.adapt_datetimefield_value
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({column_list}) VALUES ({placeholders})",
                               [(*row[:bucket_index], adapt(row[bucket_index]), *row[bucket_index + 1:])
                                for row in rows])
    return len(rows)


def _replace(level: str, low: datetime, high: datetime, attempt_rows: list[tuple], error_rows: list[tuple]) -> int:
    """Delete the ``level`` roll-ups of [low, high) and insert the given rows instead."""
    for model in (AttemptRollup, ErrorRollup):
        # No relations and no signals: Django deletes with one DELETE … WHERE, fetching nothing.
        model.objects.filter(granularity=level, bucket_start__gte=low, bucket_start__lt=high).delete()
    return _insert(AttemptRollup, _ATTEMPT_COLUMNS, attempt_rows) + _insert(ErrorRollup, _ERROR_COLUMNS, error_rows)


def _rollup_minutes(low: datetime, high: datetime) -> int:
    """Replace the minute roll-ups of [low, high) by a fresh aggregation of the raw rows."""
    everything = Filters()
    measures = raw_measures(ranges=[(low, high)], filters=everything, key=_minute_key)
    errors = raw_errors(ranges=[(low, high)], filters=everything, key=_minute_key)
    level = Granularity.MINUTE.value
    return _replace(
        level, low, high,
        [_attempt_row(level, key, group) for key, group in measures.items()],
        [(level, *key, status_code, error_class, count, example)
         for (key, status_code, error_class), (count, example) in errors.items()],
    )


_FINER = {Granularity.HOUR.value: Granularity.MINUTE.value, Granularity.DAY.value: Granularity.HOUR.value}


def _resum(level: str, low: datetime, high: datetime) -> int:
    """Replace the ``level`` roll-ups of [low, high) (aligned to ``level``) by sums of the next
    finer roll-ups."""
    finer = _FINER[level]
    group_by = ("bucket_start", "endpoint_id", "event_type", "environment")
    # Sum per finer bucket in the database, then fold the finer buckets into this level here:
    # at most 60 minutes or 24 hours per group.
    folded: dict[tuple, Measures] = {}
    for (bucket, endpoint_id, event_type, environment), measures in rollup_measures(
        level=finer, ranges=[(low, high)], filters=Filters(), group_by=group_by
    ):
        key = (floor_to(bucket, level), endpoint_id, event_type, environment)
        if key in folded:
            folded[key].merge(measures)
        else:
            folded[key] = measures
    error_rows: dict[tuple, list[int]] = {}
    for row in (ErrorRollup.objects.filter(granularity=finer, bucket_start__gte=low, bucket_start__lt=high)
                .order_by().values_list("bucket_start", "endpoint_id", "event_type", "environment", "status_code",
                                        "error_class", "count", "example_attempt_id").iterator(chunk_size=5000)):
        key = (floor_to(row[0], level), *row[1:6])
        entry = error_rows.get(key)
        if entry is None:
            error_rows[key] = [row[6], row[7]]
        else:
            entry[0] += row[6]
            entry[1] = max(entry[1], row[7])
    return _replace(
        level, low, high,
        [_attempt_row(level, key, measures) for key, measures in folded.items()],
        [(level, *key, count, example) for key, (count, example) in error_rows.items()],
    )


def _prune(now: datetime) -> int:
    """Delete roll-ups past their retention (0 or less: keep forever)."""
    deleted = 0
    for levels, days in (((Granularity.MINUTE,), settings.WEBHOOK_ANALYTICS_MINUTE_ROLLUP_RETENTION_DAYS),
                         ((Granularity.HOUR, Granularity.DAY), settings.WEBHOOK_ANALYTICS_ROLLUP_RETENTION_DAYS)):
        if days <= 0:
            continue
        cutoff = now - timedelta(days=days)
        for model in (AttemptRollup, ErrorRollup):
            deleted += model.objects.filter(granularity__in=levels, bucket_start__lt=cutoff).delete()[0]
    return deleted

