"""Event replay (issue 4): one event to its current matching endpoints or to one endpoint,
everything since a time to one endpoint, the ``replay_events`` command and the admin's replay
action. Replays are new deliveries with the original ``event_id``, marked ``is_replay`` and sent
with ``X-Vocelio-Replay: true``; the original delivery and its attempts stay as they were.
"""
import io
import time

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt
from tests.deliveries.test_delivery_flow import create_endpoint, delivery_when, publish, seed_verify_signature

ONE_ATTEMPT = {"max_attempts": 1, "initial_delay_seconds": 1, "max_delay_seconds": 10, "backoff_multiplier": 2.0}


def test_event_replay_resends_same_event_marked_as_replay(api, receiver, worker):
    # given
    endpoint = create_endpoint(api, receiver, signature_method="hmac_sha256")
    original_id = publish(api, event_id="evt_replay_1")["deliveries"][0]["id"]
    delivery_when(api, original_id, "succeeded")

    # when
    response = api.post("/events/evt_replay_1/replay", {}, format="json")

    # then
    assert response.status_code == 202
    body = response.json()
    assert body["replayed"] == 1 and len(body["deliveries"]) == 1
    replay_id = body["deliveries"][0]
    first, second = receiver.wait_for(2)
    assert first.header("X-Vocelio-Replay") is None
    assert second.header("X-Vocelio-Replay") == "true"
    assert second.header("X-Vocelio-Event-Id") == "evt_replay_1"
    assert second.header("X-Vocelio-Delivery-Id") == f"dlv_{replay_id}"
    assert second.json()["event_id"] == "evt_replay_1"
    assert second.json()["data"] == first.json()["data"]
    assert seed_verify_signature(second.body.decode(), second.header("X-Vocelio-Signature"), endpoint["secret"])
    replay = delivery_when(api, replay_id, "succeeded")
    assert replay["is_replay"] is True and replay["replay_of"] == original_id
    original = api.get(f"/deliveries/{original_id}").json()
    assert original["is_replay"] is False and original["status"] == "succeeded"
    assert len(original["attempts"]) == 1
    assert DeliveryAttempt.objects.filter(delivery_id=original_id).count() == 1


def test_event_replay_goes_to_current_matching_endpoints_only(api, receiver, worker):
    # given: the event is published before most endpoints exist
    early = create_endpoint(api, receiver, path="/early")
    publish(api, event_id="evt_fanout", data={"lead": {"id": "l1", "score": 85}})
    receiver.wait_for(1, path="/early")
    late = create_endpoint(api, receiver, path="/late", events=["lead.created"])
    create_endpoint(api, receiver, path="/calls", events=["call.*"])
    create_endpoint(api, receiver, path="/filtered", filters=[
        {"field_path": "data.lead.score", "operator": "greater_than", "value": 90}])
    disabled = create_endpoint(api, receiver, path="/disabled")
    api.put(f"/endpoints/{disabled['id']}/status", {"status": "disabled", "reason": "test"}, format="json")
    create_endpoint(api, receiver, path="/staging", environment="staging")
    paused = create_endpoint(api, receiver, path="/paused")
    api.put(f"/endpoints/{paused['id']}/status", {"status": "paused", "reason": "test"}, format="json")

    # when
    response = api.post("/events/evt_fanout/replay", {}, format="json")

    # then
    assert response.status_code == 202
    replays = Delivery.objects.filter(pk__in=response.json()["deliveries"])
    assert {d.endpoint_id for d in replays} == {early["id"], late["id"], paused["id"]}
    assert response.json()["replayed"] == 3
    receiver.wait_for(2, path="/early")
    assert receiver.wait_for(1, path="/late")[0].header("X-Vocelio-Replay") == "true"
    time.sleep(1)
    for path in ("/calls", "/filtered", "/disabled", "/staging", "/paused"):
        assert receiver.for_path(path) == [], path
    assert replays.get(endpoint_id=paused["id"]).status == "pending"
    assert replays.get(endpoint_id=late["id"]).replay_of_id is None


