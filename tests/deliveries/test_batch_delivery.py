"""Batch delivery (issue 7): an endpoint with ``batch_max_events`` > 1 gets several due events in
one request as a JSON array, signed once over the array; a ``413`` answer splits the batch."""
import base64
import hashlib
import hmac
import json
import secrets

import pytest

from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import WebhookEndpoint
from events.models import Event
from tests.conftest import assert_seed_error, due_deliveries, wait_until

SECRET = "whsec_batch_delivery_secret_0123456789"


def _endpoint(receiver, name, **fields) -> WebhookEndpoint:
    fields.setdefault("events", ["lead.*"])
    return WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"), secret=SECRET, **fields)


def _due(endpoint, count) -> list[Delivery]:
    return due_deliveries([endpoint], count, prefix="evt_b")


def _drain() -> None:
    """Run batches in this process until nothing due is left (bounded), then wait for the stores."""
    for _ in range(20):
        if delivery_services.deliver_due_batch().claimed == 0:
            break
    wait_until(lambda: not Delivery.objects.filter(status="in_flight").exists())


def _signed(request) -> bool:
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    return request.header("X-Vocelio-Signature") == f"sha256={expected}"


def test_batch_endpoint_gets_events_as_signed_json_arrays(transactional_db, event_types, receiver):
    # given: 25 due events for an endpoint batching up to 10
    endpoint = _endpoint(receiver, "analytics", batch_max_events=10)
    deliveries = _due(endpoint, 25)

    # when
    _drain()

    # then: three requests (10, 10, 5), each a signed JSON array of envelopes
    requests = receiver.for_path("/analytics")
    assert sorted(len(r.json()) for r in requests) == [5, 10, 10]
    for request in requests:
        assert request.header("Content-Type") == "application/json"
        assert request.header("X-Vocelio-Batch-Size") == str(len(request.json()))
        assert request.header("X-Vocelio-Batch-Id").startswith("bat_")
        assert request.header("X-Vocelio-Event-Type") == "lead.created"
        assert _signed(request)
    received = [element["event_id"] for r in requests for element in r.json()]
    assert sorted(received) == sorted(d.event.event_id for d in deliveries)
    element = requests[0].json()[0]
    assert set(element) == {"event_type", "event_id", "timestamp", "data", "metadata"}
    # ... and every delivery succeeded with one attempt row recording the request it rode in
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert DeliveryAttempt.objects.count() == 25
    for attempt in DeliveryAttempt.objects.select_related("delivery__event"):
        assert attempt.response_status_code == 200 and attempt.attempt_number == 1
        assert attempt.delivery.event.event_id in {e["event_id"] for e in json.loads(attempt.request_body)}


def test_413_answer_splits_a_batch_until_the_receiver_accepts(transactional_db, event_types, receiver):
    # given: 12 due events; the receiver refuses the first two requests as too large
    endpoint = _endpoint(receiver, "small", batch_max_events=12)
    deliveries = _due(endpoint, 12)
    receiver.script("/small", [(413, {}, b"Payload Too Large"), (413, {}, b"Payload Too Large"), 200])

    # when
    _drain()

    # then: 12 (413) → 6 (413) → 3 + 3, then the other 6; each part says which batch it split
    requests = receiver.for_path("/small")
    assert [len(r.json()) for r in requests] == [12, 6, 3, 3, 6]
    first_id = requests[0].header("X-Vocelio-Batch-Id")
    assert requests[1].header("X-Vocelio-Batch-Split-From") == first_id
    assert requests[4].header("X-Vocelio-Batch-Split-From") == first_id
    assert requests[2].header("X-Vocelio-Batch-Split-From") == requests[1].header("X-Vocelio-Batch-Id")
    assert all(_signed(r) for r in requests)
    assert sorted(e["event_id"] for r in requests[2:] for e in r.json()) == sorted(d.event.event_id for d in deliveries)
    # ... the split spent no attempt: one successful attempt per delivery, with the part that succeeded
    assert set(Delivery.objects.values_list("status", "attempt_count")) == {("succeeded", 1)}
    assert DeliveryAttempt.objects.count() == 12
    sizes = sorted(attempt.request_headers["X-Vocelio-Batch-Size"] for attempt in DeliveryAttempt.objects.all())
    assert sizes == ["3"] * 6 + ["6"] * 6


