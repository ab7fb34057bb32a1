"""Roll-ups (issue 6, "fast at scale"): the numbers read from roll-ups equal the numbers read from
raw rows, the roll-up is incremental and idempotent, counts rows that commit late, survives the
raw rows' purge and keeps only its own retention."""
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import queries
from analytics import services as analytics_services
from analytics.models import AttemptRollup, ErrorRollup, Granularity, RollupState
from analytics.tasks import rollup_delivery_stats
from deliveries.models import DeliveryAttempt
from tests.analytics.analytics_data import (
    T0,
    attempt,
    delivery,
    endpoint,
    known_dataset,
    random_dataset,
)

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def _rows() -> list[tuple]:
    return sorted(AttemptRollup.objects.values_list("granularity", "bucket_start", "endpoint_id", "event_type",
                                                    "attempts", "succeeded", "duration_sum_ms", "deliveries"))


RANGES = [
    (T0 - timedelta(days=1), T0 + timedelta(days=2)),  # everything: days, hours and minutes
    (T0 - timedelta(hours=20, minutes=13, seconds=7), T0 + timedelta(hours=30, seconds=41)),  # ragged edges
    (T0 + timedelta(minutes=7, seconds=3), T0 + timedelta(minutes=52)),  # inside one hour
]


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_overview_from_rollups_equals_overview_from_raw_rows(event_types, start, end):
    # given — three days of random traffic, read from raw rows only (nothing rolled up yet)
    random_dataset()
    raw = queries.overview(start=start, end=end)
    assert raw["attempts"]["total"] > 0

    # when — everything is rolled up, then read again (mostly from day/hour/minute roll-ups)
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=5))
    rolled = queries.overview(start=start, end=end)

    # then — identical, percentiles included (raw rows are binned like the roll-ups)
    assert rolled == raw


@pytest.mark.parametrize("bucket", ["minute", "hour", "day"])
def test_trends_from_rollups_equal_trends_from_raw_rows(event_types, bucket):
    # given
    random_dataset()
    span = {"minute": (T0, T0 + 3 * HOUR), "hour": (T0 - timedelta(days=1), T0 + timedelta(days=2)),
            "day": (T0 - timedelta(days=1), T0 + timedelta(days=2))}[bucket]
    now = T0 + timedelta(days=5)
    raw = queries.trends(start=span[0], end=span[1], bucket=bucket, now=now)

    # when — rolled up to the middle of the range: roll-ups before, raw rows after
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(hours=1, minutes=31, seconds=12))
    mixed = queries.trends(start=span[0], end=span[1], bucket=bucket, now=now)
    analytics_services.rollup_delivery_stats(now=now)
    rolled = queries.trends(start=span[0], end=span[1], bucket=bucket, now=now)

    # then
    assert mixed == raw
    assert rolled == raw


def test_rollup_is_idempotent(event_types):
    # given
    random_dataset(deliveries=100)
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=5))
    before = _rows()

    # when — again at the same moment, and again after a rebuild from scratch
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=5))
    again = _rows()
    analytics_services.rebuild_rollups(now=T0 + timedelta(days=5))

    # then
    assert again == before
    assert _rows() == before


def test_rollup_writes_minute_hour_and_day_rows_that_add_up(event_types):
    # given
    known_dataset()

    # when
    result = analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=2))

    # then — 8 attempts (d0 at 09:00 and the seven of the dataset), the same at every level
    for level in Granularity.values:
        rows = AttemptRollup.objects.filter(granularity=level)
        assert sum(rows.values_list("attempts", flat=True)) == 8
        assert sum(rows.values_list("deliveries", flat=True)) == 7
        assert sum(rows.values_list("duration_sum_ms", flat=True)) == 6320
        assert sum(ErrorRollup.objects.filter(granularity=level).values_list("count", flat=True)) == 4
    assert AttemptRollup.objects.filter(granularity=Granularity.HOUR).count() == 3  # 09:00 crm; 10:00 crm, erp
    assert result.watermark == (T0 + timedelta(days=2) - MINUTE).replace(second=0)
    assert RollupState.objects.get().watermark == result.watermark