def test_event_replay_to_one_endpoint(api, receiver, worker):
    # given
    create_endpoint(api, receiver, path="/first")
    second = create_endpoint(api, receiver, path="/second")
    publish(api, event_id="evt_one")
    receiver.wait_for(1, path="/first")
    receiver.wait_for(1, path="/second")

    # when
    response = api.post("/events/evt_one/replay", {"endpoint": second["id"]}, format="json")

    # then
    assert response.status_code == 202 and response.json()["replayed"] == 1
    replay = receiver.wait_for(2, path="/second")[1]
    assert replay.header("X-Vocelio-Replay") == "true" and replay.json()["event_id"] == "evt_one"
    time.sleep(1)
    assert len(receiver.for_path("/first")) == 1
    replayed = Delivery.objects.get(pk=response.json()["deliveries"][0])
    assert replayed.endpoint_id == second["id"] and replayed.replay_of.endpoint_id == second["id"]


def test_event_replay_refuses_endpoints_that_would_not_receive_it(api, receiver, worker):
    # given
    create_endpoint(api, receiver, path="/leads")
    publish(api, event_id="evt_refuse")
    calls = create_endpoint(api, receiver, path="/calls", events=["call.*"])
    staging = create_endpoint(api, receiver, path="/staging", environment="staging")
    disabled = create_endpoint(api, receiver, path="/disabled")
    api.put(f"/endpoints/{disabled['id']}/status", {"status": "disabled", "reason": "test"}, format="json")

    # when
    not_subscribed = api.post("/events/evt_refuse/replay", {"endpoint": calls["id"]}, format="json")
    other_environment = api.post("/events/evt_refuse/replay", {"endpoint": staging["id"]}, format="json")
    disabled_response = api.post("/events/evt_refuse/replay", {"endpoint": disabled["id"]}, format="json")
    missing_endpoint = api.post("/events/evt_refuse/replay", {"endpoint": 999999}, format="json")
    missing_event = api.post("/events/evt_nope/replay", {}, format="json")

    # then
    assert not_subscribed.status_code == 409
    assert not_subscribed.json()["error"]["code"] == "ENDPOINT_NOT_MATCHING"
    assert "call.*" in not_subscribed.json()["error"]["details"]["reason"]
    assert other_environment.status_code == 409
    assert "staging" in other_environment.json()["error"]["details"]["reason"]
    assert disabled_response.status_code == 409
    assert disabled_response.json()["error"]["code"] == "ENDPOINT_DISABLED"
    assert missing_endpoint.status_code == 400
    assert missing_endpoint.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "endpoint" in missing_endpoint.json()["error"]["details"]["fields"]
    assert missing_event.status_code == 404
    assert Delivery.objects.filter(is_replay=True).count() == 0


def test_endpoint_replay_since_sends_missed_events_to_late_endpoint(api, receiver, worker):
    # given: events published before the endpoint existed, one of them before "since"
    publish(api, event_id="evt_before")
    since = timezone.now()
    publish(api, event_id="evt_missed_1")
    publish(api, event_id="evt_missed_2", event_type="lead.updated")
    publish(api, event_id="evt_other_type", event_type="call.started", data={"call": {"id": "c1"}})
    publish(api, event_id="evt_staging", environment="staging")
    endpoint = create_endpoint(api, receiver, path="/late")

    # when
    response = api.post(f"/endpoints/{endpoint['id']}/replay", {"since": since.isoformat()}, format="json")

    # then
    assert response.status_code == 202
    assert response.json()["replayed"] == 2 and response.json()["limit_reached"] is False
    requests = receiver.wait_for(2, path="/late")
    assert sorted(r.header("X-Vocelio-Event-Id") for r in requests) == ["evt_missed_1", "evt_missed_2"]
    assert all(r.header("X-Vocelio-Replay") == "true" for r in requests)
    replays = Delivery.objects.filter(pk__in=response.json()["deliveries"])
    assert all(d.is_replay and d.replay_of_id is None for d in replays)
    time.sleep(1)
    assert len(receiver.for_path("/late")) == 2


