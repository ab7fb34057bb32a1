"""``GET /analytics/trends``: the overview's measures per minute, hour or day, with a forecast."""
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from analytics import forecast as forecasting
from analytics.queries.aggregation import (
    LEVEL_SIZE,
    RAW,
    Measures,
    ceil_to,
    floor_to,
    make_filters,
    plan_segments,
    raw_measures,
    rollup_measures,
    rollup_watermark,
)
from vocelio_webhooks.errors import ValidationFailed

BUCKETS = ("minute", "hour", "day")
# Traffic follows the clock: a day of hours, a week of days. Minutes have no season we can use.
SEASON_BUCKETS = {"minute": None, "hour": 24, "day": 7}


def bucket_range(*, start: datetime, end: datetime, bucket: str) -> tuple[datetime, datetime, int]:
    """[``start``, ``end``) widened to whole UTC buckets, and the number of buckets. Raises
    ``ValidationFailed`` for an unknown bucket, ``start >= end`` or more buckets than
    ``WEBHOOK_ANALYTICS_MAX_BUCKETS``."""
    if bucket not in BUCKETS:
        raise ValidationFailed(f"bucket must be one of {', '.join(BUCKETS)}.",
                               details={"fields": {"bucket": [f"Choose one of {', '.join(BUCKETS)}."]}})
    if start >= end:
        raise ValidationFailed("start must be before end.", details={"fields": {"start": ["Must be before end."]}})
    low, high = floor_to(start, bucket), ceil_to(end, bucket)
    count = int((high - low) / LEVEL_SIZE[bucket])
    limit = settings.WEBHOOK_ANALYTICS_MAX_BUCKETS
    if count > limit:
        raise ValidationFailed(
            f"The range holds {count} {bucket} buckets; at most {limit} are allowed. "
            "Use a shorter range or a larger bucket.",
            details={"buckets": count, "max_buckets": limit, "bucket": bucket},
        )
    return low, high, count


def trends(
    *, start: datetime, end: datetime, bucket: str, endpoint_id: int | None = None, event_type: str | None = None,
    environment: str | None = None, forecast_buckets: int = 6, environments: tuple[str, ...] | None = None,
    now: datetime | None = None,
) -> dict:
    """The exact JSON body of ``GET /analytics/trends``.

    Inputs: [``start``, ``end``) widened to whole UTC ``bucket``s (``minute``, ``hour`` or
    ``day``; see ``bucket_range`` for the errors), the overview's filters, ``forecast_buckets``
    future buckets to forecast (0: none), ``now`` (default: the clock) to tell complete buckets.

    Output: ``series`` — every bucket, oldest first, zeros for empty ones: ``bucket_start`` (ISO),
    ``deliveries`` (created), ``attempts``, ``succeeded``, ``failed`` (not succeeded),
    ``success_rate``/``error_rate`` (percent of attempts, ``None`` without attempts),
    ``response_time_ms`` {avg, p50, p95, p99}, ``complete`` (false for a bucket that ends after
    ``now``); ``forecast`` — ``analytics.forecast.choose_and_forecast`` over the complete buckets'
    attempts, its method, the next buckets' ``attempts`` and ``failure_rate`` (percent), and the
    backtest errors of every candidate method.
    """
    now = now or timezone.now()
    low, high, count = bucket_range(start=start, end=end, bucket=bucket)
    filters = make_filters(endpoint_id=endpoint_id, event_type=event_type, environment=environment,
                           environments=environments)
    size = LEVEL_SIZE[bucket]
    per_bucket: dict[datetime, Measures] = defaultdict(Measures)
    ranges_by_level: dict[str, list] = defaultdict(list)
    for level, seg_low, seg_high in plan_segments(start=low, end=high, watermark=rollup_watermark(), coarsest=bucket):
        ranges_by_level[level].append((seg_low, seg_high))
    for level, ranges in ranges_by_level.items():
        if level == RAW:
            grouped = raw_measures(ranges=ranges, filters=filters,
                                   key=lambda created_at, _endpoint, _kind, _env: floor_to(created_at, bucket)).items()
        else:
            grouped = ((group[0], measures) for group, measures in rollup_measures(
                level=level, ranges=ranges, filters=filters, group_by=("bucket_start",)))
        for bucket_start, measures in grouped:
            per_bucket[floor_to(bucket_start, bucket)].merge(measures)
    series = []
    for index in range(count):
        bucket_start = low + index * size
        measures = per_bucket.get(bucket_start) or Measures()
        series.append({
            "bucket_start": bucket_start.isoformat(),
            "deliveries": measures.deliveries,
            "attempts": measures.attempts,
            "succeeded": measures.succeeded,
            "failed": measures.not_succeeded,
            **measures.rates_and_times(),
            "complete": bucket_start + size <= now,
        })
    return {
        "bucket": bucket,
        "range": {"start": low.isoformat(), "end": high.isoformat()},
        "filters": {"endpoint_id": endpoint_id, "event_type": event_type, "environment": environment},
        "series": series,
        "forecast": forecast_series(series, bucket=bucket, horizon=forecast_buckets),
    }


