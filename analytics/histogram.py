"""Fixed response-time histogram shared by the roll-up tables and the raw-row queries (issue 6).

Bins are Prometheus-style ``le`` buckets in milliseconds: bin ``i`` counts durations ``d`` with
``BOUNDS_MS[i-1] < d <= BOUNDS_MS[i]`` (bin 0 counts ``d <= 0``; the last bin, ``inf``, counts
everything above ``BOUNDS_MS[-1]``). Exact below 10 ms (one bin per millisecond), then 17 bins per
decade on "nice" numbers (10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 45, 50, 60, 70, 80, 90 × 10ⁿ)
up to 100 s, so neighbouring bounds differ by at most 20 % (14.5 % on average).

A percentile is reported as the upper bound of the bin that holds the nearest-rank value, clamped
to the smallest and largest duration observed. So a reported value is never below the true one and
at most 20 % above it (0 % for values on a bound and below 10 ms). Raw rows are binned the same
way, so numbers do not change when a roll-up replaces the raw rows they came from.
"""
import math
from bisect import bisect_left
from collections.abc import Sequence

_PER_DECADE = (10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 45, 50, 60, 70, 80, 90)
BOUNDS_MS: tuple[int, ...] = (
    tuple(range(10))
    + tuple(step * 10**exponent for exponent in range(4) for step in _PER_DECADE)
    + (100_000,)
)
BIN_COUNT = len(BOUNDS_MS) + 1  # the last bin is "above 100 s"
BIN_LABELS: tuple[str, ...] = (*(str(bound) for bound in BOUNDS_MS), "inf")
BIN_FIELDS: tuple[str, ...] = tuple(f"d_le_{label}" for label in BIN_LABELS)


def bin_index(duration_ms: int) -> int:
    """The bin (0 … ``BIN_COUNT - 1``) of a duration in milliseconds."""
    return bisect_left(BOUNDS_MS, duration_ms)


def percentile(histogram: Sequence[int], p: float, *, min_ms: int | None, max_ms: int | None) -> int | None:
    """Nearest-rank ``p``-th percentile (0 < p ≤ 100) of the durations in ``histogram`` (counts per
    bin, ``BIN_COUNT`` long), in ms: the upper bound of the bin holding the ⌈p/100·N⌉-th smallest
    duration, clamped to [``min_ms``, ``max_ms``]. ``None`` when the histogram is empty."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = max(1, math.ceil(p / 100 * total - 1e-9))
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            value = BOUNDS_MS[index] if index < len(BOUNDS_MS) else (max_ms if max_ms is not None else BOUNDS_MS[-1])
            if max_ms is not None:
                value = min(value, max_ms)
            if min_ms is not None:
                value = max(value, min_ms)
            return value
    return max_ms  # unreachable when the counts add up
