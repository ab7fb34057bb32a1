"""An alert evaluation racing an endpoint delete on PostgreSQL (found in review). The evaluation
publishes its ``system.health_alert`` event inside its transaction, while it holds the rows of the
rule's active alerts; the publish's delivery to a subscribed endpoint takes that endpoint's row
(``FOR KEY SHARE``, the foreign-key check, at COMMIT). ``delete_endpoint`` locks the endpoint row
(``FOR UPDATE``) and then sets its alerts' endpoint to null. Alert rows then endpoint on one side,
endpoint then alert rows on the other: PostgreSQL found a deadlock and aborted one side, the
evaluation (the alert neither resolved nor announced) or the delete (``DELETE /endpoints/{id}``
answered 500). And a subscribed endpoint deleted after the publish routed to it failed the
evaluation's COMMIT (its deferred foreign key). Each test drives the real code of both sides into
one interleaving, with a third session holding a row one side needs next, and asserts both sides
succeed, the alert changed state and its event was stored with it."""
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from analytics.alerts import services as alert_services
from analytics.models import Alert, AlertRule
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import EndpointHealth, WebhookEndpoint
from events.models import Event, EventType

RULE = {"name": "slow_endpoints", "metric": "endpoint_avg_response_time_ms", "threshold": 5000.0,
        "period_seconds": 60, "action": "scale_processing_capacity", "min_samples": 1}


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time and no row locks: the two cannot interleave")


def _endpoint(name: str) -> WebhookEndpoint:
    """An endpoint that also receives the alert events (``*``), as an operator's catch-all does."""
    return WebhookEndpoint.objects.create(name=name, url=f"https://{name}.example.com/in", events=["*"],
                                          secret="s" * 24)


def _firing_alert(rule: AlertRule, endpoint: WebhookEndpoint, *, now) -> Alert:
    """A firing alert about ``endpoint`` whose value has been clear for two periods: the next
    evaluation resolves it and publishes its ``resolved`` event (routed to ``endpoint`` too)."""
    return Alert.objects.create(
        rule=rule, rule_name=rule.name, metric=rule.metric, action=rule.action, period_seconds=rule.period_seconds,
        threshold=rule.threshold, scope_key=f"endpoint:{endpoint.pk}", endpoint=endpoint, status=Alert.Status.FIRING,
        pending_since=now - timedelta(minutes=10), fired_at=now - timedelta(minutes=10),
        clear_since=now - timedelta(minutes=2), value_at_fire=6000.0)


def _slow_attempts(endpoint: WebhookEndpoint, *, at) -> None:
    event = Event.objects.create(event_id=f"evt_slow_{endpoint.pk}",
                                 event_type=EventType.objects.get(name="lead.created"), timestamp=at, data={})
    delivery = Delivery.objects.create(event=event, endpoint=endpoint, attempt_count=1, status="succeeded")
    attempt = DeliveryAttempt.objects.create(delivery=delivery, attempt_number=1, url=endpoint.url, http_method="POST",
                                             duration_ms=9000, response_status_code=200, started_at=at,
                                             outcome=DeliveryAttempt.Outcome.SUCCEEDED)
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(created_at=at)


class Session:
    """Real code run on a thread with its own connection: ``pid`` (its backend), ``outcome``
    (``{"result": …}`` or ``{"error": repr}``)."""

    def __init__(self, work: Callable[[], object]):
        self.pid: int | None = None
        self.outcome: dict = {}
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()
        assert self._started.wait(timeout=10), "the session never started"

    def _run(self, work: Callable[[], object]) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            self._started.set()
            self.outcome["result"] = work()
        except Exception as exc:  # noqa: BLE001 — the test reports it
            self.outcome["error"] = repr(exc)
        finally:
            self._started.set()
            connections.close_all()

    def join(self) -> dict:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the session never ended"
        return self.outcome