def test_endpoint_replay_only_failed_skips_received_events(api, receiver, worker):
    # given: one event delivered, one dead-lettered while the receiver was down
    since = timezone.now()
    receiver.script("/flaky", [200, 500, 200])
    endpoint = create_endpoint(api, receiver, path="/flaky", retry_policy=ONE_ATTEMPT)
    delivered = publish(api, event_id="evt_got_it")["deliveries"][0]["id"]
    delivery_when(api, delivered, "succeeded")
    lost = publish(api, event_id="evt_lost")["deliveries"][0]["id"]
    delivery_when(api, lost, "dead_lettered")
    path = f"/endpoints/{endpoint['id']}/replay"

    # when
    dry = api.post(path, {"since": since.isoformat(), "only_failed": True, "dry_run": True}, format="json")
    time.sleep(1)
    sent_after_dry_run = len(receiver.for_path("/flaky"))
    response = api.post(path, {"since": since.isoformat(), "only_failed": True}, format="json")
    again = api.post(path, {"since": since.isoformat(), "only_failed": True}, format="json")

    # then
    assert dry.status_code == 200
    assert dry.json() == {"replayed": 0, "matched": 1, "deliveries": [], "dry_run": True, "limit_reached": False}
    assert sent_after_dry_run == 2
    assert response.status_code == 202 and response.json()["replayed"] == 1
    assert again.json()["replayed"] == 0  # the replay is pending or delivered: nothing missing any more
    replay = receiver.wait_for(3, path="/flaky")[2]
    assert replay.header("X-Vocelio-Event-Id") == "evt_lost" and replay.header("X-Vocelio-Replay") == "true"
    replay_delivery = delivery_when(api, response.json()["deliveries"][0], "succeeded")
    assert replay_delivery["replay_of"] == lost
    assert Delivery.objects.get(pk=lost).status == "dead_lettered"


def test_endpoint_replay_limit_and_until(api, receiver, worker):
    # given
    since = timezone.now()
    for n in range(3):
        publish(api, event_id=f"evt_limit_{n}")
    until = timezone.now()
    publish(api, event_id="evt_after_until")
    endpoint = create_endpoint(api, receiver, path="/limited")

    # when
    response = api.post(f"/endpoints/{endpoint['id']}/replay",
                        {"since": since.isoformat(), "until": until.isoformat(), "limit": 2}, format="json")

    # then
    body = response.json()
    assert body["replayed"] == 2 and body["limit_reached"] is True
    requests = receiver.wait_for(2, path="/limited")
    assert sorted(r.header("X-Vocelio-Event-Id") for r in requests) == ["evt_limit_0", "evt_limit_1"]


@pytest.mark.parametrize("body, field", [
    ({}, "since"),
    ({"since": "2025-08-05T18:00:00Z", "until": "2025-08-05T17:00:00Z"}, "until"),
    ({"since": "2025-08-05T17:00:00Z", "limit": 10001}, "limit"),
    ({"since": "not a time"}, "since"),
])
def test_endpoint_replay_rejects_bad_body(api, body, field):
    # given
    endpoint = api.post("/endpoints", {"name": "r", "url": "https://example.com/hook", "events": ["*"]},
                        format="json").json()

    # when
    response = api.post(f"/endpoints/{endpoint['id']}/replay", body, format="json")

    # then
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]["fields"]


def test_endpoint_replay_refuses_disabled_endpoint(api):
    # given
    endpoint = api.post("/endpoints", {"name": "r", "url": "https://example.com/hook", "events": ["*"]},
                        format="json").json()
    api.put(f"/endpoints/{endpoint['id']}/status", {"status": "disabled", "reason": "gone"}, format="json")

    # when
    response = api.post(f"/endpoints/{endpoint['id']}/replay", {"since": "2025-08-05T17:00:00Z"}, format="json")
    missing = api.post("/endpoints/999999/replay", {"since": "2025-08-05T17:00:00Z"}, format="json")

    # then
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ENDPOINT_DISABLED"
    assert missing.status_code == 404


def test_replay_events_command_dry_run_then_replay(api, receiver, worker):
    # given
    since = timezone.now()
    publish(api, event_id="evt_cmd_1")
    publish(api, event_id="evt_cmd_2")
    endpoint = create_endpoint(api, receiver, path="/cmd")
    dry_out, out = io.StringIO(), io.StringIO()

    # when
    call_command("replay_events", "--since", since.isoformat(), "--dry-run", stdout=dry_out)
    time.sleep(1)
    sent_after_dry_run = len(receiver.for_path("/cmd"))
    call_command("replay_events", "--since", since.isoformat(), "--no-progress", stdout=out)

    # then
    assert "Would replay 2 delivery(ies) of 2 event(s) to 1 endpoint(s)." in dry_out.getvalue()
    assert f"endpoint {endpoint['id']}: 2" in dry_out.getvalue()
    assert sent_after_dry_run == 0
    assert "Replayed 2 of 2 delivery(ies)" in out.getvalue()
    requests = receiver.wait_for(2, path="/cmd")
    assert sorted(r.header("X-Vocelio-Event-Id") for r in requests) == ["evt_cmd_1", "evt_cmd_2"]
    assert all(r.header("X-Vocelio-Replay") == "true" for r in requests)


