"""Dead letters (issue 4): the dedicated list, bulk retry, discard, concurrent manual retries, the
``retry_deliveries`` command and the admin's dead-letter filter and discard action.

Dead letters are made the real way: an endpoint whose receiver answers 500 with a one-attempt
retry policy, delivered by the real worker. Retries are checked at the real receiver.
"""
import io
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from deliveries.models import Delivery, DeliveryAttempt
from tests.deliveries.test_delivery_flow import create_endpoint, delivery_when, publish

ONE_ATTEMPT = {"max_attempts": 1, "initial_delay_seconds": 1, "max_delay_seconds": 10, "backoff_multiplier": 2.0}


def dead_endpoint(api, receiver, path, answers=(500,), **fields):
    """An endpoint at ``path`` whose first answers are ``answers`` (then 200), one attempt each."""
    receiver.script(path, [*answers, 200])
    return create_endpoint(api, receiver, path=path, retry_policy=ONE_ATTEMPT, **fields)


def dead_letter(api, event_type="lead.created", **fields) -> int:
    """Publish one event and wait until its only delivery is dead-lettered; returns its id."""
    published = publish(api, event_type=event_type, **fields)
    delivery_id = published["deliveries"][0]["id"]
    delivery_when(api, delivery_id, "dead_lettered")
    return delivery_id


def test_dead_letters_list_shows_last_error_and_filters(api, receiver, worker):
    # given
    leads = dead_endpoint(api, receiver, "/leads-down", events=["lead.*"])
    calls = dead_endpoint(api, receiver, "/calls-down", answers=(503,), events=["call.*"])
    lead_dead = dead_letter(api, "lead.created")
    call_dead = dead_letter(api, "call.ended", data={"call": {"id": "call_1"}})
    receiver.script("/leads-down", [200])
    succeeded = publish(api, "lead.updated")["deliveries"][0]["id"]
    delivery_when(api, succeeded, "succeeded")

    # when
    everything = api.get("/deliveries/dead-letters")
    by_endpoint = api.get("/deliveries/dead-letters", {"endpoint": leads["id"]})
    by_type = api.get("/deliveries/dead-letters", {"event_type": "call.*"})
    by_types = api.get("/deliveries/dead-letters", {"event_type": "call.*,lead.created"})
    by_repeated = api.get("/deliveries/dead-letters", {"event_type": ["call.*", "lead.created"]})
    malformed = api.get("/deliveries/dead-letters", {"event_type": "lead.."})
    future = api.get("/deliveries/dead-letters", {"created_after": (timezone.now() + timedelta(hours=1)).isoformat()})
    updated_range = api.get("/deliveries/dead-letters", {
        "updated_after": (timezone.now() - timedelta(minutes=5)).isoformat(),
        "updated_before": (timezone.now() + timedelta(minutes=5)).isoformat(),
    })

    # then
    assert everything.status_code == 200
    rows = {row["id"]: row for row in everything.json()["results"]}
    assert set(rows) == {lead_dead, call_dead}
    lead_row = rows[lead_dead]
    assert lead_row["endpoint"] == leads["id"] and lead_row["endpoint_name"] == leads["name"]
    assert lead_row["event_type"] == "lead.created"
    assert lead_row["last_status_code"] == 500 and lead_row["last_error"].startswith("HTTP 500")
    assert lead_row["last_error_class"] == "http_500"
    assert lead_row["attempt_count"] == 1 and lead_row["dead_lettered_at"] is not None
    assert rows[call_dead]["last_status_code"] == 503 and rows[call_dead]["endpoint"] == calls["id"]
    assert [row["id"] for row in by_endpoint.json()["results"]] == [lead_dead]
    assert [row["id"] for row in by_type.json()["results"]] == [call_dead]
    assert {row["id"] for row in by_types.json()["results"]} == {lead_dead, call_dead}
    assert {row["id"] for row in by_repeated.json()["results"]} == {lead_dead, call_dead}
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "VALIDATION_ERROR"
    assert future.json()["results"] == []
    assert {row["id"] for row in updated_range.json()["results"]} == {lead_dead, call_dead}


def test_dead_letters_still_listed_by_status_filter(api, receiver, worker):
    # given
    dead_endpoint(api, receiver, "/down")
    delivery_id = dead_letter(api)

    # when
    response = api.get("/deliveries", {"status": "dead_lettered"})

    # then
    assert [row["id"] for row in response.json()["results"]] == [delivery_id]


