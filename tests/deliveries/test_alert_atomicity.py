"""Alerts are atomic with the health change they report (``deliveries/services/health.py``): the
automatic disable, the probe's re-enable and the 401/403 throttle claim commit in one transaction
with their alert event, or not at all; the owner mail goes out after commit; an alert that cannot
be published does not undo the change.

A worker dying between the change and its alert (OOM kill, deploy, SIGKILL) is simulated by fault
injection: the call site ``events.services.publish`` is replaced (monkeypatch) by one that raises
``SystemExit``, a ``BaseException`` that no ``except Exception`` in the code swallows, so it
unwinds every open transaction as the dead process's lost connection would. The tests that check
what was committed use ``transactional_db`` (real commits, on SQLite and on PostgreSQL)."""
import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery
from endpoints import services as endpoint_services
from endpoints.models import EndpointHealth, WebhookEndpoint
from events import services as event_services
from events.models import Event, EventType

CONTINUOUS_FAILURE = {"status_code": 503, "error_class": "http_503"}
GONE = {"status_code": 410, "error_class": "http_410"}


def make_endpoint(**fields) -> WebhookEndpoint:
    values = {"name": "Receiver", "url": "https://example.com/hook", "events": ["lead.*"],
              "owner_email": "owner@example.com", **fields}
    return endpoint_services.create_endpoint(data=values)


def failing_for_two_minutes(endpoint: WebhookEndpoint, settings) -> None:
    settings.WEBHOOK_AUTO_DISABLE_AFTER_SECONDS = 60
    EndpointHealth.objects.create(endpoint_id=endpoint.pk, consecutive_failures=3,
                                  failing_since=timezone.now() - timedelta(seconds=120))


def alerts(name: str, event_type: str = "system.health_alert") -> list[Event]:
    return [e for e in Event.objects.filter(event_type__name=event_type).order_by("id")
            if e.data["alert"]["name"] == name]


def die(**kwargs):
    raise SystemExit("worker killed")  # fault injection: the process goes away at this point


@pytest.mark.parametrize("outcome", [GONE, CONTINUOUS_FAILURE], ids=["410", "continuous_failure"])
def test_record_endpoint_outcome_killed_before_the_alert_leaves_the_endpoint_enabled(
        transactional_db, event_types, settings, monkeypatch, mailoutbox, outcome):
    # given: an endpoint this outcome disables, and a worker that dies when it publishes the alert
    endpoint = make_endpoint()
    failing_for_two_minutes(endpoint, settings)
    real_publish = event_services.publish
    monkeypatch.setattr(event_services, "publish", die)

    # when
    with pytest.raises(SystemExit):
        delivery_services.record_endpoint_outcome(endpoint=endpoint, **outcome)

    # then: nothing of the disable was committed, so nobody had to be told and nobody was
    endpoint.refresh_from_db()
    assert endpoint.status == "active"
    assert EndpointHealth.objects.get(pk=endpoint.pk).auto_disabled_at is None
    assert Event.objects.count() == 0
    assert mailoutbox == []

    # when: the next worker sees the next such outcome
    monkeypatch.setattr(event_services, "publish", real_publish)
    change = delivery_services.record_endpoint_outcome(endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk),
                                                       **outcome)

    # then: disabled and announced, once
    assert change.disabled
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "disabled"
    assert len(alerts("endpoint_disabled")) == 1
    assert [m.to for m in mailoutbox] == [["owner@example.com"]]


def test_record_endpoint_outcome_killed_after_publishing_commits_neither_event_nor_disable(
        transactional_db, event_types, monkeypatch, mailoutbox):
    # given: an operator endpoint subscribed to the alerts, and a worker that dies right after the
    # real publish returned, before the disable's transaction commits (on PostgreSQL the publish
    # is one INSERT statement that commits by itself when no transaction is open: it must not here)
    endpoint = make_endpoint()
    make_endpoint(name="Ops", url="https://example.com/ops", events=["system.health_alert"])
    real_publish = event_services.publish

    def publish_then_die(**kwargs):
        real_publish(**kwargs)
        raise SystemExit("worker killed")  # fault injection

    monkeypatch.setattr(event_services, "publish", publish_then_die)

    # when
    with pytest.raises(SystemExit):
        delivery_services.record_endpoint_outcome(endpoint=endpoint, **GONE)

    # then
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "active"
    assert Event.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert mailoutbox == []


