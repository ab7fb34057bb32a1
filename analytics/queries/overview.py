"""``GET /analytics/overview``: totals, rates, response times, breakdowns, error analysis and the
current queue, for one time range."""
from collections import defaultdict
from datetime import datetime

from django.db.models import Count

from analytics.queries.aggregation import (
    RAW,
    Filters,
    Measures,
    make_filters,
    plan_segments,
    raw_errors,
    raw_measures,
    rollup_errors,
    rollup_measures,
    rollup_watermark,
)
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import EndpointHealth, WebhookEndpoint

ERROR_MESSAGE_EXAMPLE_CHARS = 300


def overview(
    *, start: datetime, end: datetime, endpoint_id: int | None = None, event_type: str | None = None,
    environment: str | None = None, environments: tuple[str, ...] | None = None,
) -> dict:
    """The exact JSON body of ``GET /analytics/overview`` for [``start``, ``end``) (aware datetimes).

    Inputs: optional filters on one endpoint id, one event type name and one environment;
    ``environments`` further limits to a set (an API key's environments; empty matches nothing).

    Output (README "Analytics" has every key): ``deliveries`` {total (created in the range,
    replays included), replays, by_status (those deliveries' current status, from the live table),
    success_rate (succeeded among those already final)}; ``attempts`` {total, succeeded, failed
    (= not succeeded: retried + failed for good), by_outcome}; ``success_rate``/``error_rate``
    (percent of attempts, ``None`` without attempts); ``response_time_ms`` {avg, p50, p95, p99}
    (percentiles from the ``analytics.histogram`` bins); ``endpoints`` and ``event_types``
    breakdowns (most failed first); ``errors`` by status code and error class with an example
    attempt; and the current state (not limited to the range): ``queue`` {pending, retrying,
    in_flight}, ``dead_letters``, ``open_circuits``.

    Sources: roll-ups for whole closed minutes/hours/days, raw rows for sub-minute edges and after
    the roll-up watermark (``analytics.queries.aggregation.plan_segments``).
    """
    filters = make_filters(endpoint_id=endpoint_id, event_type=event_type, environment=environment,
                           environments=environments)
    segments = plan_segments(start=start, end=end, watermark=rollup_watermark())
    combos = _measures_by_endpoint_and_type(segments, filters)
    total, by_endpoint, by_type = Measures(), defaultdict(Measures), defaultdict(Measures)
    for (endpoint, kind), measures in combos.items():
        total.merge(measures)
        by_endpoint[endpoint].merge(measures)
        by_type[kind].merge(measures)
    return {
        "range": {"start": start.isoformat(), "end": end.isoformat()},
        "filters": {"endpoint_id": endpoint_id, "event_type": event_type, "environment": environment},
        "deliveries": _deliveries(start, end, filters, total),
        "attempts": _attempt_counts(total),
        **total.rates_and_times(),
        "endpoints": _endpoint_breakdown(by_endpoint),
        "event_types": _event_type_breakdown(by_type),
        "errors": _errors(segments, filters),
        **current_state(filters),
    }


def _measures_by_endpoint_and_type(segments, filters: Filters) -> dict[tuple, Measures]:
    combos: dict[tuple, Measures] = defaultdict(Measures)
    ranges_by_level: dict[str, list] = defaultdict(list)
    for level, low, high in segments:
        ranges_by_level[level].append((low, high))
    for level, ranges in ranges_by_level.items():
        if level == RAW:
            grouped = raw_measures(ranges=ranges, filters=filters,
                                   key=lambda _at, endpoint, kind, _env: (endpoint, kind))
            for group, measures in grouped.items():
                combos[group].merge(measures)
        else:
            for group, measures in rollup_measures(level=level, ranges=ranges, filters=filters,
                                                   group_by=("endpoint_id", "event_type")):
                combos[group].merge(measures)
    return combos


def _attempt_counts(measures: Measures) -> dict:
    return {"total": measures.attempts, "succeeded": measures.succeeded, "failed": measures.not_succeeded,
            "by_outcome": {"succeeded": measures.succeeded, "retry": measures.retried, "failed": measures.failed}}


def _breakdown_row(measures: Measures) -> dict:
    return {"deliveries": measures.deliveries, "attempts": measures.attempts, "succeeded": measures.succeeded,
            "failed": measures.not_succeeded, **measures.rates_and_times()}


def _endpoint_breakdown(by_endpoint: dict) -> list[dict]:
    known = {row["id"]: row for row in WebhookEndpoint.objects.filter(
        pk__in=[pk for pk in by_endpoint if pk is not None]).values("id", "name", "url", "environment")}
    rows = []
    for endpoint_id, measures in by_endpoint.items():
        endpoint = known.get(endpoint_id, {})
        # A deleted endpoint keeps its history under its old id, with no name or URL.
        rows.append({"endpoint_id": endpoint_id, "name": endpoint.get("name"), "url": endpoint.get("url"),
                     "environment": endpoint.get("environment"), **_breakdown_row(measures)})
    return sorted(rows, key=lambda row: (-row["failed"], -row["attempts"], row["endpoint_id"] or 0))


