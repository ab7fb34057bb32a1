"""Analytics numbers (issue 6) against values computed by hand from ``known_dataset`` (see its
table in ``tests/analytics/analytics_data.py``)."""
from datetime import timedelta

import pytest

from analytics import queries
from analytics.histogram import BOUNDS_MS, percentile
from analytics.queries.aggregation import plan_segments
from tests.analytics.analytics_data import (
    T0,
    attempt,
    delivery,
    endpoint,
    known_dataset,
)

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)


def test_overview_counts_rates_and_percentiles_match_hand_computed_values(event_types):
    # given
    data = known_dataset()

    # when
    result = queries.overview(start=T0, end=T0 + HOUR)

    # then — seven attempts in range: durations sorted 50, 100, 200, 260, 300, 400, 5000 ms.
    assert result["attempts"] == {"total": 7, "succeeded": 3, "failed": 4,
                                  "by_outcome": {"succeeded": 3, "retry": 3, "failed": 1}}
    assert result["success_rate"] == 42.86  # 3/7
    assert result["error_rate"] == 57.14  # 4/7
    # avg = 6310 / 7 = 901.43; p50 = rank ceil(3.5)=4 → 260 (a bin bound, so exact);
    # p95 = rank ceil(6.65)=7 → 5000; p99 = rank ceil(6.93)=7 → 5000.
    assert result["response_time_ms"] == {"avg": 901.43, "p50": 260, "p95": 5000, "p99": 5000}
    # Deliveries d1-d6 (d0 is an hour earlier); d6 is a replay. Final: 3 succeeded of 5 → 60 %.
    assert result["deliveries"] == {
        "total": 6, "replays": 1,
        "by_status": {"pending": 1, "in_flight": 0, "retrying": 0, "succeeded": 3, "failed": 1,
                      "dead_lettered": 1, "cancelled": 0},
        "success_rate": 60.0,
    }
    assert result["queue"] == {"pending": 1, "retrying": 0, "in_flight": 0}
    assert result["dead_letters"] == 1
    assert result["open_circuits"] == 1
    assert result["open_circuit_endpoints"][0]["endpoint_id"] == data["erp"].pk


def test_overview_breaks_down_by_endpoint_and_event_type_most_failed_first(event_types):
    # given
    data = known_dataset()

    # when
    result = queries.overview(start=T0, end=T0 + HOUR)

    # then — crm: 100, 200, 300, 400, 5000 → avg 1200, p50 rank 3 → 300, p95/p99 rank 5 → 5000.
    crm, erp = result["endpoints"]
    assert crm == {
        "endpoint_id": data["crm"].pk, "name": "crm", "url": "https://crm.example.com/hook",
        "environment": "production", "deliveries": 3, "attempts": 5, "succeeded": 2, "failed": 3,
        "success_rate": 40.0, "error_rate": 60.0,
        "response_time_ms": {"avg": 1200.0, "p50": 300, "p95": 5000, "p99": 5000},
    }
    # erp: 50, 260 → avg 155, p50 rank 1 → 50, p95/p99 rank 2 → 260.
    assert erp["endpoint_id"] == data["erp"].pk
    assert (erp["deliveries"], erp["attempts"], erp["succeeded"], erp["failed"]) == (3, 2, 1, 1)
    assert erp["response_time_ms"] == {"avg": 155.0, "p50": 50, "p95": 260, "p99": 260}
    assert [row["event_type"] for row in result["event_types"]] == ["lead.created", "call.ended"]
    assert result["event_types"][0]["attempts"] == 5 and result["event_types"][0]["failed"] == 3
    assert result["event_types"][1]["success_rate"] == 50.0


def test_overview_error_analysis_groups_by_status_code_and_error_class_with_latest_example(event_types):
    # given
    data = known_dataset()

    # when
    errors = queries.overview(start=T0, end=T0 + HOUR)["errors"]

    # then — not succeeded: 500 (d1), 500 (d3), timeout (d3), 404 (d4).
    assert errors["total"] == 4
    assert [(row["status_code"], row["count"]) for row in errors["by_status_code"]] == [(500, 2), (404, 1), (None, 1)]
    assert [(row["error_class"], row["count"]) for row in errors["by_error_class"]] == [
        ("http_500", 2), ("http_404", 1), ("timeout", 1)]
    example = errors["by_status_code"][0]["example"]
    assert example["attempt_id"] == data["a3"].pk  # the latest 500
    assert example["error_message"] == "HTTP 500: upstream down"
    assert example["status_code"] == 500
    assert errors["by_error_class"][2]["example"]["attempt_id"] == data["a3b"].pk


