"""Simple, explainable forecasts of a bucketed series (issue 6, ``GET /analytics/trends``).

Pure functions, no ORM. Two candidate methods (Hyndman & Athanasopoulos, *Forecasting: Principles
and Practice*, 3rd ed., §5.2 "Some simple forecasting methods" and §7 for the linear trend):

* ``linear`` — ordinary least squares line through the history, extended; negative values are
  clipped to 0 (counts cannot be negative).
* ``seasonal_naive`` — each future bucket repeats the value one season earlier (24 buckets for
  hourly series, 7 for daily ones), for traffic that follows the clock.

``choose_and_forecast`` backtests every candidate that has enough history: it fits on all but the
last ``holdout`` buckets, forecasts those, and measures MAE and MAPE against what happened. The
candidate with the lowest MAE (ties: the simpler ``linear``) is refitted on the whole history and
forecasts the next buckets. With fewer than 2 buckets of history the method is ``last_value``
(repeat the last value, 0 for none) and there is no backtest.
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Method = Callable[[Sequence[float], int], list[float]]


def linear_forecast(history: Sequence[float], horizon: int) -> list[float]:
    """The OLS line through ``history`` (x = 0 … n-1) at x = n … n+horizon-1, clipped at 0.
    One point: a flat line. Empty history: zeros."""
    n = len(history)
    if n == 0:
        return [0.0] * horizon
    if n == 1:
        return [max(0.0, float(history[0]))] * horizon
    mean_x = (n - 1) / 2
    mean_y = sum(history) / n
    spread = sum((x - mean_x) ** 2 for x in range(n))
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(history)) / spread
    intercept = mean_y - slope * mean_x
    return [max(0.0, intercept + slope * x) for x in range(n, n + horizon)]


def seasonal_naive_forecast(history: Sequence[float], horizon: int, *, season: int) -> list[float]:
    """``ŷ[n+h] = y[n+h-season·k]`` with k the smallest whole number of seasons that lands in
    the history. Needs at least one full season of history (``ValueError`` otherwise)."""
    n = len(history)
    if season < 1 or n < season:
        raise ValueError(f"seasonal naive needs at least one season ({season}) of history, got {n}")
    return [float(history[n - season + (h % season)]) for h in range(horizon)]


def errors(actual: Sequence[float], predicted: Sequence[float]) -> dict:
    """MAE (same unit as the series) and MAPE (percent, over the buckets whose actual value is
    not 0; ``None`` when all are 0), rounded to 2 decimals, and the number of buckets compared."""
    pairs = list(zip(actual, predicted, strict=True))
    if not pairs:
        return {"mae": None, "mape": None, "buckets": 0}
    mae = sum(abs(a - p) for a, p in pairs) / len(pairs)
    nonzero = [(a, p) for a, p in pairs if a != 0]
    mape = 100.0 * sum(abs(a - p) / abs(a) for a, p in nonzero) / len(nonzero) if nonzero else None
    return {"mae": round(mae, 2), "mape": None if mape is None else round(mape, 2), "buckets": len(pairs)}


@dataclass
class Forecast:
    """The chosen ``method`` (``linear``, ``seasonal_naive`` or ``last_value``), its forecast
    ``values``, the backtest of every candidate (``candidates``: name → errors) and the
    ``holdout`` size used."""

    method: str
    values: list[float]
    season: int | None = None
    holdout: int = 0
    candidates: dict[str, dict] = field(default_factory=dict)


def _last_value(history: Sequence[float], horizon: int) -> list[float]:
    return [float(history[-1]) if history else 0.0] * horizon


def method_by_name(name: str, *, season: int | None = None) -> Method:
    """The forecasting function ``f(history, horizon)`` called ``name`` (to forecast a related
    series with the method chosen for another one)."""
    if name == "linear":
        return linear_forecast
    if name == "seasonal_naive" and season:
        return lambda history, horizon: seasonal_naive_forecast(history, horizon, season=season)
    return _last_value


def _feasible(season: int | None, history_length: int) -> list[str]:
    names = ["linear"] if history_length >= 2 else []
    if season and history_length >= season:
        names.append("seasonal_naive")
    return names


def holdout_size(length: int, horizon: int) -> int:
    """Buckets held out for the backtest: the forecast horizon, but at most a quarter of the
    history, and at least 1."""
    return max(1, min(max(horizon, 1), length // 4))


def choose_and_forecast(history: Sequence[float], horizon: int, *, season: int | None = None) -> Forecast:
    """Backtest the candidates on the last ``holdout_size`` buckets of ``history``, pick the one
    with the lowest MAE, refit it on the whole history and forecast ``horizon`` buckets.

    Inputs: ``history`` oldest first (complete buckets only), ``horizon`` ≥ 0, ``season`` in
    buckets (``None``: no seasonal candidate). Output: ``Forecast``.
    """
    history = [float(value) for value in history]
    if len(history) < 2:
        return Forecast(method="last_value", values=_last_value(history, horizon), season=season)
    holdout = holdout_size(len(history), horizon)
    train, test = history[:-holdout], history[-holdout:]
    scores: dict[str, dict] = {}
    for name in _feasible(season, len(train)):
        scores[name] = errors(test, method_by_name(name, season=season)(train, holdout))
    if not scores:
        return Forecast(method="last_value", values=_last_value(history, horizon), season=season, holdout=holdout)
    order = ("linear", "seasonal_naive")
    best = min(scores, key=lambda name: (scores[name]["mae"], order.index(name)))
    return Forecast(method=best, values=method_by_name(best, season=season)(history, horizon), season=season,
                    holdout=holdout, candidates=scores)
