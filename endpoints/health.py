"""Endpoint health: the circuit breaker and the auto-disable rule, as pure functions.

Circuit breaker (per endpoint; Convoy's and the classic Nygard design):

* ``closed`` — requests flow. ``WEBHOOK_CIRCUIT_FAILURE_THRESHOLD`` consecutive failures open it.
* ``open`` — no request goes to the primary URL until ``next_probe_at``; deliveries wait (they are
  rescheduled, spending no attempt) or go to the endpoint's ``failover_url``. The cool-down is
  ``WEBHOOK_CIRCUIT_COOLDOWN_SECONDS`` doubled at each re-open without a success in between, capped
  at ``WEBHOOK_CIRCUIT_MAX_COOLDOWN_SECONDS``.
* ``half_open`` — after the cool-down exactly one trial request is allowed (the worker that wins
  the conditional update); success closes the circuit, failure re-opens it with the longer
  cool-down. A trial whose worker died is replaced once ``next_probe_at`` (its deadline) passes.

What counts as a failure of the endpoint's *health*: no answer (timeout, connection, TLS or DNS
error) and ``5xx``/``408``. A ``4xx`` answer means the receiver is up and refuses this payload, so
it neither opens nor closes the circuit (``counts_for_health`` returns ``None``).

Auto-disable ("Endpoint Unavailable: temporary disable with automatic re-enable"): an endpoint
whose failures have been uninterrupted for ``WEBHOOK_AUTO_DISABLE_AFTER_SECONDS`` (Svix: 5 days) is
disabled; ``410 Gone`` disables it at once.
"""
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

NETWORK_ERRORS = frozenset({"timeout", "connection_error", "ssl_error", "dns_error"})


@dataclass(frozen=True)
class CircuitConfig:
    """Thresholds (counts) and cool-downs (seconds)."""

    failure_threshold: int
    cooldown_seconds: float
    max_cooldown_seconds: float
    probe_deadline_seconds: float


@dataclass(frozen=True)
class Health:
    """The stored health of one endpoint (``endpoints.models.EndpointHealth`` as a value)."""

    circuit_state: str = CLOSED
    consecutive_failures: int = 0
    reopen_count: int = 0
    next_probe_at: datetime | None = None
    failing_since: datetime | None = None


@dataclass(frozen=True)
class Gate:
    """Whether an attempt may go to the primary URL now: ``send``; ``probe`` (send, as the one
    half-open trial); or ``wait`` until ``retry_at``."""

    decision: str
    retry_at: datetime | None = None


def counts_for_health(*, status_code: int | None, error_class: str) -> bool | None:
    """``True`` for a success, ``False`` for a failure of the endpoint's health, ``None`` when the
    attempt says nothing about it (a 4xx answer, or a failure of ours such as a template error)."""
    if status_code is None:
        return False if error_class in NETWORK_ERRORS else None
    if 200 <= status_code < 300:
        return True
    if status_code >= 500 or status_code == 408:
        return False
    return None


def cooldown(config: CircuitConfig, reopen_count: int) -> timedelta:
    """Cool-down after the ``reopen_count``-th consecutive opening (1-based): doubled each time."""
    seconds = config.cooldown_seconds * 2 ** max(reopen_count - 1, 0)
    return timedelta(seconds=min(seconds, config.max_cooldown_seconds))


def gate(health: Health, *, now: datetime) -> Gate:
    """May an attempt go to the primary URL at ``now``? (Pure; the caller makes ``probe`` atomic.)"""
    if health.circuit_state == CLOSED:
        return Gate("send")
    if health.next_probe_at is not None and now >= health.next_probe_at:
        return Gate("probe")
    return Gate("wait", retry_at=health.next_probe_at or now)


def start_probe(health: Health, *, now: datetime, config: CircuitConfig) -> Health:
    """The state while the one trial request is in flight: ``half_open`` until the trial's
    deadline, after which another worker may try."""
    return replace(health, circuit_state=HALF_OPEN,
                   next_probe_at=now + timedelta(seconds=config.probe_deadline_seconds))


def record(health: Health, *, success: bool, now: datetime, config: CircuitConfig) -> Health:
    """The health after one attempt that counts (see ``counts_for_health``)."""
    if success:
        return Health()
    failures = health.consecutive_failures + 1
    failing_since = health.failing_since or now
    reopening = health.circuit_state == HALF_OPEN
    if reopening or (health.circuit_state == CLOSED and failures >= config.failure_threshold):
        reopen_count = health.reopen_count + 1
        return Health(circuit_state=OPEN, consecutive_failures=failures, reopen_count=reopen_count,
                      next_probe_at=now + cooldown(config, reopen_count), failing_since=failing_since)
    return replace(health, consecutive_failures=failures, failing_since=failing_since)


def should_auto_disable(health: Health, *, now: datetime, disable_after_seconds: float) -> bool:
    """True when the endpoint has failed without a single success for ``disable_after_seconds``."""
    return health.failing_since is not None and (now - health.failing_since).total_seconds() >= disable_after_seconds