@pytest.mark.parametrize(("filters", "attempts", "succeeded"), [
    ({"endpoint_id": "erp"}, 2, 1),
    ({"event_type": "lead.created"}, 5, 2),
    ({"environment": "staging"}, 2, 1),
    ({"environment": "development"}, 0, 0),
    ({"environment": "production", "environments": ("staging",)}, 0, 0),  # outside the key's limit
    ({"environments": ("production",)}, 5, 2),
])
def test_overview_filters_narrow_every_number(event_types, filters, attempts, succeeded):
    # given
    data = known_dataset()
    if filters.get("endpoint_id"):
        filters = {**filters, "endpoint_id": data[filters["endpoint_id"]].pk}

    # when
    result = queries.overview(start=T0, end=T0 + HOUR, **filters)

    # then
    assert result["attempts"]["total"] == attempts
    assert result["attempts"]["succeeded"] == succeeded
    assert sum(row["attempts"] for row in result["endpoints"]) == attempts
    if attempts == 0:
        assert result["success_rate"] is None
        assert result["response_time_ms"] == {"avg": None, "p50": None, "p95": None, "p99": None}


def test_overview_range_is_half_open(event_types):
    # given — attempts at T0+1m, +2m, +5m, +10m, +20m, +30m, +45m
    known_dataset()

    # when — [T0+2m, T0+20m) holds +2m, +5m, +10m and not +20m
    result = queries.overview(start=T0 + 2 * timedelta(minutes=1), end=T0 + 20 * timedelta(minutes=1))

    # then
    assert result["attempts"]["total"] == 3
    assert result["response_time_ms"]["avg"] == 300.0  # (200 + 300 + 400) / 3


def test_overview_reports_a_percentile_as_the_upper_bound_of_its_bin(event_types):
    # given — one attempt of 250 ms and one of 1000 ms: 250 lies in the bin (230, 260]
    crm = endpoint("crm")
    for minute, duration in ((1, 250), (2, 1000)):
        row = delivery(crm, "lead.created", at=T0 + timedelta(minutes=minute), status="succeeded")
        attempt(row, 1, at=T0 + timedelta(minutes=minute), outcome="succeeded", duration_ms=duration)

    # when
    times = queries.overview(start=T0, end=T0 + HOUR)["response_time_ms"]

    # then — p50 = rank 1 → bin (230, 260] → 260; p95 = rank 2 → 1000 (a bound); avg exact
    assert times == {"avg": 625.0, "p50": 260, "p95": 1000, "p99": 1000}


def test_percentile_clamps_to_the_observed_minimum_and_maximum():
    # given — three durations of 11 ms: bin (10, 12]
    histogram = [0] * (len(BOUNDS_MS) + 1)
    histogram[BOUNDS_MS.index(12)] = 3

    # then — the bound 12 is above every observed value, so the max (11) is reported
    assert percentile(histogram, 50, min_ms=11, max_ms=11) == 11
    assert percentile([0] * len(histogram), 50, min_ms=None, max_ms=None) is None


def test_trends_series_has_every_bucket_with_hand_computed_numbers(event_types):
    # given
    known_dataset()

    # when — three hours from T0-1h: d0 at T0-1h, the dataset at T0, nothing after
    result = queries.trends(start=T0 - HOUR, end=T0 + 2 * HOUR, bucket="hour", forecast_buckets=2,
                            now=T0 + 5 * HOUR)

    # then
    assert result["bucket"] == "hour"
    assert [row["bucket_start"] for row in result["series"]] == [
        (T0 - HOUR).isoformat(), T0.isoformat(), (T0 + HOUR).isoformat()]
    before, during, after = result["series"]
    assert (before["deliveries"], before["attempts"], before["succeeded"], before["failed"]) == (1, 1, 1, 0)
    assert before["response_time_ms"] == {"avg": 10.0, "p50": 10, "p95": 10, "p99": 10}
    assert (during["deliveries"], during["attempts"], during["succeeded"], during["failed"]) == (6, 7, 3, 4)
    assert during["success_rate"] == 42.86 and during["error_rate"] == 57.14
    assert during["response_time_ms"] == {"avg": 901.43, "p50": 260, "p95": 5000, "p99": 5000}
    assert after == {"bucket_start": (T0 + HOUR).isoformat(), "deliveries": 0, "attempts": 0, "succeeded": 0,
                     "failed": 0, "success_rate": None, "error_rate": None,
                     "response_time_ms": {"avg": None, "p50": None, "p95": None, "p99": None}, "complete": True}
    assert len(result["forecast"]["buckets"]) == 2
    assert result["forecast"]["buckets"][0]["bucket_start"] == (T0 + 2 * HOUR).isoformat()