def _third_session():
    """A raw psycopg connection (no Django): the session that holds the gate row."""
    import psycopg

    params = connection.get_connection_params()
    return psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")})


def _wait_until_blocked(monitor, session: Session, what: str, *, must_block: bool = True) -> None:
    """Wait (10 s at most) until ``session`` waits on a lock or finishes. With ``must_block``, fail
    the test unless it waited."""
    deadline = time.time() + 10
    while time.time() < deadline:
        if session.outcome:
            break
        if monitor.execute("SELECT cardinality(pg_blocking_pids(%s))", [session.pid]).fetchone()[0]:
            return
        time.sleep(0.01)
    if must_block:
        pytest.fail(f"{what} never waited on a lock (outcome: {session.outcome})")


def test_evaluation_waiting_on_a_deleting_endpoint_resolves_and_announces_its_alert(
        transactional_db, postgresql, event_types):
    # given: a firing alert about endpoint E, due to resolve; E receives the alert events; E's
    # delete has locked E and is held (a third session holds E's health row, which it deletes next)
    now = timezone.now()
    rule = AlertRule.objects.create(**RULE)
    endpoint = _endpoint("crm")
    EndpointHealth.objects.create(endpoint=endpoint)
    alert = _firing_alert(rule, endpoint, now=now)
    gate = _third_session()
    gate.execute(f"SELECT 1 FROM {EndpointHealth._meta.db_table} WHERE endpoint_id = %s FOR UPDATE", [endpoint.pk])
    from endpoints import services as endpoint_services

    deleting = Session(lambda: endpoint_services.delete_endpoint(endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk)))
    _wait_until_blocked(gate, deleting, "the delete")

    # when: the evaluation runs into E (it waits), then the delete goes on
    evaluating = Session(lambda: alert_services.evaluate_rule(rule_id=rule.pk, now=now))
    _wait_until_blocked(gate, evaluating, "the evaluation")
    gate.rollback()
    evaluated, deleted = evaluating.join(), deleting.join()
    gate.close()

    # then: both went through; the alert resolved and its event was stored with it
    assert "error" not in evaluated and "error" not in deleted, (evaluated, deleted)
    assert [c.transition for c in evaluated["result"]] == ["resolve"]
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    alert.refresh_from_db()
    assert (alert.status, alert.endpoint_id, alert.resolved_event_id) == (
        "resolved", None, f"alert_{alert.pk}_resolved")
    event = Event.objects.get(event_id=alert.resolved_event_id)
    assert event.data["alert"]["status"] == "resolved"


def _evaluation_held_at_pending_alert(rule: AlertRule, endpoint: WebhookEndpoint, *, now):
    """Start ``rule``'s evaluation and hold it: a third session (returned as ``gate``, its
    transaction open) has inserted a pending alert of ``rule`` about ``endpoint``, uncommitted, so
    the evaluation waits at the partial unique constraint when it starts that alert. Returns
    ``(gate, evaluating)``; ``gate.rollback()`` lets the evaluation go on."""
    gate = _third_session()
    gate.execute(
        f"INSERT INTO {Alert._meta.db_table} (rule_id, rule_name, metric, action, scope_key, endpoint_id, status, "
        "pending_since, threshold, details, firing_event_id, resolved_event_id, created_at, updated_at) "
        "VALUES (%s, '', '', '', %s, %s, 'pending', now(), 0, '{}', '', '', now(), now())",
        [rule.pk, f"endpoint:{endpoint.pk}", endpoint.pk])
    evaluating = Session(lambda: alert_services.evaluate_rule(rule_id=rule.pk, now=now))
    _wait_until_blocked(gate, evaluating, "the evaluation")
    return gate, evaluating