def test_replay_events_command_status_filter_and_endpoint(api, receiver, worker):
    # given: at one endpoint one event succeeded and one was dead-lettered; another endpoint got both
    receiver.script("/mixed", [200, 500, 200])
    mixed = create_endpoint(api, receiver, path="/mixed", retry_policy=ONE_ATTEMPT)
    create_endpoint(api, receiver, path="/healthy")
    delivery_when(api, publish(api, event_id="evt_ok")["deliveries"][0]["id"], "succeeded")
    published = publish(api, event_id="evt_dead")
    dead = next(d["id"] for d in published["deliveries"] if d["endpoint_id"] == mixed["id"])
    delivery_when(api, dead, "dead_lettered")
    receiver.wait_for(2, path="/healthy")
    out = io.StringIO()

    # when
    call_command("replay_events", "--event-id", "evt_ok", "--event-id", "evt_dead", "--status", "dead_lettered",
                 "--no-progress", stdout=out)

    # then
    assert "Replayed 1 of 1 delivery(ies)" in out.getvalue()
    replay = receiver.wait_for(3, path="/mixed")[2]
    assert replay.header("X-Vocelio-Event-Id") == "evt_dead" and replay.header("X-Vocelio-Replay") == "true"
    time.sleep(1)
    assert len(receiver.for_path("/healthy")) == 2
    assert Delivery.objects.get(is_replay=True).replay_of_id == dead


def test_replay_events_command_rejects_bad_options(api):
    # given
    endpoint = api.post("/endpoints", {"name": "r", "url": "https://example.com/hook", "events": ["*"]},
                        format="json").json()
    api.put(f"/endpoints/{endpoint['id']}/status", {"status": "disabled", "reason": "gone"}, format="json")

    # when / then
    with pytest.raises(CommandError, match="--since"):
        call_command("replay_events")
    with pytest.raises(CommandError, match="not an ISO-8601"):
        call_command("replay_events", "--since", "last tuesday")
    with pytest.raises(CommandError, match="disabled"):
        call_command("replay_events", "--since", "2025-08-05", "--endpoint", str(endpoint["id"]))
    with pytest.raises(CommandError, match="does not exist"):
        call_command("replay_events", "--since", "2025-08-05", "--endpoint", "999999")


def test_admin_replay_action_creates_replay_delivery(admin_client, api, receiver, worker):
    # given
    create_endpoint(api, receiver, path="/admin-replay")
    original = publish(api, event_id="evt_admin")["deliveries"][0]["id"]
    delivery_when(api, original, "succeeded")

    # when
    response = admin_client.post("/admin/deliveries/delivery/", {
        "action": "replay_selected", "_selected_action": [original],
    })

    # then
    assert response.status_code == 302
    replay = receiver.wait_for(2, path="/admin-replay")[1]
    assert replay.header("X-Vocelio-Replay") == "true" and replay.header("X-Vocelio-Event-Id") == "evt_admin"
    replayed = Delivery.objects.get(is_replay=True)
    assert replayed.replay_of_id == original
    assert admin_client.get(f"/admin/deliveries/delivery/{replayed.pk}/change/").status_code == 200
    assert admin_client.get("/admin/deliveries/delivery/", {"is_replay__exact": "1"}).context["cl"].result_count == 1


def test_deliveries_list_filters_replays(api, receiver, worker):
    # given
    create_endpoint(api, receiver)
    original = publish(api, event_id="evt_listed")["deliveries"][0]["id"]
    delivery_when(api, original, "succeeded")
    replay_id = api.post("/events/evt_listed/replay", {}, format="json").json()["deliveries"][0]

    # when
    replays = api.get("/deliveries", {"is_replay": "true"}).json()["results"]
    originals = api.get("/deliveries", {"is_replay": "false"}).json()["results"]

    # then
    assert [d["id"] for d in replays] == [replay_id]
    assert [d["id"] for d in originals] == [original]
    assert replays[0]["event_id"] == "evt_listed" and replays[0]["replay_of"] == original
    delivery_when(api, replay_id, "succeeded")
