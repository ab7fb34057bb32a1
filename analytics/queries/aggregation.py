"""Reading measures out of the roll-up tables and the raw rows, and how a time range is split
between them (``plan_segments``). Shared by the overview, the trends and the roll-up service,
so the raw path and the roll-up path count exactly alike."""
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Max, Min, Q, QuerySet, Sum
from django.utils.dateparse import parse_datetime

from analytics.histogram import BIN_COUNT, BIN_FIELDS, bin_index, percentile
from analytics.models import AttemptRollup, ErrorRollup, Granularity, RollupState
from deliveries.models import Delivery, DeliveryAttempt

ROLLUP_STATE_NAME = "delivery_stats"
RAW = "raw"
LEVELS = (Granularity.MINUTE.value, Granularity.HOUR.value, Granularity.DAY.value)
LEVEL_SIZE = {RAW: timedelta(0), "minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
SUCCEEDED = DeliveryAttempt.Outcome.SUCCEEDED.value
RETRY = DeliveryAttempt.Outcome.RETRY.value


# --- time ----------------------------------------------------------------------------------------
def floor_to(moment: datetime, level: str) -> datetime:
    """``moment`` (any time zone) in UTC, truncated to the start of its minute, hour or day."""
    moment = moment.astimezone(UTC)
    if level == "minute":
        return moment.replace(second=0, microsecond=0)
    if level == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_to(moment: datetime, level: str) -> datetime:
    """The first minute, hour or day boundary at or after ``moment`` (UTC)."""
    floor = floor_to(moment, level)
    return floor if floor == moment else floor + LEVEL_SIZE[level]


def plan_segments(
    *, start: datetime, end: datetime, watermark: datetime | None, coarsest: str = "day"
) -> list[tuple[str, datetime, datetime]]:
    """Split [``start``, ``end``) into ``(source, from, to)`` pieces: whole days from the day
    roll-ups, whole hours from the hour roll-ups, whole minutes from the minute roll-ups — never
    coarser than ``coarsest`` — and raw rows for sub-minute edges and for everything at or after
    ``watermark`` (``None``: nothing is rolled up). Pieces do not overlap and cover the range."""
    if start >= end:
        return []
    if watermark is None or watermark <= start:
        return [(RAW, start, end)]
    segments: list[tuple[str, datetime, datetime]] = []
    if end > watermark:
        segments.append((RAW, watermark, end))
        end = watermark
    allowed = LEVELS[: LEVELS.index(coarsest) + 1]

    def cover(low: datetime, high: datetime, level_index: int) -> None:
        # Coarsest level first: its whole units in the middle, the edges (less than one unit
        # each) from the next finer level, and below minutes from raw rows.
        if low >= high:
            return
        if level_index < 0:
            segments.append((RAW, low, high))
            return
        level = allowed[level_index]
        aligned_low, aligned_high = ceil_to(low, level), floor_to(high, level)
        if aligned_low >= aligned_high:
            cover(low, high, level_index - 1)
            return
        segments.append((level, aligned_low, aligned_high))
        cover(low, aligned_low, level_index - 1)
        cover(aligned_high, high, level_index - 1)

    cover(start, end, len(allowed) - 1)
    return sorted(segments, key=lambda segment: segment[1])


def rollup_watermark() -> datetime | None:
    """Everything created before this moment is in the roll-ups (``None``: nothing is)."""
    return RollupState.objects.filter(name=ROLLUP_STATE_NAME).values_list("watermark", flat=True).first()


# --- measures ------------------------------------------------------------------------------------
class Measures:
    """Counts, duration sum/min/max and the duration histogram of a set of attempts, plus the
    deliveries created. Mutable on purpose: raw rows are added one by one."""

    __slots__ = ("attempts", "deliveries", "duration_max_ms", "duration_min_ms", "duration_sum_ms", "failed",
                 "histogram", "replays", "retried", "succeeded")

    def __init__(self):
        self.deliveries = self.replays = self.attempts = self.succeeded = self.retried = self.failed = 0
        self.duration_sum_ms = 0
        self.duration_min_ms: int | None = None
        self.duration_max_ms: int | None = None
        self.histogram = [0] * BIN_COUNT

    def add_attempt(self, outcome: str, duration_ms: int) -> None:
        self.attempts += 1
        if outcome == SUCCEEDED:
            self.succeeded += 1
        elif outcome == RETRY:
            self.retried += 1
        else:
            self.failed += 1
        self.duration_sum_ms += duration_ms
        if self.duration_min_ms is None or duration_ms < self.duration_min_ms:
            self.duration_min_ms = duration_ms
        if self.duration_max_ms is None or duration_ms > self.duration_max_ms:
            self.duration_max_ms = duration_ms
        self.histogram[bin_index(duration_ms)] += 1

    def merge(self, other: "Measures") -> "Measures":
        self.deliveries += other.deliveries
        self.replays += other.replays
        self.attempts += other.attempts
        self.succeeded += other.succeeded
        self.retried += other.retried
        self.failed += other.failed
        self.duration_sum_ms += other.duration_sum_ms
        if other.duration_min_ms is not None and (self.duration_min_ms is None
                                                  or other.duration_min_ms < self.duration_min_ms):
            self.duration_min_ms = other.duration_min_ms
        if other.duration_max_ms is not None and (self.duration_max_ms is None
                                                  or other.duration_max_ms > self.duration_max_ms):
            self.duration_max_ms = other.duration_max_ms
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]
        return self

    @property
    def not_succeeded(self) -> int:
        """Attempts that did not succeed: retried ones and final failures (the ``failed`` the API shows)."""
        return self.retried + self.failed

    def rates_and_times(self) -> dict:
        """``success_rate``/``error_rate`` (percent of attempts, 2 decimals; ``None`` without
        attempts) and ``response_time_ms`` {avg (2 decimals), p50, p95, p99} (``None`` without attempts)."""
        def rate(part: int) -> float | None:
            return round(100.0 * part / self.attempts, 2) if self.attempts else None

        def pct(p: float) -> int | None:
            return percentile(self.histogram, p, min_ms=self.duration_min_ms, max_ms=self.duration_max_ms)

        return {
            "success_rate": rate(self.succeeded),
            "error_rate": rate(self.not_succeeded),
            "response_time_ms": {
                "avg": round(self.duration_sum_ms / self.attempts, 2) if self.attempts else None,
                "p50": pct(50), "p95": pct(95), "p99": pct(99),
            },
        }

    def rollup_fields(self) -> dict:
        """The ``AttemptRollup`` column values of these measures."""
        fields = {"deliveries": self.deliveries, "replays": self.replays, "attempts": self.attempts,
                  "succeeded": self.succeeded, "retried": self.retried, "failed": self.failed,
                  "duration_sum_ms": self.duration_sum_ms, "duration_min_ms": self.duration_min_ms,
                  "duration_max_ms": self.duration_max_ms}
        fields.update(zip(BIN_FIELDS, self.histogram, strict=True))
        return fields


