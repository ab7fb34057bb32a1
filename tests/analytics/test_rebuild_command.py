"""``manage.py rebuild_rollups``: rows back-dated behind the roll-up watermark are only counted
after a rebuild, and the command says what it did."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from analytics import services as analytics_services
from analytics.models import AttemptRollup, Granularity
from tests.analytics.analytics_data import T0, attempt, delivery, endpoint, known_dataset

pytestmark = pytest.mark.django_db


def _day_attempts() -> int:
    return sum(AttemptRollup.objects.filter(granularity=Granularity.DAY).values_list("attempts", flat=True))


def test_rebuild_rollups_counts_rows_back_dated_behind_the_watermark(event_types):
    # given — the dataset rolled up (8 attempts), then an attempt imported with a time long behind the watermark
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