def test_bulk_retry_resends_only_matching_dead_letters(api, receiver, worker):
    # given: two dead letters at one endpoint, one at another
    first = dead_endpoint(api, receiver, "/first", answers=(500, 500))
    dead_endpoint(api, receiver, "/second", events=["call.*"])
    first_ids = [dead_letter(api), dead_letter(api)]
    second_id = dead_letter(api, "call.ended", data={"call": {"id": "c1"}})

    # when
    response = api.post("/deliveries/retry", {"endpoint": first["id"]}, format="json")

    # then
    assert response.status_code == 202
    assert response.json() == {"matched": 2, "retried": 2, "dry_run": False}
    receiver.wait_for(4, path="/first")
    for delivery_id in first_ids:
        detail = delivery_when(api, delivery_id, "succeeded")
        assert [a["response_status_code"] for a in detail["attempts"]] == [500, 200]
    time.sleep(1)
    assert len(receiver.for_path("/second")) == 1
    assert Delivery.objects.get(pk=second_id).status == "dead_lettered"


def test_bulk_retry_dry_run_counts_and_sends_nothing(api, receiver, worker):
    # given
    dead_endpoint(api, receiver, "/down", answers=(500, 500))
    delivery_ids = [dead_letter(api), dead_letter(api)]
    sent_before = len(receiver.for_path("/down"))

    # when
    response = api.post("/deliveries/retry", {"dry_run": True}, format="json")

    # then
    assert response.status_code == 200
    assert response.json() == {"matched": 2, "retried": 0, "dry_run": True}
    time.sleep(1)
    assert len(receiver.for_path("/down")) == sent_before
    assert set(Delivery.objects.filter(pk__in=delivery_ids).values_list("status", flat=True)) == {"dead_lettered"}


def test_bulk_retry_limit_takes_oldest_first(api, receiver, worker):
    # given
    dead_endpoint(api, receiver, "/down", answers=(500, 500, 500))
    oldest, middle, newest = dead_letter(api), dead_letter(api), dead_letter(api)

    # when
    response = api.post("/deliveries/retry", {"limit": 2, "created_after": (timezone.now() - timedelta(minutes=5))
                                              .isoformat()}, format="json")

    # then
    assert response.json() == {"matched": 2, "retried": 2, "dry_run": False}
    delivery_when(api, oldest, "succeeded")
    delivery_when(api, middle, "succeeded")
    assert Delivery.objects.get(pk=newest).status == "dead_lettered"


def test_bulk_retry_includes_failed_only_when_asked(api, receiver, worker):
    # given: a failed delivery (400 is not retried) and a dead letter
    receiver.script("/bad", [400, 200])
    create_endpoint(api, receiver, path="/bad")
    failed = publish(api)["deliveries"][0]["id"]
    delivery_when(api, failed, "failed")

    # when
    default = api.post("/deliveries/retry", {}, format="json")
    with_failed = api.post("/deliveries/retry", {"status": ["dead_lettered", "failed"]}, format="json")

    # then
    assert default.json()["matched"] == 0
    assert with_failed.json() == {"matched": 1, "retried": 1, "dry_run": False}
    detail = delivery_when(api, failed, "succeeded")
    assert [a["response_status_code"] for a in detail["attempts"]] == [400, 200]


@pytest.mark.parametrize("body, field", [
    ({"status": ["succeeded"]}, "status"),
    ({"status": ["in_flight"]}, "status"),
    ({"limit": 10001}, "limit"),
    ({"limit": 0}, "limit"),
    ({"created_after": "2025-08-05T18:00:00Z", "created_before": "2025-08-05T17:00:00Z"}, "created_before"),
    ({"created_after": "yesterday"}, "created_after"),
    ({"event_type": "lead..x"}, "event_type"),
    ({"event_type": "LEAD.*"}, "event_type"),
    ({"event_type": ","}, "event_type"),
    ({"event_type": " , "}, "event_type"),
    ({"event_type": 5}, "event_type"),
])
def test_bulk_retry_rejects_bad_filters(api, body, field):
    # when
    response = api.post("/deliveries/retry", body, format="json")

    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and field in error["details"]["fields"]


def test_discard_dead_letter_cancels_it_and_keeps_attempts(api, receiver, worker):
    # given
    dead_endpoint(api, receiver, "/down")
    delivery_id = dead_letter(api)

    # when
    response = api.post(f"/deliveries/{delivery_id}/discard")
    again = api.post(f"/deliveries/{delivery_id}/discard")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled" and body["last_error"] == "Discarded by api-key:tests"
    assert DeliveryAttempt.objects.filter(delivery_id=delivery_id).count() == 1
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "DELIVERY_NOT_DISCARDABLE"
    assert again.json()["error"]["details"]["status"] == "cancelled"
    assert api.get("/deliveries/dead-letters").json()["results"] == []


