"""Prometheus metrics (prometheus-client), exposed at ``GET /metrics``.

Two kinds, because they are measured in different places:

* **Events in the workers** — counters and the attempt-duration histogram — are observed where an
  attempt is recorded (``observe_attempts``, one call in ``deliveries/services/recording.py``).
  Celery's prefork pool runs attempts in several processes and gunicorn serves ``/metrics`` from
  others, so prometheus-client's multiprocess mode is used: every process writes its values to
  memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums the files. Counters of
  processes that exited stay in their files, so totals never go down while the folder lives.
* **State in the database** — queue depth, due backlog, dead letters, circuits, endpoints —
  is read at scrape time by ``DatabaseCollector`` (a few indexed ``COUNT`` queries), so every web
  process answers the same and nothing can drift from the rows.

Labels are bounded: ``outcome`` (3 values), ``status`` (the model's choices), ``state``. No
per-delivery or per-endpoint labels (the number of endpoints is not bounded).

Metric names (all prefixed ``vocelio_``):
``delivery_attempts_total{outcome}``, ``deliveries_completed_total{status}``,
``delivery_attempt_duration_seconds{outcome}`` (histogram), ``deliveries_queue_depth{status}``,
``deliveries_due``, ``deliveries_held``, ``dead_letters``, ``endpoint_circuits{state}``, ``endpoints{status}``,
``database_up``.
"""
import logging
import os
import socket
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

# Several hosts may share one metrics folder (docker-compose mounts one volume into web and worker
# containers, where PIDs repeat), so each process's files are named after host *and* PID.
# prometheus-client picks its value class when first imported, possibly before our settings
# exported PROMETHEUS_MULTIPROC_DIR; set it here explicitly, before any metric is created.
_HOST = socket.gethostname().replace("_", "-")[:64]
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: f"{_HOST}-{os.getpid()}")

# Attempt durations (seconds). 5 s is a bucket edge so the response-time rule (5000 ms) is exact;
# 15 s is the default timeout, 60 s the largest allowed.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)

# Every metric observed in workers has a label, so importing this module (in web processes too)
# creates no value and no file until something is observed.
ATTEMPTS = Counter(
    "vocelio_delivery_attempts_total",
    "Delivery attempts recorded, by outcome (succeeded, retry, failed).",
    ["outcome"],
)
DELIVERIES_COMPLETED = Counter(
    "vocelio_deliveries_completed_total",
    "Deliveries that reached a final state through an attempt (succeeded, failed, dead_lettered).",
    ["status"],
)
ATTEMPT_DURATION = Histogram(
    "vocelio_delivery_attempt_duration_seconds",
    "Duration of delivery attempts, from the request to the end of the response, by outcome (seconds).",
    ["outcome"],
    buckets=DURATION_BUCKETS,
)

FINAL_DELIVERY_STATUSES = ("succeeded", "failed", "dead_lettered")


def observe_attempts(attempts: Iterable[tuple[str, str, int]]) -> None:
    """Count recorded attempts: ``attempts`` yields ``(outcome, delivery_status, duration_ms)``, where
    ``outcome`` is ``DeliveryAttempt.outcome`` (``succeeded``, ``retry``, ``failed``),
    ``delivery_status`` the delivery's status after it (counted in ``deliveries_completed_total``
    when final) and ``duration_ms`` the attempt's duration in milliseconds (observed in seconds).
    The counters are increased once per label value rather than once per attempt (each increase
    locks and writes a memory-mapped file in multiprocess mode; ~1.5 % of a batch worker's CPU,
    issue 7). Never raises: metrics must not break a delivery."""
    try:
        outcomes: dict[str, int] = {}
        completed: dict[str, int] = {}
        for outcome, delivery_status, duration_ms in attempts:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if delivery_status in FINAL_DELIVERY_STATUSES:
                completed[delivery_status] = completed.get(delivery_status, 0) + 1
            ATTEMPT_DURATION.labels(outcome=outcome).observe(max(duration_ms, 0) / 1000.0)
        for outcome, count in outcomes.items():
            ATTEMPTS.labels(outcome=outcome).inc(count)
        for delivery_status, count in completed.items():
            DELIVERIES_COMPLETED.labels(status=delivery_status).inc(count)
    except Exception:
        logger.warning("Could not record attempt metrics", exc_info=True)


# Extra scrape-time sources: callables returning metric families, registered by other apps (for
# example the alert rules' state). They run inside DatabaseCollector, after its own queries.
_scrape_sources: list[Callable[[], Iterable[Metric]]] = []


def add_scrape_source(source: Callable[[], Iterable[Metric]]) -> None:
    """Register ``source`` (no arguments, returns prometheus-client metric families such as
    ``GaugeMetricFamily``) to be collected at every ``/metrics`` scrape. Call it from an
    ``AppConfig.ready``; registering the same callable twice has no effect. A source that raises
    is logged and skipped."""
    if source not in _scrape_sources:
        _scrape_sources.append(source)


class DatabaseCollector:
    """Gauges read from the database at scrape time (queue depth, backlog, dead letters,
    circuits, endpoints). A database error yields ``vocelio_database_up 0`` and no other gauge,
    so the worker counters are still served."""

    def collect(self) -> Iterable[Metric]:
        from vocelio_webhooks import monitoring

        try:
            state = monitoring.delivery_state()
        except Exception as exc:  # noqa: BLE001 — any database error; Prometheus sees database_up 0
            logger.warning("Metrics: database gauges unavailable (%s)", type(exc).__name__)
            yield GaugeMetricFamily("vocelio_database_up", "Whether the database answered this scrape (1/0).", value=0)
            return
        yield GaugeMetricFamily("vocelio_database_up", "Whether the database answered this scrape (1/0).", value=1)
        depth = GaugeMetricFamily(
            "vocelio_deliveries_queue_depth",
            "Deliveries not final yet, by status (pending, retrying, in_flight); includes retries waiting for backoff.",
            labels=["status"],
        )
        for status, count in state.waiting_by_status.items():
            depth.add_metric([status], count)
        yield depth
        yield GaugeMetricFamily(
            "vocelio_deliveries_due",
            "Deliveries to active endpoints whose next attempt time has passed: the backlog workers have not reached.",
            value=state.due,
        )
        yield GaugeMetricFamily(
            "vocelio_deliveries_held",
            "Waiting deliveries held for paused or disabled endpoints (out of the claim's way until resumed).",
            value=state.held,
        )
        yield GaugeMetricFamily("vocelio_dead_letters", "Deliveries in the dead-letter state now.",
                                value=state.dead_letters)
        circuits = GaugeMetricFamily(
            "vocelio_endpoint_circuits", "Endpoints by circuit-breaker state (closed, open, half_open).",
            labels=["state"],
        )
        for circuit_state, count in state.circuits_by_state.items():
            circuits.add_metric([circuit_state], count)
        yield circuits
        endpoints = GaugeMetricFamily("vocelio_endpoints", "Endpoints by status (active, paused, disabled).",
                                      labels=["status"])
        for status, count in state.endpoints_by_status.items():
            endpoints.add_metric([status], count)
        yield endpoints
        for source in _scrape_sources:
            try:
                yield from source()
            except Exception:
                logger.warning("Metrics: scrape source %r failed", source, exc_info=True)


def render_latest() -> tuple[bytes, str]:
    """The Prometheus text exposition of every metric: the workers' counters and histograms
    summed over ``PROMETHEUS_MULTIPROC_DIR`` plus the database gauges. Returns ``(body,
    content_type)``. Raises ``ValueError`` when the folder is not set or missing."""
    from prometheus_client import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    registry.register(DatabaseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