def test_after_attempt_killed_before_the_401_alert_leaves_the_throttle_unclaimed(
        transactional_db, event_types, monkeypatch, mailoutbox):
    # given: a delivery the receiver answered 401, and a worker that dies when it publishes the alert
    endpoint = make_endpoint()
    delivery = event_services.publish(event_type="lead.created", data={"n": 1}).deliveries[0]
    real_publish = event_services.publish
    monkeypatch.setattr(event_services, "publish", die)

    # when
    with pytest.raises(SystemExit):
        delivery_services.after_attempt(delivery=delivery, endpoint=endpoint, url=endpoint.url, status_code=401,
                                        error_class="http_401")

    # then: the throttle was not taken, so the alert is not suppressed for the whole interval
    assert not EndpointHealth.objects.filter(pk=endpoint.pk, last_owner_alert_at__isnull=False).exists()
    assert alerts("authentication_failed", event_type="system.error") == []
    assert mailoutbox == []

    # when: the next 401 is handled by a live worker
    monkeypatch.setattr(event_services, "publish", real_publish)
    delivery_services.after_attempt(delivery=delivery, endpoint=endpoint, url=endpoint.url, status_code=401,
                                    error_class="http_401")

    # then: it alerts (event + mail), and claims the throttle
    assert len(alerts("authentication_failed", event_type="system.error")) == 1
    assert EndpointHealth.objects.get(pk=endpoint.pk).last_owner_alert_at is not None
    assert [m.to for m in mailoutbox] == [["owner@example.com"]]


def test_probe_killed_before_the_reenable_alert_leaves_the_endpoint_disabled(
        transactional_db, event_types, receiver, monkeypatch, mailoutbox):
    # given: an endpoint the service disabled, whose receiver is back (answers 200)
    endpoint = make_endpoint(url=receiver.url("/back"))
    assert endpoint_services.disable_automatically(endpoint_id=endpoint.pk, reason="test")
    real_publish = event_services.publish
    monkeypatch.setattr(event_services, "publish", die)

    # when
    with pytest.raises(SystemExit):
        delivery_services.probe_disabled_endpoints()

    # then: still disabled by the service, so the next probe re-enables it and tells
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "disabled"
    assert EndpointHealth.objects.get(pk=endpoint.pk).auto_disabled_at is not None
    assert Event.objects.count() == 0

    # when
    monkeypatch.setattr(event_services, "publish", real_publish)
    result = delivery_services.probe_disabled_endpoints()

    # then
    assert (result.probed, result.reenabled) == (1, 1)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "active"
    assert len(alerts("endpoint_reenabled")) == 1
    assert [m.to for m in mailoutbox] == [["owner@example.com"]]


def test_probe_without_the_alert_event_type_says_so_and_leaves_the_endpoint_disabled(
        db, event_types, receiver, caplog):
    # given: an endpoint the service disabled, whose receiver is back, and the alert type deleted by hand (SQL)
    endpoint = make_endpoint(url=receiver.url("/back"))
    assert endpoint_services.disable_automatically(endpoint_id=endpoint.pk, reason="test")
    EventType.objects.filter(name="system.health_alert").delete()

    # when
    with caplog.at_level(logging.ERROR, logger="deliveries.services.health"):
        result = delivery_services.probe_disabled_endpoints()

    # then: nothing probed, the endpoint stays disabled, and the log says why
    assert (result.probed, result.reenabled) == (0, 0)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "disabled"
    assert receiver.requests == []
    assert any("No system.health_alert event type" in r.getMessage() for r in caplog.records)


def test_record_endpoint_outcome_disables_with_one_alert_and_mails_after_commit(
        db, event_types, mailoutbox, django_capture_on_commit_callbacks):
    # given: the failing endpoint and an operator endpoint subscribed to the alerts
    endpoint = make_endpoint()
    ops = make_endpoint(name="Ops", url="https://example.com/ops", events=["system.health_alert"])

    # when
    with django_capture_on_commit_callbacks(execute=True):
        change = delivery_services.record_endpoint_outcome(endpoint=endpoint, **GONE)
        mailed_before_commit = list(mailoutbox)

    # then: one alert event with its delivery to the operators (none to the disabled endpoint), and
    # the mail only once the transaction committed
    assert change.disabled and WebhookEndpoint.objects.get(pk=endpoint.pk).status == "disabled"
    [alert] = alerts("endpoint_disabled")
    assert alert.data["endpoint"] == {"id": endpoint.pk, "name": "Receiver", "url": endpoint.url,
                                      "status": "disabled"}
    assert list(Delivery.objects.filter(event=alert).values_list("endpoint_id", "status")) == [(ops.pk, "pending")]
    assert mailed_before_commit == []
    assert [m.to for m in mailoutbox] == [["owner@example.com"]]
    assert "410" in mailoutbox[0].body


def test_record_endpoint_outcome_disables_even_when_the_alert_type_is_gone(
        transactional_db, event_types, mailoutbox, caplog):
    # given: someone deleted the system.health_alert event type from the catalog
    endpoint = make_endpoint()
    EventType.objects.filter(name="system.health_alert").delete()

    # when
    with caplog.at_level(logging.ERROR, logger="deliveries.services.health"):
        change = delivery_services.record_endpoint_outcome(endpoint=endpoint, **GONE)

    # then: the endpoint is disabled all the same (committed), the failure is logged with its
    # traceback, and the owner is still mailed
    assert change.disabled and WebhookEndpoint.objects.get(pk=endpoint.pk).status == "disabled"
    assert Event.objects.count() == 0
    [record] = [r for r in caplog.records if r.name == "deliveries.services.health"]
    assert "endpoint_disabled" in record.getMessage() and record.exc_info is not None
    assert [m.to for m in mailoutbox] == [["owner@example.com"]]