def _event_type_breakdown(by_type: dict) -> list[dict]:
    rows = [{"event_type": kind, **_breakdown_row(measures)} for kind, measures in by_type.items()]
    return sorted(rows, key=lambda row: (-row["failed"], -row["attempts"], row["event_type"]))


def _deliveries(start: datetime, end: datetime, filters: Filters, total: Measures) -> dict:
    statuses = dict(Delivery.objects.filter(filters.delivery_q(), created_at__gte=start, created_at__lt=end)
                    .order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    by_status = {status: statuses.get(status, 0) for status in Delivery.Status.values}
    final = sum(by_status[s] for s in ("succeeded", "failed", "dead_lettered"))
    return {
        "total": total.deliveries,
        "replays": total.replays,
        "by_status": by_status,
        "success_rate": round(100.0 * by_status["succeeded"] / final, 2) if final else None,
    }


def _errors(segments, filters: Filters) -> dict:
    merged: dict[tuple, list[int]] = {}

    def add(status_code, error_class, count, example) -> None:
        entry = merged.setdefault((status_code, error_class), [0, 0])
        entry[0] += count
        entry[1] = max(entry[1], example)

    ranges_by_level: dict[str, list] = defaultdict(list)
    for level, low, high in segments:
        ranges_by_level[level].append((low, high))
    for level, ranges in ranges_by_level.items():
        if level == RAW:
            for (status_code, error_class), (count, example) in raw_errors(ranges=ranges, filters=filters).items():
                add(status_code, error_class, count, example)
        else:
            for status_code, error_class, count, example in rollup_errors(level=level, ranges=ranges, filters=filters):
                add(status_code, error_class, count, example)
    by_status: dict = defaultdict(lambda: [0, 0])
    by_class: dict = defaultdict(lambda: [0, 0])
    for (status_code, error_class), (count, example) in merged.items():
        for table, key in ((by_status, status_code), (by_class, error_class)):
            table[key][0] += count
            table[key][1] = max(table[key][1], example)
    examples = _examples([entry[1] for entry in (*by_status.values(), *by_class.values())])
    return {
        "total": sum(count for count, _ in merged.values()),
        "by_status_code": sorted(
            ({"status_code": code, "count": count, "example": examples.get(example, {"attempt_id": example})}
             for code, (count, example) in by_status.items()),
            key=lambda row: (-row["count"], row["status_code"] is None, row["status_code"] or 0)),
        "by_error_class": sorted(
            ({"error_class": name, "count": count, "example": examples.get(example, {"attempt_id": example})}
             for name, (count, example) in by_class.items()),
            key=lambda row: (-row["count"], row["error_class"])),
    }


def _examples(attempt_ids: list[int]) -> dict[int, dict]:
    """The example attempts still stored (purged ones show their id only)."""
    rows = DeliveryAttempt.objects.filter(pk__in=set(attempt_ids)).order_by().values(
        "id", "delivery_id", "delivery__endpoint_id", "attempt_number", "url", "response_status_code",
        "error_class", "error_message", "duration_ms", "created_at")
    return {row["id"]: {
        "attempt_id": row["id"], "delivery_id": row["delivery_id"], "endpoint_id": row["delivery__endpoint_id"],
        "attempt_number": row["attempt_number"], "url": row["url"], "status_code": row["response_status_code"],
        "error_class": row["error_class"] or "unknown",
        "error_message": row["error_message"][:ERROR_MESSAGE_EXAMPLE_CHARS],
        "duration_ms": row["duration_ms"], "created_at": row["created_at"].isoformat(),
    } for row in rows}


def current_state(filters: Filters) -> dict:
    """Now, not over a range (indexed counts on the live tables): deliveries waiting
    (``queue``: pending, retrying, in_flight), ``dead_letters`` (deliveries dead-lettered and not
    yet retried or discarded) and ``open_circuits`` (endpoints whose circuit breaker is open;
    the event type filter does not apply to endpoints)."""
    waiting = (Delivery.Status.PENDING, Delivery.Status.RETRYING, Delivery.Status.IN_FLIGHT,
               Delivery.Status.DEAD_LETTERED)
    counts = dict(Delivery.objects.filter(filters.delivery_q(), status__in=waiting).order_by()
                  .values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    circuits = EndpointHealth.objects.filter(circuit_state=EndpointHealth.CircuitState.OPEN)
    if filters.endpoint_id is not None:
        circuits = circuits.filter(endpoint_id=filters.endpoint_id)
    if filters.environments is not None:
        circuits = circuits.filter(endpoint__environment__in=filters.environments)
    open_rows = list(circuits.order_by("endpoint_id").values("endpoint_id", "endpoint__name", "failing_since"))
    return {
        "queue": {"pending": counts.get("pending", 0), "retrying": counts.get("retrying", 0),
                  "in_flight": counts.get("in_flight", 0)},
        "dead_letters": counts.get("dead_lettered", 0),
        "open_circuits": len(open_rows),
        "open_circuit_endpoints": [
            {"endpoint_id": row["endpoint_id"], "name": row["endpoint__name"],
             "failing_since": row["failing_since"].isoformat() if row["failing_since"] else None}
            for row in open_rows
        ],
    }
