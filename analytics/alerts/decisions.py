"""Pure alert decisions (no ORM): when a rule's condition fires, waits, clears and resolves, and
the seed's period notation. ``analytics.alerts.services`` applies what these functions decide.

The state machine of one (rule, scope), evaluated every ``WEBHOOK_ALERT_EVALUATION_INTERVAL_SECONDS``:

* **fire** when ``value > threshold``. Windowed metrics (failure rate, response time) fire at
  once, because the window already smooths one bad minute; a gauge (queue backlog) must stay
  above the threshold for ``period_seconds`` first (``pending``), like Prometheus' ``for:``.
* **resolve** only when the value stays at or below ``threshold × resolve_ratio`` (0.8 by
  default) for ``period_seconds``; any evaluation above that level restarts the clock. A value
  hovering around the threshold therefore keeps one alert firing instead of flapping (the
  hysteresis band of Prometheus Alertmanager / Datadog "recovery thresholds"). No data (no
  traffic, or fewer than ``min_samples`` attempts) counts as clear.
"""
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

PERIOD_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
PERIOD_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

# Metrics whose value is measured over a window of ``period_seconds``; the others are gauges
# read at the moment of evaluation. Per-endpoint metrics are evaluated once per endpoint.
WINDOWED_METRICS = frozenset({"delivery_failure_rate_percent", "endpoint_avg_response_time_ms"})
PER_ENDPOINT_METRICS = frozenset({"endpoint_avg_response_time_ms"})


class Transition(StrEnum):
    """What one evaluation does to the alert of one (rule, scope)."""

    NONE = "none"          # nothing to announce (the alert, if any, only records the new value)
    PENDING = "pending"    # a gauge went above the threshold: start its clock, announce nothing
    CANCEL = "cancel"      # a pending gauge fell back before its period: forget it
    FIRE = "fire"          # announce: system.health_alert (status firing) + the rule's action
    RESOLVE = "resolve"    # announce: system.health_alert (status resolved)


@dataclass(frozen=True)
class Decision:
    """``transition`` plus the hysteresis clock to store (``clear_since``; None when not clear)."""

    transition: Transition
    clear_since: datetime | None = None


def parse_period(value: str | int) -> int:
    """Seconds in a seed period: ``"5m"`` → 300, ``"30s"``/``"30"``/``30`` → 30, ``"1h"``, ``"1d"``.
    Raises ``ValueError`` for anything else or a period outside 1 s … 1 day."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = PERIOD_RE.match(str(value))
        if not match:
            raise ValueError("A period is a number of seconds or a string like '30s', '5m', '1h'.")
        seconds = int(match.group(1)) * PERIOD_UNITS[match.group(2)]
    if not 1 <= seconds <= 86400:
        raise ValueError("A period must be between 1 second and 1 day.")
    return seconds


def format_period(seconds: int) -> str:
    """The seed's notation for ``seconds``: 300 → ``"5m"``, 90 → ``"90s"``, 3600 → ``"1h"``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def pending_seconds(*, metric: str, period_seconds: int) -> int:
    """How long a breach must last before firing: 0 for windowed metrics, ``period_seconds`` for gauges."""
    return 0 if metric in WINDOWED_METRICS else period_seconds


def decide(
    *,
    status: str | None,
    value: float | None,
    threshold: float,
    resolve_ratio: float,
    pending_for_seconds: int,
    clear_for_seconds: int,
    pending_since: datetime | None,
    clear_since: datetime | None,
    now: datetime,
) -> Decision:
    """The next step for one (rule, scope) (rules in the module docstring).

    ``status`` is the scope's active alert status (``"pending"``, ``"firing"``) or None when it
    has none; ``value`` the measurement (None: no data). ``pending_since``/``clear_since`` come
    from the stored alert. Pure: the caller stores and announces what is decided.
    """
    breached = value is not None and value > threshold
    if status is None:
        if not breached:
            return Decision(Transition.NONE)
        return Decision(Transition.FIRE if pending_for_seconds <= 0 else Transition.PENDING)
    if status == "pending":
        if not breached:
            return Decision(Transition.CANCEL)
        waited = now - (pending_since or now)
        return Decision(Transition.FIRE if waited >= timedelta(seconds=pending_for_seconds) else Transition.NONE)
    clear = value is None or value <= threshold * resolve_ratio
    if not clear:
        return Decision(Transition.NONE, clear_since=None)
    since = clear_since or now
    if now - since >= timedelta(seconds=clear_for_seconds):
        return Decision(Transition.RESOLVE, clear_since=since)
    return Decision(Transition.NONE, clear_since=since)