def test_discard_refuses_succeeded_delivery(api, receiver, worker):
    # given
    create_endpoint(api, receiver)
    delivery_id = publish(api)["deliveries"][0]["id"]
    delivery_when(api, delivery_id, "succeeded")

    # when
    response = api.post(f"/deliveries/{delivery_id}/discard")

    # then
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "DELIVERY_NOT_DISCARDABLE"
    assert Delivery.objects.get(pk=delivery_id).status == "succeeded"


def test_discard_unknown_delivery_is_404(api):
    # when
    response = api.post("/deliveries/999999/discard")

    # then
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_deliveries_take_the_dlv_id_receivers_see(api, receiver, worker):
    # given: a dead letter, and the id its receiver saw in X-Vocelio-Delivery-Id
    dead_endpoint(api, receiver, "/down-dlv")
    delivery_id = dead_letter(api)
    seen = receiver.for_path("/down-dlv")[0].header("X-Vocelio-Delivery-Id")

    # when
    detail = api.get(f"/deliveries/{seen}")
    retried = api.post(f"/deliveries/retry/{seen}")
    delivery_when(api, delivery_id, "succeeded")
    discarded = api.post(f"/deliveries/{seen}/discard")
    unknown, malformed = api.get("/deliveries/dlv_999999"), api.get("/deliveries/dlv_x1")

    # then: the same delivery as by its number
    assert seen == f"dlv_{delivery_id}"
    assert detail.status_code == 200 and detail.json()["id"] == delivery_id
    assert retried.status_code == 202 and len(receiver.wait_for(2, "/down-dlv")) == 2
    assert discarded.status_code == 409 and discarded.json()["error"]["code"] == "DELIVERY_NOT_DISCARDABLE"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
    assert malformed.status_code == 404


def test_bulk_discard_by_event_type(api, receiver, worker):
    # given
    dead_endpoint(api, receiver, "/down", answers=(500, 500), events=["lead.*", "call.*"])
    lead = dead_letter(api, "lead.created")
    call = dead_letter(api, "call.ended", data={"call": {"id": "c1"}})

    # when
    dry = api.post("/deliveries/discard", {"event_type": "lead.created", "dry_run": True}, format="json")
    response = api.post("/deliveries/discard", {"event_type": "lead.created"}, format="json")
    refused = api.post("/deliveries/discard", {"status": ["cancelled"]}, format="json")

    # then
    assert dry.json() == {"matched": 1, "discarded": 0, "dry_run": True}
    assert response.status_code == 200
    assert response.json() == {"matched": 1, "discarded": 1, "dry_run": False}
    assert Delivery.objects.get(pk=lead).status == "cancelled"
    assert Delivery.objects.get(pk=lead).last_error == "Discarded by api-key:tests"
    assert Delivery.objects.get(pk=call).status == "dead_lettered"
    assert refused.status_code == 400


def test_manual_retry_of_discarded_delivery_sends_again(api, receiver, worker):
    # given
    dead_endpoint(api, receiver, "/down")
    delivery_id = dead_letter(api)
    api.post(f"/deliveries/{delivery_id}/discard")

    # when
    response = api.post(f"/deliveries/retry/{delivery_id}")

    # then
    assert response.status_code == 202
    detail = delivery_when(api, delivery_id, "succeeded")
    assert [a["response_status_code"] for a in detail["attempts"]] == [500, 200]


def _post_from_thread(api_key: str, path: str, barrier: threading.Barrier, results: list) -> None:
    from django.db import connection

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    try:
        barrier.wait(timeout=10)
        results.append(client.post(path).status_code)
    finally:
        connection.close()