def test_413_answer_to_a_single_event_of_a_batching_endpoint_is_a_failure(transactional_db, event_types, receiver):
    # given: one due event, and a receiver that finds it too large
    endpoint = _endpoint(receiver, "tiny", batch_max_events=10)
    _due(endpoint, 1)
    receiver.script("/tiny", [(413, {}, b"Payload Too Large")])

    # when
    _drain()

    # then: one request, not retried (413 is not in the retry policy), one attempt recorded
    assert len(receiver.for_path("/tiny")) == 1
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == ("failed", 1, 413)
    assert DeliveryAttempt.objects.get().error_class == "http_413"


def test_batch_endpoint_failure_counts_once_for_the_circuit_breaker(transactional_db, event_types, receiver):
    # given: 5 due events to a batching endpoint whose receiver fails
    endpoint = _endpoint(receiver, "down", batch_max_events=10)
    _due(endpoint, 5)
    receiver.script("/down", [500])

    # when
    delivery_services.deliver_due_batch()
    wait_until(lambda: not Delivery.objects.filter(status="in_flight").exists())

    # then: one request failed, five deliveries retrying, one failure on the endpoint's record
    assert len(receiver.for_path("/down")) == 1
    assert set(Delivery.objects.values_list("status", flat=True)) == {"retrying"}
    endpoint.health.refresh_from_db()
    assert endpoint.health.consecutive_failures == 1


def test_text_template_endpoint_is_not_batched(transactional_db, event_types, receiver):
    # given: a batching endpoint whose payload is a text template (cannot be an array element)
    endpoint = _endpoint(receiver, "text", batch_max_events=10,
                         transformation={"body": "lead {{ event_id }}", "content_type": "text/plain"})
    _due(endpoint, 3)

    # when
    _drain()

    # then: one plain-text request per event, as without batching
    requests = receiver.for_path("/text")
    assert len(requests) == 3
    assert all(r.body.startswith(b"lead evt_b_") and r.header("X-Vocelio-Batch-Size") is None for r in requests)


def test_published_events_reach_a_batching_endpoint_once_each(api, receiver, worker):
    # given
    response = api.post("/endpoints", {"name": "bulk", "url": receiver.url("/bulk"), "events": ["lead.*"],
                                       "batch_max_events": 10, "secret": SECRET}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["batch_max_events"] == 10

    # when: 25 events published one by one while the worker delivers
    published = [api.post("/events/publish", {"event_type": "lead.created", "data": {"n": n}}, format="json")
                 for n in range(25)]

    # then: every event arrives exactly once, inside JSON arrays of at most 10, each signed
    event_ids = sorted(p.json()["event_id"] for p in published)

    def received():
        return [e["event_id"] for r in receiver.for_path("/bulk") for e in r.json()]

    wait_until(lambda: len(received()) >= 25, timeout=30)
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 25, timeout=30)
    assert sorted(received()) == event_ids
    requests = receiver.for_path("/bulk")
    assert all(isinstance(r.json(), list) and 1 <= len(r.json()) <= 10 and _signed(r) for r in requests)
    assert DeliveryAttempt.objects.count() == 25


@pytest.mark.parametrize("value", [0, 101, "many"])
def test_endpoint_api_refuses_batch_max_events_out_of_range(api, value):
    # when
    response = api.post("/endpoints", {"name": "bad", "url": "https://example.com/hook", "events": ["lead.*"],
                                       "batch_max_events": value}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "batch_max_events" in json.dumps(error["details"])


def test_batch_stays_within_the_body_size_limit(transactional_db, event_types, receiver, settings):
    # given: a body limit of 1,000 bytes and 6 events of about 350 bytes each
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    endpoint = _endpoint(receiver, "sized", batch_max_events=10)
    deliveries = _due(endpoint, 6)
    Event.objects.filter(pk__in=[d.event_id for d in deliveries]).update(data={"notes": "x" * 200})

    # when
    _drain()

    # then: arrays of two (three would pass 1,000 bytes), every event once
    requests = receiver.for_path("/sized")
    assert [len(r.json()) for r in requests] == [2, 2, 2]
    assert all(len(r.body) <= 1000 for r in requests)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_standard_webhooks_batch_verifies_with_the_batch_id(transactional_db, event_types, receiver):
    # given: a Standard Webhooks endpoint batching up to 5, and 3 due events
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    endpoint = WebhookEndpoint.objects.create(name="std", url=receiver.url("/std"), events=["lead.*"], secret=secret,
                                              signature_method="standard_webhooks", batch_max_events=5)
    _due(endpoint, 3)

    # when
    _drain()

    # then: the array verifies with the standardwebhooks package; webhook-id is the batch id
    request = receiver.for_path("/std")[0]
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert Webhook(secret).verify(request.body, headers) == request.json()
    assert len(request.json()) == 3
    assert headers["webhook-id"] == headers["x-vocelio-batch-id"]