def test_after_attempt_disables_when_the_alert_publish_fails_in_the_database(
        transactional_db, event_types, monkeypatch, mailoutbox, caplog):
    # given: a publish that fails inside the database (fault injection: a statement PostgreSQL
    # refuses, which aborts the transaction it runs in, unless that is a savepoint of its own)
    endpoint = make_endpoint()
    delivery = event_services.publish(event_type="lead.created", data={"n": 1}).deliveries[0]

    def publish_failing_in_the_database(**kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_for_alerts")

    monkeypatch.setattr(event_services, "publish", publish_failing_in_the_database)

    # when: after_attempt sees a 410 (never raises)
    with caplog.at_level(logging.ERROR, logger="deliveries.services.health"):
        delivery_services.after_attempt(delivery=delivery, endpoint=endpoint, url=endpoint.url, status_code=410,
                                        error_class="http_410")

    # then: the disable committed, the failed publish is logged, the owner is mailed
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "disabled"
    assert EndpointHealth.objects.get(pk=endpoint.pk).auto_disabled_at is not None
    messages = [r.getMessage() for r in caplog.records if r.name == "deliveries.services.health"]
    assert len(messages) == 1 and "Publishing the system.health_alert alert" in messages[0], messages
    assert [m.to for m in mailoutbox] == [["owner@example.com"]]


def test_disable_alert_is_published_while_the_queue_refuses_new_events(transactional_db, event_types, settings,
                                                                         monkeypatch, api):
    # given: a full queue (publishing answers 503 QUEUE_FULL) and an endpoint the next 410 disables
    endpoint = make_endpoint()
    settings.WEBHOOK_MAX_QUEUE_SIZE = 1
    event_services.publish(event_type="lead.created", data={})  # one waiting delivery: the limit
    monkeypatch.setattr(event_services, "_queue_size_seen", (0.0, 0))  # count now, restored after
    refused = api.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")

    # when
    change = delivery_services.record_endpoint_outcome(endpoint=endpoint, **GONE)

    # then: the service's own alert is not refused by the back-pressure meant for publishers
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "QUEUE_FULL"
    assert change.disabled
    assert len(alerts("endpoint_disabled")) == 1


@pytest.mark.parametrize(("change", "announced"), [("delete", "endpoint_disabled"), ("update", "endpoint_disabled"),
                                                    ("delete", "endpoint_reenabled")])
def test_status_change_and_its_alert_do_not_deadlock_with_a_change_to_a_recipient_endpoint(
        transactional_db, event_types, receiver, change, announced):
    # given: an endpoint the next 410 disables (or the probe re-enables), and an operators'
    # endpoint its alert is routed to, which someone deletes (or re-subscribes) at the same moment:
    # their transaction has locked it (as delete_endpoint and update_endpoint do first) and goes
    # on 0.5 s later
    if connection.vendor != "postgresql":
        pytest.skip("row locks and deadlocks are PostgreSQL's; SQLite has one writer at a time")
    import threading
    import time

    from django.db import connections, transaction

    endpoint = make_endpoint(url=receiver.url("/back"))
    if announced == "endpoint_reenabled":  # the service disabled it; the probe finds the receiver back
        assert endpoint_services.disable_automatically(endpoint_id=endpoint.pk, reason="test")
    operators = make_endpoint(name="Ops", url="https://ops.example.com/hook", events=["system.*"], owner_email="")
    locked, outcome = threading.Event(), {}

    def operator_changes_the_recipient():
        try:
            with transaction.atomic():
                row = WebhookEndpoint.objects.select_for_update().get(pk=operators.pk)
                locked.set()
                time.sleep(0.5)  # meanwhile the worker disables the other endpoint
                if change == "delete":
                    row.delete()
                else:
                    row.events = ["system.health_alert"]
                    row.save()
            outcome["operator"] = "committed"
        except Exception as exc:  # noqa: BLE001 — the outcome is the assertion
            outcome["operator"] = repr(exc)
        finally:
            connections.close_all()

    def worker_changes_the_status():
        locked.wait(5)
        try:
            if announced == "endpoint_reenabled":
                outcome["worker"] = delivery_services.probe_disabled_endpoints().reenabled == 1
            else:
                outcome["worker"] = delivery_services.record_endpoint_outcome(
                    endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk), **GONE).disabled
        except Exception as exc:  # noqa: BLE001
            outcome["worker"] = repr(exc)
        finally:
            connections.close_all()

    # when
    threads = [threading.Thread(target=operator_changes_the_recipient),
               threading.Thread(target=worker_changes_the_status)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # then: both commit (before, PostgreSQL aborted one of them with "deadlock detected"), and
    # the status changed with its one alert
    assert outcome == {"operator": "committed", "worker": True}
    expected = "disabled" if announced == "endpoint_disabled" else "active"
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == expected
    assert len(alerts(announced)) == 1
