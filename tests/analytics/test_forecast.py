"""Forecasts (issue 6, trends): series whose right answer is known."""
import pytest

from analytics import forecast
from analytics.queries.trends import forecast_series


def test_linear_forecast_extends_a_straight_line():
    # given — y = 3x + 5
    history = [3 * x + 5 for x in range(10)]

    # when
    values = forecast.linear_forecast(history, 3)

    # then — x = 10, 11, 12
    assert values == pytest.approx([35, 38, 41])


def test_linear_forecast_never_goes_below_zero():
    # given — falling by 10 per bucket from 30
    assert forecast.linear_forecast([30, 20, 10, 0], 2) == [0.0, 0.0]


def test_seasonal_naive_forecast_repeats_the_last_season():
    # given — a season of 4: 1, 5, 9, 2 repeated
    history = [1, 5, 9, 2] * 3

    # when / then
    assert forecast.seasonal_naive_forecast(history, 6, season=4) == [1, 5, 9, 2, 1, 5]
    with pytest.raises(ValueError):
        forecast.seasonal_naive_forecast([1, 2], 1, season=4)


def test_errors_compute_mae_and_mape_by_hand():
    # given — actual 10, 20, 0, 40; predicted 12, 15, 1, 40
    # MAE = (2 + 5 + 1 + 0) / 4 = 2.0; MAPE over non-zero actuals = (2/10 + 5/20 + 0/40) / 3 = 15 %
    assert forecast.errors([10, 20, 0, 40], [12, 15, 1, 40]) == {"mae": 2.0, "mape": 15.0, "buckets": 4}
    assert forecast.errors([0, 0], [1, 1]) == {"mae": 1.0, "mape": None, "buckets": 2}


def test_choose_and_forecast_picks_linear_for_a_trend():
    # given — 2, 4, 6, … 48 (24 buckets) with a season of 24 available
    history = [2 * (x + 1) for x in range(48)]

    # when
    result = forecast.choose_and_forecast(history, 3, season=24)

    # then — the backtest on the last 3 buckets is perfect for the line, not for last season's values
    assert result.method == "linear"
    assert result.values == pytest.approx([98, 100, 102])
    assert result.candidates["linear"]["mae"] == 0.0
    assert result.candidates["seasonal_naive"]["mae"] == 48.0  # each held-out value minus its value 24 earlier
    assert result.holdout == 3


def test_choose_and_forecast_picks_seasonal_naive_for_a_daily_pattern():
    # given — three days of an hourly pattern: quiet nights, busy days
    day = [5] * 8 + [50, 80, 100, 90, 70, 60, 55, 60, 70, 65, 40, 20] + [5] * 4
    history = day * 3

    # when
    result = forecast.choose_and_forecast(history, 6, season=24)

    # then
    assert result.method == "seasonal_naive"
    assert result.values == day[:6]
    assert result.candidates["seasonal_naive"] == {"mae": 0.0, "mape": 0.0, "buckets": 6}
    assert result.candidates["linear"]["mae"] > 0


def test_choose_and_forecast_with_too_little_history_repeats_the_last_value():
    assert forecast.choose_and_forecast([7], 2).method == "last_value"
    assert forecast.choose_and_forecast([7], 2).values == [7.0, 7.0]
    assert forecast.choose_and_forecast([], 1).values == [0.0]


def test_forecast_series_forecasts_volume_and_failure_rate_with_a_backtest():
    # given — 12 complete hourly buckets: attempts 10, 20, … 120; a quarter of them fail
    series = [{"bucket_start": f"2026-03-02T{hour:02d}:00:00+00:00", "attempts": 10 * (hour + 1),
               "failed": 10 * (hour + 1) // 4 * 1.0, "complete": True} for hour in range(12)]
    series.append({"bucket_start": "2026-03-02T12:00:00+00:00", "attempts": 3, "failed": 3, "complete": False})

    # when
    result = forecast_series(series, bucket="hour", horizon=2)

    # then — fitted on the 12 complete buckets (the partial 12:00 bucket is left out)
    assert result["method"] == "linear"
    assert result["fitted_on_buckets"] == 12
    assert [row["bucket_start"] for row in result["buckets"]] == ["2026-03-02T12:00:00+00:00",
                                                                   "2026-03-02T13:00:00+00:00"]
    assert [row["attempts"] for row in result["buckets"]] == [130.0, 140.0]
    assert result["buckets"][0]["failure_rate"] == pytest.approx(25.0, abs=1.0)
    assert result["backtest"]["holdout_buckets"] == 2
    assert result["backtest"]["attempts"]["mae"] == 0.0
    assert result["backtest"]["failure_rate"]["mae_percentage_points"] < 1.0