@dataclass(frozen=True)
class Filters:
    """What the caller narrowed to. ``environments``: ``None`` for every environment, else the
    allowed ones (an empty tuple matches nothing)."""

    endpoint_id: int | None = None
    event_type: str | None = None
    environments: tuple[str, ...] | None = None

    def rollup_q(self) -> Q:
        q = Q()
        if self.endpoint_id is not None:
            q &= Q(endpoint_id=self.endpoint_id)
        if self.event_type is not None:
            q &= Q(event_type=self.event_type)
        if self.environments is not None:
            q &= Q(environment__in=self.environments)
        return q

    def delivery_q(self, prefix: str = "") -> Q:
        """The same filters on ``Delivery`` (``prefix="delivery__"`` for ``DeliveryAttempt``)."""
        q = Q()
        if self.endpoint_id is not None:
            q &= Q(**{f"{prefix}endpoint_id": self.endpoint_id})
        if self.event_type is not None:
            q &= Q(**{f"{prefix}event__event_type__name": self.event_type})
        if self.environments is not None:
            q &= Q(**{f"{prefix}event__environment__in": self.environments})
        return q


def make_filters(
    *, endpoint_id: int | None, event_type: str | None, environment: str | None,
    environments: Sequence[str] | None,
) -> Filters:
    """``Filters`` for the API's parameters: ``environment`` (one, asked for) within
    ``environments`` (the API key's limit; ``None``: no limit). Asking for an environment outside
    the limit matches nothing, as a list filter would."""
    allowed = None if environments is None else tuple(environments)
    if environment is not None:
        allowed = (environment,) if allowed is None or environment in allowed else ()
    return Filters(endpoint_id=endpoint_id, event_type=event_type, environments=allowed)