def test_rollup_is_incremental_and_numbers_stay_current_between_runs(event_types):
    # given — the dataset is rolled up at T0+50m (everything before T0+49m)
    known_dataset()
    analytics_services.rollup_delivery_stats(now=T0 + 50 * MINUTE)
    crm = endpoint("late")
    new = delivery(crm, "lead.created", at=T0 + 55 * MINUTE, status="succeeded")

    # when — a new attempt after the watermark is read from the raw rows …
    attempt(new, 1, at=T0 + 55 * MINUTE, outcome="succeeded", duration_ms=70)
    current = queries.overview(start=T0, end=T0 + HOUR)["attempts"]["total"]
    # … and after the next run from the roll-ups
    analytics_services.rollup_delivery_stats(now=T0 + 2 * HOUR)
    DeliveryAttempt.objects.all().delete()  # only roll-ups can answer now
    rolled = queries.overview(start=T0, end=T0 + HOUR)

    # then
    assert current == 8
    assert rolled["attempts"]["total"] == 8
    assert rolled["response_time_ms"]["avg"] == 797.5  # (6310 + 70) / 8


def test_rollup_counts_a_row_that_commits_late_within_the_recheck_window(event_types, settings):
    # given — rolled up to T0+10m; then a row stamped T0+8m commits (it was in a long transaction)
    settings.WEBHOOK_ANALYTICS_ROLLUP_RECHECK_SECONDS = 600
    crm = endpoint("crm")
    first = delivery(crm, "lead.created", at=T0, status="succeeded")
    attempt(first, 1, at=T0 + MINUTE, outcome="succeeded", duration_ms=10)
    analytics_services.rollup_delivery_stats(now=T0 + 11 * MINUTE)
    late = delivery(crm, "lead.created", at=T0 + 8 * MINUTE, status="succeeded")
    attempt(late, 1, at=T0 + 8 * MINUTE, outcome="succeeded", duration_ms=30)

    # when
    analytics_services.rollup_delivery_stats(now=T0 + 12 * MINUTE)

    # then
    minute_rows = AttemptRollup.objects.filter(granularity=Granularity.MINUTE)
    assert sum(minute_rows.values_list("attempts", flat=True)) == 2
    hour = AttemptRollup.objects.get(granularity=Granularity.HOUR)
    assert (hour.attempts, hour.deliveries, hour.duration_sum_ms) == (2, 2, 40)


def test_rollups_outlive_the_raw_rows_and_keep_their_own_retention(event_types, settings):
    # given — rolled up, then every raw attempt and delivery purged
    settings.WEBHOOK_ANALYTICS_MINUTE_ROLLUP_RETENTION_DAYS = 2
    settings.WEBHOOK_ANALYTICS_ROLLUP_RETENTION_DAYS = 10
    known_dataset()
    analytics_services.rollup_delivery_stats(now=T0 + HOUR)
    DeliveryAttempt.objects.all().delete()

    # when — a run three days later prunes the minute roll-ups only
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=3))
    three_days = queries.overview(start=T0, end=T0 + HOUR)
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=11))

    # then
    assert three_days["attempts"]["total"] == 7
    assert three_days["errors"]["total"] == 4
    assert not AttemptRollup.objects.filter(granularity=Granularity.DAY).exists()
    assert not AttemptRollup.objects.filter(granularity=Granularity.MINUTE, bucket_start__lt=T0 + timedelta(days=1))


def test_rollup_stops_at_its_time_budget_and_resumes(event_types):
    # given
    random_dataset(deliveries=50)

    # when — no time at all: nothing written; then a normal run
    stopped = analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=5), max_seconds=-1)
    resumed = analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=5))

    # then
    assert stopped.complete is False and stopped.minutes == 0
    assert resumed.complete is True
    assert sum(AttemptRollup.objects.filter(granularity="day").values_list("attempts", flat=True)) == (
        DeliveryAttempt.objects.count())


def test_rollup_task_runs_the_service(event_types):
    # given — one attempt two hours ago (the task uses the real clock)
    two_hours_ago = timezone.now() - 2 * HOUR
    row = delivery(endpoint("crm"), "lead.created", at=two_hours_ago, status="succeeded")
    attempt(row, 1, at=two_hours_ago, outcome="succeeded", duration_ms=42)

    # when — the task as the beat calls it
    rollup_delivery_stats.apply()

    # then
    assert AttemptRollup.objects.get(granularity="minute").duration_sum_ms == 42
    assert RollupState.objects.get().watermark > two_hours_ago