def test_deleting_an_endpoint_through_the_api_during_an_evaluation_answers_204_and_the_alerts_are_announced(
        transactional_db, postgresql, event_types, api):
    # given: a firing alert about endpoint E, due to resolve, and a slow endpoint S about to fire
    # (its scope is evaluated first); both receive the alert events. A third session is starting
    # S's alert too (uncommitted), so the evaluation waits there (the unique constraint), holding
    # E's alert row.
    now = timezone.now()
    rule = AlertRule.objects.create(**RULE)
    first, second = _endpoint("one"), _endpoint("two")
    slow, endpoint = sorted([first, second], key=lambda e: f"endpoint:{e.pk}")
    _slow_attempts(slow, at=now - timedelta(seconds=20))
    alert = _firing_alert(rule, endpoint, now=now)
    gate, evaluating = _evaluation_held_at_pending_alert(rule, slow, now=now)

    # when: E is deleted through the API meanwhile, then the evaluation goes on
    deleting = Session(lambda: api.delete(f"/endpoints/{endpoint.pk}"))
    _wait_until_blocked(gate, deleting, "the delete")
    gate.rollback()
    evaluated, deleted = evaluating.join(), deleting.join()
    gate.close()

    # then: 204, and the evaluation fired S's alert and resolved E's, each with its event
    assert "error" not in evaluated and "error" not in deleted, (evaluated, deleted)
    assert deleted["result"].status_code == 204, deleted["result"].content
    assert sorted(c.transition for c in evaluated["result"]) == ["fire", "resolve"]
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    alert.refresh_from_db()
    assert (alert.status, alert.endpoint_id, alert.resolved_event_id) == (
        "resolved", None, f"alert_{alert.pk}_resolved")
    fired = Alert.objects.get(endpoint=slow, status=Alert.Status.FIRING)
    assert fired.firing_event_id == f"alert_{fired.pk}_firing"
    assert set(Event.objects.filter(event_type__name="system.health_alert").values_list("event_id", flat=True)) == {
        alert.resolved_event_id, fired.firing_event_id}


def test_deleting_an_endpoint_the_evaluation_already_routed_an_alert_event_to_lets_both_commit(
        transactional_db, postgresql, event_types, api):
    # given: a firing alert about endpoint X, due to resolve, and a slow endpoint S about to fire
    # (evaluated after X); endpoint B receives the alert events and has no alert. As above, the
    # evaluation is held at starting S's alert: X's resolved event is published by then, with
    # its delivery to B.
    now = timezone.now()
    rule = AlertRule.objects.create(**RULE)
    first, second = (WebhookEndpoint.objects.create(name=name, url=f"https://{name}.example.com/in", events=["lead.*"],
                                                    secret="s" * 24) for name in ("one", "two"))
    quiet, slow = sorted([first, second], key=lambda e: f"endpoint:{e.pk}")
    subscriber = _endpoint("ops")
    _slow_attempts(slow, at=now - timedelta(seconds=20))
    alert = _firing_alert(rule, quiet, now=now)
    gate, evaluating = _evaluation_held_at_pending_alert(rule, slow, now=now)

    # when: B is deleted through the API meanwhile (it may have to wait for the evaluation)
    deleting = Session(lambda: api.delete(f"/endpoints/{subscriber.pk}"))
    _wait_until_blocked(gate, deleting, "the delete", must_block=False)
    gate.rollback()
    evaluated, deleted = evaluating.join(), deleting.join()
    gate.close()

    # then: 204; X's alert resolved and S's fired, each with its event; B's delivery is history
    assert "error" not in evaluated and "error" not in deleted, (evaluated, deleted)
    assert deleted["result"].status_code == 204, deleted["result"].content
    assert sorted(c.transition for c in evaluated["result"]) == ["fire", "resolve"]
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_event_id) == ("resolved", f"alert_{alert.pk}_resolved")
    assert list(Delivery.objects.filter(event__event_id=alert.resolved_event_id).values_list(
        "endpoint_id", flat=True)) == [None]
    fired = Alert.objects.get(endpoint=slow, status=Alert.Status.FIRING)
    assert Event.objects.filter(event_id=fired.firing_event_id).exists()