def forecast_series(series: list[dict], *, bucket: str, horizon: int) -> dict:
    """Forecast ``horizon`` buckets after the last complete bucket of ``series``.

    Volume: ``attempts`` per bucket by ``forecast.choose_and_forecast``. Failure rate: the
    not-succeeded attempts forecast by the same method, divided by the forecast attempts (percent,
    ``None`` when no attempts are expected); its backtest MAE is in percentage points over the
    held-out buckets that had attempts."""
    complete = [row for row in series if row["complete"]]
    season = SEASON_BUCKETS[bucket]
    attempts = [row["attempts"] for row in complete]
    failed = [row["failed"] for row in complete]
    chosen = forecasting.choose_and_forecast(attempts, horizon, season=season)
    method = forecasting.method_by_name(chosen.method, season=season)
    failed_forecast = method(failed, horizon)
    size = LEVEL_SIZE[bucket]
    if complete:
        first = datetime.fromisoformat(complete[-1]["bucket_start"]) + size
    else:
        first = datetime.fromisoformat(series[0]["bucket_start"]) if series else timezone.now()
    buckets = []
    for step, (volume, failures) in enumerate(zip(chosen.values, failed_forecast, strict=True)):
        rate = min(100.0, 100.0 * failures / volume) if volume > 0 else None
        buckets.append({"bucket_start": (first + step * size).isoformat(), "attempts": round(volume, 2),
                        "failed": round(failures, 2), "failure_rate": None if rate is None else round(rate, 2)})
    return {
        "method": chosen.method,
        "season_buckets": season if chosen.method == "seasonal_naive" else None,
        "fitted_on_buckets": len(complete),
        "buckets": buckets,
        "backtest": _backtest(chosen, attempts, failed, season),
    }


def _backtest(chosen: forecasting.Forecast, attempts: list[int], failed: list[int], season: int | None) -> dict:
    """The chosen method's errors on the held-out last buckets, for volume (MAE in attempts,
    MAPE in percent) and failure rate (MAE in percentage points), and every candidate's scores."""
    if not chosen.holdout or chosen.method not in chosen.candidates:
        return {"holdout_buckets": 0, "attempts": None, "failure_rate": None, "candidates": chosen.candidates}
    holdout = chosen.holdout
    method = forecasting.method_by_name(chosen.method, season=season)
    predicted_attempts = method(attempts[:-holdout], holdout)
    predicted_failed = method(failed[:-holdout], holdout)
    actual_rates, predicted_rates = [], []
    for actual_n, actual_f, volume, failures in zip(attempts[-holdout:], failed[-holdout:], predicted_attempts,
                                                    predicted_failed, strict=True):
        if actual_n:
            actual_rates.append(100.0 * actual_f / actual_n)
            predicted_rates.append(min(100.0, 100.0 * failures / volume) if volume > 0 else 0.0)
    rate_errors = forecasting.errors(actual_rates, predicted_rates)
    return {
        "holdout_buckets": holdout,
        "attempts": chosen.candidates[chosen.method],
        "failure_rate": {"mae_percentage_points": rate_errors["mae"], "buckets": rate_errors["buckets"]},
        "candidates": chosen.candidates,
    }