def test_concurrent_manual_retries_of_one_delivery_send_once(api, api_key, receiver, worker):
    # given
    dead_endpoint(api, receiver, "/race")
    delivery_id = dead_letter(api)
    receiver.wait_for(1, path="/race")

    # when: two clients retry the same delivery at the same moment
    barrier, results = threading.Barrier(2), []
    threads = [threading.Thread(target=_post_from_thread,
                                args=(api_key, f"/deliveries/retry/{delivery_id}", barrier, results))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then: both calls were answered, at least one accepted, and exactly one extra request was sent
    assert sorted(results) in ([202, 202], [202, 409])
    receiver.wait_for(2, path="/race")
    detail = delivery_when(api, delivery_id, "succeeded")
    time.sleep(3)  # room for a second send, if the claim let one through
    assert len(receiver.for_path("/race")) == 2
    assert DeliveryAttempt.objects.filter(delivery_id=delivery_id).count() == 2
    assert detail["attempt_count"] == 2


def _attempt_from_thread(delivery_id: int, barrier: threading.Barrier, outcomes: list) -> None:
    from django.db import connection

    from deliveries import services as delivery_services

    try:
        barrier.wait(timeout=10)
        outcomes.append(delivery_services.attempt_delivery(delivery_id=delivery_id).status)
    finally:
        connection.close()


def test_attempt_delivery_concurrent_wake_ups_send_once(api, receiver, transactional_db):
    # given: a due delivery and no queued wake-up (no worker: the threads below are the workers)
    from events.models import Event, EventType

    endpoint = create_endpoint(api, receiver, path="/claim")
    event = Event.objects.create(event_id="evt_claim_1", event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={"lead": {"id": "l1"}}, environment="production")
    delivery = Delivery.objects.create(event=event, endpoint_id=endpoint["id"], next_attempt_at=timezone.now())
    barrier, outcomes = threading.Barrier(4), []

    # when: four wake-ups of the same delivery run at the same moment
    threads = [threading.Thread(target=_attempt_from_thread, args=(delivery.pk, barrier, outcomes)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then: one claimed and sent it, the others skipped
    assert sorted(outcomes) == ["skipped", "skipped", "skipped", "succeeded"]
    time.sleep(0.5)
    assert len(receiver.for_path("/claim")) == 1
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1


def test_retry_deliveries_command_dry_run_then_retry(api, receiver, worker):
    # given
    kept = dead_endpoint(api, receiver, "/kept")
    dead_endpoint(api, receiver, "/other", events=["call.*"])
    lead = dead_letter(api, "lead.created")
    call = dead_letter(api, "call.ended", data={"call": {"id": "c1"}})
    dry_out, out = io.StringIO(), io.StringIO()

    # when
    call_command("retry_deliveries", "--endpoint", str(kept["id"]), "--dry-run", stdout=dry_out)
    after_dry_run = Delivery.objects.get(pk=lead).status
    call_command("retry_deliveries", "--endpoint", str(kept["id"]), "--no-progress", stdout=out)

    # then
    assert "Would retry 1 delivery(ies)." in dry_out.getvalue()
    assert f"endpoint {kept['id']}, dead_lettered: 1" in dry_out.getvalue()
    assert after_dry_run == "dead_lettered"
    assert "Retried 1 of 1 delivery(ies)." in out.getvalue()
    detail = delivery_when(api, lead, "succeeded")
    assert [a["response_status_code"] for a in detail["attempts"]] == [500, 200]
    assert Delivery.objects.get(pk=call).status == "dead_lettered"


def test_retry_deliveries_command_time_range_and_bad_options(api, receiver, worker):
    # given
    dead_endpoint(api, receiver, "/down")
    delivery_id = dead_letter(api)
    out = io.StringIO()

    # when
    call_command("retry_deliveries", "--since", "2000-01-01", "--until", "2000-01-02", stdout=out)

    # then
    assert "Retried 0 of 0" in out.getvalue()
    assert Delivery.objects.get(pk=delivery_id).status == "dead_lettered"
    with pytest.raises(CommandError):
        call_command("retry_deliveries", "--status", "succeeded")
    with pytest.raises(CommandError):
        call_command("retry_deliveries", "--since", "not a time")
    for bad in ("lead..", "LEAD.*", ",", " , "):  # malformed, or no pattern at all ("*" is all)
        with pytest.raises(CommandError, match=r"event.type"):
            call_command("retry_deliveries", "--event-type", bad)
    assert Delivery.objects.get(pk=delivery_id).status == "dead_lettered"


def test_admin_dead_letter_filter_and_discard_action(admin_client, api, receiver, worker):
    # given
    dead_endpoint(api, receiver, "/down")
    dead = dead_letter(api)
    receiver.script("/down", [200])
    succeeded = publish(api)["deliveries"][0]["id"]
    delivery_when(api, succeeded, "succeeded")

    # when
    listed = admin_client.get("/admin/deliveries/delivery/", {"dead_letter": "all"})
    action = admin_client.post("/admin/deliveries/delivery/", {
        "action": "discard_selected", "_selected_action": [dead, succeeded],
    })

    # then
    assert listed.status_code == 200
    assert [d.pk for d in listed.context["cl"].result_list] == [dead]
    assert action.status_code == 302
    discarded = Delivery.objects.get(pk=dead)
    assert discarded.status == "cancelled" and discarded.last_error == "Discarded by user:admin"
    assert Delivery.objects.get(pk=succeeded).status == "succeeded"


@pytest.mark.parametrize("path", ["/deliveries/" + "1" * 4301, "/deliveries/dlv_" + "1" * 4301,
                                  "/deliveries/99999999999999999999", "/deliveries/dlv_9223372036854775807"])
def test_delivery_ids_too_long_for_a_bigint_are_404(api, path):
    # when
    response = api.get(path)

    # then: not found, not a 500 from int() or the database
    assert response.status_code == 404


def test_retry_of_a_delivery_id_too_long_for_a_bigint_is_404(api):
    # when
    response = api.post("/deliveries/retry/" + "1" * 4301)

    # then
    assert response.status_code == 404