def _ranges_q(field: str, ranges: Sequence[tuple[datetime, datetime]]) -> Q:
    q = Q(pk__in=[])
    for low, high in ranges:
        q |= Q(**{f"{field}__gte": low, f"{field}__lt": high})
    return q


# --- roll-up reads -------------------------------------------------------------------------------
_MEASURE_SUMS = ("deliveries", "replays", "attempts", "succeeded", "retried", "failed", "duration_sum_ms",
                 *BIN_FIELDS)


def rollup_measures(
    *, level: str, ranges: Sequence[tuple[datetime, datetime]], filters: Filters, group_by: Sequence[str]
) -> Iterable[tuple[tuple, Measures]]:
    """Summed ``AttemptRollup`` rows of ``level`` whose bucket starts in ``ranges``, one
    ``(group values, Measures)`` per distinct ``group_by`` combination (summed in the database)."""
    if not ranges:
        return []
    aggregates = {f"s_{name}": Sum(name) for name in _MEASURE_SUMS}
    aggregates.update(s_min=Min("duration_min_ms"), s_max=Max("duration_max_ms"))
    queryset = (AttemptRollup.objects.filter(_ranges_q("bucket_start", ranges), filters.rollup_q(), granularity=level)
                .order_by().values(*group_by).annotate(**aggregates))
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:
        return []
    # Run the compiled SQL on a plain cursor: Django's per-value converters over ~90 columns
    # cost more than the query itself once there are tens of thousands of groups.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        raw_rows = cursor.fetchall()
    index = {name: position for position, name in enumerate(names)}
    group_positions = [index[name] for name in group_by]
    sum_positions = [index[f"s_{name}"] for name in _MEASURE_SUMS[:7]]
    bin_positions = [index[f"s_{name}"] for name in BIN_FIELDS]
    min_position, max_position = index["s_min"], index["s_max"]
    parse_bucket = "bucket_start" in group_by and connection.vendor != "postgresql"
    result = []
    for row in raw_rows:
        measures = Measures()
        (measures.deliveries, measures.replays, measures.attempts, measures.succeeded, measures.retried,
         measures.failed, measures.duration_sum_ms) = (int(row[position] or 0) for position in sum_positions)
        measures.duration_min_ms, measures.duration_max_ms = row[min_position], row[max_position]
        measures.histogram = [int(row[position] or 0) for position in bin_positions]
        group = tuple(row[position] for position in group_positions)
        if parse_bucket:
            group = tuple(_as_datetime(value) if name == "bucket_start" else value
                          for name, value in zip(group_by, group, strict=True))
        result.append((group, measures))
    return result


