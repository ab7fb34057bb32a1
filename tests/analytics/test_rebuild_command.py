"""``manage.py rebuild_rollups``: rows back-dated behind the roll-up watermark are only counted
after a rebuild, and the command says what it did."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from analytics import services as analytics_services
from analytics.models import AttemptRollup, Granularity
from deliveries.models import Delivery, DeliveryAttempt
from tests.analytics.analytics_data import T0, attempt, delivery, endpoint, known_dataset

pytestmark = pytest.mark.django_db


def _day_attempts() -> int:
    return sum(AttemptRollup.objects.filter(granularity=Granularity.DAY).values_list("attempts", flat=True))


def test_rebuild_rollups_counts_rows_back_dated_behind_the_watermark(event_types, settings):
    # given — the dataset rolled up (8 attempts), then an attempt imported with a time long behind the
    # watermark; no retention purge, so the rebuild may go back to the dataset's day (March 2026)
    settings.WEBHOOK_RETENTION_EVENTS_DAYS = settings.WEBHOOK_RETENTION_DELIVERIES_DAYS = 0
    settings.WEBHOOK_RETENTION_ATTEMPTS_DAYS = 0
    known_dataset()
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=2))
    assert _day_attempts() == 8
    late = delivery(endpoint("late"), "lead.created", at=T0 + timedelta(minutes=3), status="succeeded")
    attempt(late, 1, at=T0 + timedelta(minutes=3), outcome="succeeded", duration_ms=120)
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=2, minutes=1))
    assert _day_attempts() == 8  # the regular run only re-counts the last minutes

    # when
    out = StringIO()
    call_command("rebuild_rollups", stdout=out)

    # then
    assert _day_attempts() == 9
    assert out.getvalue().startswith("Rolled up ")
    assert "roll-up row" in out.getvalue()


def test_rebuild_rollups_with_nothing_stored_says_so(event_types):
    # given — no attempts or deliveries

    # when
    out = StringIO()
    call_command("rebuild_rollups", stdout=out)

    # then
    assert out.getvalue().strip() == "Nothing to roll up: no attempts or deliveries are stored."
    assert not AttemptRollup.objects.exists()


def test_rebuild_rollups_keeps_days_the_retention_purge_may_have_thinned(event_types, settings):
    # given — the dataset rolled up, then 40 days later its attempts purged (30-day retention)
    # while one pending delivery of that day survives the purge (its endpoint was paused)
    settings.WEBHOOK_RETENTION_ATTEMPTS_DAYS = 30
    known_dataset()
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=2))
    before = sorted(AttemptRollup.objects.filter(granularity=Granularity.DAY).values_list("bucket_start", "attempts"))
    DeliveryAttempt.objects.all().delete()
    assert Delivery.objects.filter(status="pending").exists()

    # when
    analytics_services.rebuild_rollups(now=T0 + timedelta(days=40))

    # then — the day's roll-up still counts the purged attempts
    after = sorted(AttemptRollup.objects.filter(granularity=Granularity.DAY).values_list("bucket_start", "attempts"))
    assert after == before
    assert sum(n for _, n in after) == 8


def test_rebuild_rollups_since_leaves_earlier_days_alone(event_types, settings):
    # given: the dataset's day rolled up, then one of its attempts deleted early (erase_subject, say)
    settings.WEBHOOK_RETENTION_EVENTS_DAYS = settings.WEBHOOK_RETENTION_DELIVERIES_DAYS = 0
    settings.WEBHOOK_RETENTION_ATTEMPTS_DAYS = 0
    known_dataset()
    analytics_services.rollup_delivery_stats(now=T0 + timedelta(days=2))
    DeliveryAttempt.objects.filter(pk=DeliveryAttempt.objects.order_by("pk").last().pk).delete()

    # when: rebuilt only from the next day on
    out = StringIO()
    call_command("rebuild_rollups", "--since", (T0 + timedelta(days=1)).date().isoformat(), stdout=out)

    # then: the dataset's day still counts the deleted attempt
    assert _day_attempts() == 8


def test_rebuild_rollups_refuses_a_since_in_the_future_and_keeps_counting(event_types, settings):
    # given: the dataset rolled up; an operator types a year wrong (2062 for 2026)
    settings.WEBHOOK_RETENTION_EVENTS_DAYS = settings.WEBHOOK_RETENTION_DELIVERIES_DAYS = 0
    settings.WEBHOOK_RETENTION_ATTEMPTS_DAYS = 0
    known_dataset()
    analytics_services.rollup_delivery_stats()
    assert _day_attempts() == 8

    # when
    with pytest.raises(CommandError, match="--since"):
        call_command("rebuild_rollups", "--since", "2999-11-01", stdout=StringIO())

    # then: the watermark did not move into the future, so the every-minute roll-up still counts
    # a new attempt (before the fix the watermark became 2999-11-01 and nothing was counted again)
    recent = timezone.now() - timedelta(minutes=10)
    late = delivery(endpoint("new"), "lead.created", at=recent, status="succeeded")
    attempt(late, 1, at=recent, outcome="succeeded", duration_ms=50)
    analytics_services.rollup_delivery_stats()
    assert _day_attempts() == 9
