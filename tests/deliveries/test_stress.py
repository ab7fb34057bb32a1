"""Delivery under stress (issue 4), with a real worker process and a real receiver: circuit
breaker, failover, rate limits, 410/401 handling, auto-disable and the re-enable probe, priority
routing and crash safety (SIGKILL of the worker mid-delivery, retries past the countdown limit)."""
import hashlib
import hmac
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import EndpointHealth, WebhookEndpoint
from events.models import Event
from tests.conftest import due_deliveries, wait_until

ONE_TRY = {"max_attempts": 1, "initial_delay_seconds": 1, "max_delay_seconds": 10, "backoff_multiplier": 2.0}


def create_endpoint(api, receiver, path="/hook", **fields):
    body = {"name": "Receiver", "url": receiver.url(path), "events": ["lead.*"], **fields}
    response = api.post("/endpoints", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def publish(api, n=0, **fields):
    response = api.post("/events/publish", {"event_type": "lead.created", "data": {"n": n}, **fields}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["deliveries"][0]["id"]


def status_of(delivery_id):
    return Delivery.objects.get(pk=delivery_id).status


def test_circuit_opens_holds_deliveries_then_one_probe_closes_it(api, receiver, worker):
    # given: a receiver that fails five times, then recovers
    receiver.script("/hook", [503] * 5 + [200])
    endpoint = create_endpoint(api, receiver, retry_policy=ONE_TRY)
    failed = [publish(api, n) for n in range(5)]
    wait_until(lambda: all(status_of(d) == "dead_lettered" for d in failed))
    # the worker opens the circuit after it stored the fifth attempt, in a transaction of its own
    wait_until(lambda: EndpointHealth.objects.filter(pk=endpoint["id"], circuit_state="open").exists())

    # when: the circuit is open, a new delivery is published
    waiting = publish(api, 99)
    shown = wait_until(
        lambda: (e := api.get(f"/endpoints/{endpoint['id']}").json())["health"]["circuit_state"] == "open" and e)

    # then: it waited for the 2 s test cool-down without spending an attempt, and was then sent
    # once, as the probe that closes the circuit (asserted on the attempt's start rather than on
    # the state at some moment: a busy machine may reach the end of the cool-down first)
    assert shown["health"]["consecutive_failures"] == 5
    probe_at = parse_datetime(shown["health"]["next_probe_at"])
    wait_until(lambda: status_of(waiting) == "succeeded", timeout=30)
    attempts = DeliveryAttempt.objects.filter(delivery_id=waiting)
    assert attempts.count() == 1
    assert attempts.get().started_at >= probe_at, (attempts.get().started_at, probe_at)
    assert len(receiver.for_path("/hook")) == 6
    wait_until(lambda: EndpointHealth.objects.get(pk=endpoint["id"]).circuit_state == "closed")


def test_closing_circuit_sends_the_deliveries_held_during_the_trial_at_once(api, receiver, worker):
    # given: a trial request in flight (half-open until its 90 s deadline) and two more deliveries
    # the circuit held back until then, as the gate does when another worker won the trial; and a
    # retry whose own backoff ends later. The rows are arranged while the endpoint is paused: the
    # live worker claims an active endpoint's new delivery at once, and rewriting a claimed row
    # here raced it (a delivery sent at publish, or twice).
    endpoint = create_endpoint(api, receiver, path="/recovering")
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(status=WebhookEndpoint.Status.PAUSED)
    deadline = timezone.now() + timedelta(seconds=90)
    EndpointHealth.objects.create(endpoint_id=endpoint["id"], circuit_state="half_open", consecutive_failures=5,
                                  next_probe_at=deadline)
    held = [publish(api, n) for n in range(2)]
    later, backing_off = publish(api, 9), publish(api, 8)
    Delivery.objects.filter(pk__in=held).update(status="retrying", attempt_count=1, next_attempt_at=deadline)
    Delivery.objects.filter(pk=later).update(status="retrying", attempt_count=1,
                                             next_attempt_at=deadline + timedelta(hours=1))
    own_backoff = deadline - timedelta(seconds=30)  # e.g. a receiver's Retry-After, ending inside the trial
    Delivery.objects.filter(pk=backing_off).update(status="retrying", attempt_count=1, next_attempt_at=own_backoff)
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(status=WebhookEndpoint.Status.ACTIVE)  # none is due yet

    # when: the trial succeeds
    change = delivery_services.record_endpoint_outcome(endpoint=WebhookEndpoint.objects.get(pk=endpoint["id"]),
                                                       status_code=200, error_class="")

    # then: the circuit is closed and the held deliveries arrive now, not 90 s later; the retries
    # waiting for reasons of their own keep their times
    assert change.closed
    got = receiver.wait_for(2, path="/recovering", timeout=15)
    assert sorted(r.header("X-Vocelio-Delivery-Id") for r in got) == sorted(
        Delivery.objects.get(pk=pk).public_id for pk in held)
    wait_until(lambda: all(status_of(pk) == "succeeded" for pk in held))
    assert status_of(later) == "retrying" and status_of(backing_off) == "retrying"
    assert Delivery.objects.get(pk=later).next_attempt_at == deadline + timedelta(hours=1)
    assert Delivery.objects.get(pk=backing_off).next_attempt_at == own_backoff


def test_a_worker_that_loses_the_race_for_the_trial_waits_for_the_winners_deadline(db):
    # given: another worker won the trial and stored its deadline (half-open until then)
    from endpoints import services as endpoint_services

    endpoint = WebhookEndpoint.objects.create(name="trial", url="https://example.com/hook", events=["lead.*"])
    winners_deadline = timezone.now() + timedelta(seconds=80)
    EndpointHealth.objects.create(endpoint_id=endpoint.pk, circuit_state="half_open", consecutive_failures=5,
                                  next_probe_at=winners_deadline)

    # when: this worker's own bid for the trial lost (its conditional UPDATE changed nothing)
    gate = endpoint_services._gate_after_lost_probe(endpoint_id=endpoint.pk, now=timezone.now())

    # then: its delivery waits until exactly the stored deadline, so the trial's success releases it
    # (a deadline computed by the loser, a little later, used to leave it waiting out the 90 s)
    assert (gate.decision, gate.retry_at) == ("wait", winners_deadline)


def test_failover_gets_the_same_signed_body_after_a_primary_failure(api, receiver, worker):
    # given
    receiver.script("/primary", [503])
    # a 30 s backoff: the failover comes well within it only because it does not wait for one
    slow_backoff = {"max_attempts": 5, "initial_delay_seconds": 30, "max_delay_seconds": 60, "backoff_multiplier": 2.0}
    endpoint = create_endpoint(api, receiver, path="/primary", failover_url=receiver.url("/failover"),
                               retry_policy=slow_backoff)

    # when
    delivery_id = publish(api)

    # then
    primary, = receiver.wait_for(1, path="/primary")
    failover, = receiver.wait_for(1, path="/failover")
    assert failover.json()["data"] == primary.json()["data"]
    assert failover.header("X-Vocelio-Event-Id") == primary.header("X-Vocelio-Event-Id")
    expected = "sha256=" + hmac.new(endpoint["secret"].encode(), failover.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(failover.header("X-Vocelio-Signature"), expected)
    detail = wait_until(lambda: (d := api.get(f"/deliveries/{delivery_id}").json())["status"] == "succeeded" and d)
    assert [a["url"] for a in detail["attempts"]] == [receiver.url("/primary"), receiver.url("/failover")]
    assert failover.received_at - primary.received_at < 10.0  # no backoff before the failover
    assert endpoint["failover_url"] == receiver.url("/failover")


def test_rate_limit_holds_extra_deliveries_without_spending_attempts(api, receiver, worker):
    # given: not too close to the end of a minute, when the window turns over
    if timezone.now().second > 45:
        time.sleep(61 - timezone.now().second)
    create_endpoint(api, receiver, rate_limit_per_minute=2)

    # when
    ids = [publish(api, n) for n in range(4)]

    # then
    receiver.wait_for(2)
    time.sleep(2)
    assert len(receiver.for_path("/hook")) == 2
    waiting = Delivery.objects.filter(pk__in=ids, status="pending")
    assert waiting.count() == 2
    next_minute = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    assert all(d.attempt_count == 0 and d.next_attempt_at >= next_minute - timedelta(seconds=1) for d in waiting)


def _mail_to(address: str) -> str:
    folder = Path(settings.EMAIL_FILE_PATH)
    return "".join(p.read_text() for p in folder.glob("*.log")) if folder.exists() else ""


def test_410_disables_the_endpoint_and_tells_the_owner(api, receiver, worker):
    # given
    receiver.script("/gone", [410])
    endpoint = create_endpoint(api, receiver, path="/gone", owner_email="owner-410@example.com")

    # when
    delivery_id = publish(api)

    # then
    wait_until(lambda: status_of(delivery_id) == "failed")
    shown = wait_until(lambda: (e := api.get(f"/endpoints/{endpoint['id']}").json())["status"] == "disabled" and e)
    assert "410" in shown["status_reason"]
    # the alert is published after the disable is committed, in its own transaction: wait for it
    alerts = wait_until(lambda: api.get("/events", {"event_type": "system.health_alert"}).json()["results"])
    assert alerts and alerts[0]["data"]["endpoint"]["id"] == endpoint["id"]
    assert "owner-410@example.com" in wait_until(lambda: _mail_to("owner-410@example.com"))
    again = api.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json").json()
    assert again["deliveries"] == []
    assert Delivery.objects.filter(endpoint_id=endpoint["id"]).count() == 1  # disabled: no new deliveries


def test_401_is_not_retried_and_alerts_the_owner_once(api, receiver, worker):
    # given
    receiver.script("/auth", [401])
    endpoint = create_endpoint(api, receiver, path="/auth", owner_email="owner-401@example.com")

    # when
    first, second = publish(api, 1), publish(api, 2)

    # then: the alert and the mail follow the stored attempt (its own transaction): wait for them,
    # then leave room for a second alert, if the throttle let one through
    def auth_errors():
        return [e for e in api.get("/events", {"event_type": "system.error"}).json()["results"]
                if e["data"]["endpoint"]["id"] == endpoint["id"]]

    wait_until(lambda: status_of(first) == "failed" and status_of(second) == "failed")
    wait_until(auth_errors)
    assert "owner-401@example.com" in wait_until(lambda: _mail_to("owner-401@example.com"))
    time.sleep(1)
    assert len(receiver.for_path("/auth")) == 2
    errors = auth_errors()
    assert len(errors) == 1 and errors[0]["data"]["alert"]["name"] == "authentication_failed"
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).status == "active"


def test_auto_disable_after_continuous_failure_and_probe_reenables(api, receiver, worker, settings):
    # given: an endpoint failing without a success for longer than the (shortened) period
    settings.WEBHOOK_AUTO_DISABLE_AFTER_SECONDS = 60
    endpoint = create_endpoint(api, receiver, path="/flaky")
    EndpointHealth.objects.create(endpoint_id=endpoint["id"], consecutive_failures=3,
                                  failing_since=timezone.now() - timedelta(seconds=120))

    # when
    change = delivery_services.record_endpoint_outcome(endpoint=WebhookEndpoint.objects.get(pk=endpoint["id"]),
                                                       status_code=503, error_class="http_503")
    disabled = api.get(f"/endpoints/{endpoint['id']}").json()
    result = delivery_services.probe_disabled_endpoints()

    # then
    assert change.disabled and disabled["status"] == "disabled"
    assert disabled["health"]["auto_disabled_at"]
    assert (result.probed, result.reenabled) == (1, 1)
    assert receiver.wait_for(1, path="/flaky")[0].json()["metadata"]["test"] is True
    assert api.get(f"/endpoints/{endpoint['id']}").json()["status"] == "active"
    alert_events = api.get("/events", {"event_type": "system.health_alert"}).json()["results"]
    changes = [e["data"]["alert"]["name"] for e in alert_events]
    assert sorted(changes) == ["endpoint_disabled", "endpoint_reenabled"]


def test_probe_leaves_endpoints_disabled_by_a_person_alone(api, receiver, worker):
    # given
    endpoint = create_endpoint(api, receiver, path="/manual")
    api.put(f"/endpoints/{endpoint['id']}/status", {"status": "disabled"}, format="json")

    # when
    result = delivery_services.probe_disabled_endpoints()

    # then
    assert result.probed == 0
    assert receiver.for_path("/manual") == []


def test_high_priority_event_types_go_to_the_priority_queue(api, django_capture_on_commit_callbacks):
    # given
    from events.models import EventType

    EventType.objects.filter(name="system.error").update(is_high_priority=True)
    api.post("/endpoints", {"name": "x", "url": "https://example.com/h", "events": ["*"]}, format="json")

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        api.post("/events/publish", {"event_type": "system.error", "data": {}}, format="json")
        api.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")

    # then: one batch wake-up per publish, on the priority queue for the high-priority type
    assert [callback.args for callback in callbacks] == [("priority",), (None,)]


def test_worker_killed_mid_delivery_another_worker_sends_it(api, receiver, worker):
    # given: a request in flight at a receiver that takes 1.5 s to answer
    receiver.hang_seconds["/slow"] = 1.5
    create_endpoint(api, receiver, path="/slow", timeout_seconds=3)
    delivery_id = publish(api)
    receiver.wait_for(1, path="/slow")

    # when: the worker dies without a chance to record anything, and a new one starts
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    assert status_of(delivery_id) == "in_flight"
    worker.start()
    receiver.hang_seconds["/slow"] = 0
    wait_until(lambda: delivery_services.sweep_due_deliveries().enqueued or status_of(delivery_id) == "succeeded",
               timeout=30, interval=0.5)

    # then: sent again, with the same event id for the receiver to de-duplicate, and nothing lost
    wait_until(lambda: status_of(delivery_id) == "succeeded", timeout=30)
    sent = receiver.for_path("/slow")
    assert len(sent) == 2
    assert sent[0].header("X-Vocelio-Event-Id") == sent[1].header("X-Vocelio-Event-Id")


def test_retry_beyond_the_countdown_limit_is_sent_once_by_the_sweep(api, receiver, worker):
    # given: the receiver asks for 400 s, more than WEBHOOK_COUNTDOWN_MAX_SECONDS (300). The first
    # attempt is made here, on a delivery stored without a wake-up: made by the live worker, the
    # wake-up its batch re-arms (one more after every batch that claimed) could still be on its way
    # when the test makes the delivery due below, and send it before the sweep (seen under load)
    receiver.script("/later", [(503, {"Retry-After": "400"}, b""), 200])
    endpoint = create_endpoint(api, receiver, path="/later")
    delivery_id = due_deliveries([WebhookEndpoint.objects.get(pk=endpoint["id"])], 1)[0].pk
    delivery_services.attempt_delivery(delivery_id=delivery_id)
    assert status_of(delivery_id) == "retrying"
    due = Delivery.objects.get(pk=delivery_id).next_attempt_at
    assert timedelta(seconds=395) < due - timezone.now() <= timedelta(seconds=400)

    # when: the time comes (simulated) and the sweep runs twice
    Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now() - timedelta(seconds=5))
    first = delivery_services.sweep_due_deliveries()
    wait_until(lambda: status_of(delivery_id) == "succeeded")
    second = delivery_services.sweep_due_deliveries()

    # then
    time.sleep(1)
    assert (first.enqueued, second.enqueued) == (1, 0)
    assert len(receiver.for_path("/later")) == 2
    assert Event.objects.count() == 1