def _as_datetime(value) -> datetime:
    """A datetime column read through a plain cursor (SQLite returns text) as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = parse_datetime(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rollup_errors(
    *, level: str, ranges: Sequence[tuple[datetime, datetime]], filters: Filters
) -> Iterable[tuple[int | None, str, int, int]]:
    """``(status_code, error_class, count, latest example attempt id)`` from ``ErrorRollup``."""
    if not ranges:
        return []
    return (ErrorRollup.objects.filter(_ranges_q("bucket_start", ranges), filters.rollup_q(), granularity=level)
            .order_by().values("status_code", "error_class")
            .annotate(n=Sum("count"), example=Max("example_attempt_id"))
            .values_list("status_code", "error_class", "n", "example"))


# --- raw reads -----------------------------------------------------------------------------------
GroupKey = Callable[[datetime, int | None, str, str], Hashable]


def raw_attempt_rows(*, ranges: Sequence[tuple[datetime, datetime]], filters: Filters) -> QuerySet:
    """Raw attempts created in ``ranges``: tuples of (id, created_at, endpoint_id, event_type,
    environment, outcome, response_status_code, error_class, duration_ms)."""
    return (DeliveryAttempt.objects.filter(_ranges_q("created_at", ranges), filters.delivery_q("delivery__"))
            .order_by().values_list("id", "created_at", "delivery__endpoint_id", "delivery__event__event_type__name",
                                    "delivery__event__environment", "outcome", "response_status_code",
                                    "error_class", "duration_ms"))


def raw_delivery_rows(*, ranges: Sequence[tuple[datetime, datetime]], filters: Filters) -> QuerySet:
    """Raw deliveries created in ``ranges``: (created_at, endpoint_id, event_type, environment, is_replay)."""
    return (Delivery.objects.filter(_ranges_q("created_at", ranges), filters.delivery_q())
            .order_by().values_list("created_at", "endpoint_id", "event__event_type__name", "event__environment",
                                    "is_replay"))


def raw_measures(
    *, ranges: Sequence[tuple[datetime, datetime]], filters: Filters, key: GroupKey, chunk_size: int = 5000
) -> dict[Hashable, Measures]:
    """Attempts and deliveries created in ``ranges`` aggregated in Python, grouped by
    ``key(created_at, endpoint_id, event_type, environment)``; binned like the roll-ups."""
    groups: dict[Hashable, Measures] = {}
    if not ranges:
        return groups
    for row in raw_attempt_rows(ranges=ranges, filters=filters).iterator(chunk_size=chunk_size):
        group = key(row[1], row[2], row[3], row[4])
        measures = groups.get(group)
        if measures is None:
            measures = groups[group] = Measures()
        measures.add_attempt(row[5], row[8])
    for created_at, endpoint_id, event_type, environment, is_replay in raw_delivery_rows(
        ranges=ranges, filters=filters
    ).iterator(chunk_size=chunk_size):
        group = key(created_at, endpoint_id, event_type, environment)
        measures = groups.get(group)
        if measures is None:
            measures = groups[group] = Measures()
        measures.deliveries += 1
        measures.replays += 1 if is_replay else 0
    return groups


def error_class_of(error_class: str) -> str:
    """Attempts without an error class (a refused non-2xx without one) group as ``unknown``."""
    return error_class or "unknown"


def raw_errors(
    *, ranges: Sequence[tuple[datetime, datetime]], filters: Filters, key: GroupKey | None = None,
    chunk_size: int = 5000,
) -> dict[Hashable, list[int]]:
    """Attempts that did not succeed, created in ``ranges``: ``{(group…, status_code,
    error_class): [count, latest attempt id]}`` (``key`` as in ``raw_measures``; no key: no group)."""
    errors: dict[Hashable, list[int]] = {}
    if not ranges:
        return errors
    rows = raw_attempt_rows(ranges=ranges, filters=filters).exclude(outcome=SUCCEEDED)
    for attempt_id, created_at, endpoint_id, event_type, environment, _, status_code, error_class, _ in (
        rows.iterator(chunk_size=chunk_size)
    ):
        group = (key(created_at, endpoint_id, event_type, environment),) if key else ()
        entry_key = (*group, status_code, error_class_of(error_class))
        entry = errors.get(entry_key)
        if entry is None:
            errors[entry_key] = [1, attempt_id]
        else:
            entry[0] += 1
            entry[1] = max(entry[1], attempt_id)
    return errors