def test_trends_minute_buckets_widen_the_range_and_filter(event_types):
    # given
    data = known_dataset()

    # when — 10:00:30 to 10:02:10 widens to the minutes 10:00, 10:01, 10:02
    result = queries.trends(start=T0 + timedelta(seconds=30), end=T0 + timedelta(minutes=2, seconds=10),
                            bucket="minute", endpoint_id=data["crm"].pk, forecast_buckets=0, now=T0 + HOUR)

    # then — d1 created at 10:00; attempts at 10:01 (retry, 100 ms) and 10:02 (succeeded, 200 ms)
    assert result["range"] == {"start": T0.isoformat(), "end": (T0 + timedelta(minutes=3)).isoformat()}
    assert [(row["deliveries"], row["attempts"], row["failed"]) for row in result["series"]] == [
        (1, 0, 0), (0, 1, 1), (0, 1, 0)]
    assert result["forecast"]["buckets"] == []


def test_trends_day_buckets_mark_the_current_bucket_incomplete(event_types):
    # given
    known_dataset()

    # when — now is in the middle of T0's day
    result = queries.trends(start=T0 - timedelta(days=2), end=T0 + HOUR, bucket="day", now=T0 + 2 * HOUR)

    # then
    assert [row["complete"] for row in result["series"]] == [True, True, False]
    assert result["series"][2]["attempts"] == 8  # d0 at 09:00 and the seven of the dataset
    assert result["forecast"]["fitted_on_buckets"] == 2


@pytest.mark.parametrize("bucket", ["minute", "hour", "day"])
def test_trends_refuses_more_buckets_than_the_limit(settings, bucket):
    # given
    settings.WEBHOOK_ANALYTICS_MAX_BUCKETS = 10

    # when / then
    from vocelio_webhooks.errors import ValidationFailed

    size = {"minute": timedelta(minutes=1), "hour": HOUR, "day": timedelta(days=1)}[bucket]
    midnight = T0.replace(hour=0)
    with pytest.raises(ValidationFailed) as caught:
        queries.bucket_range(start=midnight, end=midnight + 11 * size, bucket=bucket)
    assert caught.value.details == {"buckets": 11, "max_buckets": 10, "bucket": bucket}
    assert queries.bucket_range(start=midnight, end=midnight + 10 * size, bucket=bucket)[2] == 10


def test_plan_segments_covers_the_range_with_the_coarsest_whole_buckets():
    # given — a range from 13:37:20 on day 1 to 09:05:10 on day 4, rolled up to 08:59 on day 4
    start = T0.replace(hour=13, minute=37, second=20)
    end = T0.replace(day=T0.day + 3, hour=9, minute=5, second=10)
    watermark = end.replace(hour=8, minute=59, second=0)

    # when
    segments = plan_segments(start=start, end=end, watermark=watermark)

    # then
    day4 = end.replace(hour=0, minute=0, second=0)
    assert [(level, low, high) for level, low, high in segments] == [
        ("raw", start, start.replace(minute=38, second=0)),
        ("minute", start.replace(minute=38, second=0), start.replace(hour=14, minute=0, second=0)),
        ("hour", start.replace(hour=14, minute=0, second=0), (start + timedelta(days=1)).replace(hour=0, minute=0,
                                                                                                 second=0)),
        ("day", (start + timedelta(days=1)).replace(hour=0, minute=0, second=0), day4),
        ("hour", day4, day4.replace(hour=8)),
        ("minute", day4.replace(hour=8), watermark),
        ("raw", watermark, end),
    ]
    assert plan_segments(start=start, end=end, watermark=None) == [("raw", start, end)]
