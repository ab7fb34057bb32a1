"""Circuit breaker and auto-disable rules (endpoints.health), pure."""
from datetime import UTC, datetime, timedelta

import pytest

from endpoints import health

CONFIG = health.CircuitConfig(failure_threshold=3, cooldown_seconds=30, max_cooldown_seconds=100,
                              probe_deadline_seconds=45)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _fail(state, n=1, now=T0):
    for _ in range(n):
        state = health.record(state, success=False, now=now, config=CONFIG)
    return state


@pytest.mark.parametrize(
    ("status_code", "error_class", "expected"),
    [(200, "", True), (204, "", True), (500, "http_500", False), (503, "", False), (408, "", False),
     (None, "timeout", False), (None, "connection_error", False), (None, "dns_error", False),
     (400, "", None), (404, "", None), (429, "", None), (None, "template_error", None),
     (None, "blocked_destination", None)],
)
def test_counts_for_health_separates_receiver_health_from_refusals(status_code, error_class, expected):
    assert health.counts_for_health(status_code=status_code, error_class=error_class) is expected


def test_record_opens_after_threshold_consecutive_failures():
    # given / when
    two, three = _fail(health.Health(), 2), _fail(health.Health(), 3)

    # then
    assert two.circuit_state == health.CLOSED and two.consecutive_failures == 2
    assert three.circuit_state == health.OPEN
    assert three.next_probe_at == T0 + timedelta(seconds=30)


def test_gate_waits_while_open_then_allows_one_probe():
    # given
    opened = _fail(health.Health(), 3)

    # when
    before = health.gate(opened, now=T0 + timedelta(seconds=29))
    after = health.gate(opened, now=T0 + timedelta(seconds=30))

    # then
    assert (before.decision, before.retry_at) == ("wait", T0 + timedelta(seconds=30))
    assert after.decision == "probe"
    probing = health.start_probe(opened, now=T0 + timedelta(seconds=30), config=CONFIG)
    assert probing.circuit_state == health.HALF_OPEN
    assert health.gate(probing, now=T0 + timedelta(seconds=31)).decision == "wait"


def test_failed_probe_reopens_with_doubled_capped_cooldown_and_success_closes():
    # given
    state = _fail(health.Health(), 3)
    cooldowns = []

    # when: three failed probes in a row
    for _ in range(3):
        state = health.start_probe(state, now=T0, config=CONFIG)
        state = health.record(state, success=False, now=T0, config=CONFIG)
        cooldowns.append((state.next_probe_at - T0).total_seconds())
    closed = health.record(health.start_probe(state, now=T0, config=CONFIG), success=True, now=T0, config=CONFIG)

    # then
    assert cooldowns == [60, 100, 100]
    assert closed == health.Health()


def test_success_resets_failure_streak():
    # given
    state = _fail(health.Health(), 2, now=T0)

    # when
    state = health.record(state, success=True, now=T0 + timedelta(seconds=1), config=CONFIG)

    # then
    assert state.consecutive_failures == 0 and state.failing_since is None


def test_should_auto_disable_after_uninterrupted_failures():
    # given
    state = _fail(health.Health(), 1, now=T0)

    # when / then
    assert not health.should_auto_disable(state, now=T0 + timedelta(hours=1), disable_after_seconds=7200)
    assert health.should_auto_disable(_fail(state, 1, now=T0 + timedelta(hours=2)), now=T0 + timedelta(hours=2),
                                      disable_after_seconds=7200)
