"""A replay racing an endpoint delete (PostgreSQL, two sessions): either the replay commits first
and the delete then detaches its delivery like any other of the endpoint's, or the delete commits
first and the replay answers as for a missing endpoint. Never a 500 (the replay's foreign key
failing at commit) and never a half-written replay. Found in review."""
import pytest
from django.db import connection
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery
from endpoints import services as endpoint_services
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from tests.conftest import assert_seed_error
from tests.races import hold_in_transaction
from vocelio_webhooks.models import AuditLogEntry


@pytest.fixture(autouse=True)
def _postgresql_only(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("needs row locks and two concurrent writers (SQLite has one writer at a time)")


@pytest.fixture
def endpoint(event_types) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name="crm", url="https://crm.example.com/hook", events=["lead.*"])


@pytest.fixture
def event(event_types) -> Event:
    return Event.objects.create(event_id="evt_race", event_type=EventType.objects.get(name="lead.created"),
                                timestamp=timezone.now(), data={"lead": {"id": 1}}, environment="production")


def _delete(pk: int) -> None:
    endpoint_services.delete_endpoint(endpoint=WebhookEndpoint.objects.get(pk=pk))


@pytest.mark.parametrize("route, body, status_code, code", [
    ("/events/evt_race/replay", {"endpoint": "{pk}"}, 400, "VALIDATION_ERROR"),
    ("/endpoints/{pk}/replay", {"since": "2000-01-01T00:00:00Z"}, 404, "NOT_FOUND"),
])
def test_replay_to_an_endpoint_being_deleted_answers_as_for_a_missing_endpoint(
        api, endpoint, event, route, body, status_code, code):
    # given: a delete of the endpoint has locked and deleted its row, not yet committed
    api.raise_request_exception = False  # see the 500 a client would get
    held = hold_in_transaction(lambda: _delete(endpoint.pk))

    # when: a replay to it is asked for meanwhile (its reads still see the endpoint)
    body = {k: endpoint.pk if v == "{pk}" else v for k, v in body.items()}
    response = api.post(route.format(pk=endpoint.pk), body, format="json")
    outcome = held.join()

    # then: the delete won, the replay answers as for a missing endpoint and wrote nothing
    assert "error" not in outcome and outcome["blocked"], outcome
    error = assert_seed_error(response, status_code, code)
    if code == "VALIDATION_ERROR":
        assert "endpoint" in error["details"]["fields"]
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not Delivery.objects.filter(is_replay=True).exists()
    assert not AuditLogEntry.objects.filter(action="replay").exists()


def test_replay_to_every_endpoint_skips_one_being_deleted(api, endpoint, event):
    # given
    api.raise_request_exception = False
    other = WebhookEndpoint.objects.create(name="erp", url="https://erp.example.com/hook", events=["lead.*"])
    held = hold_in_transaction(lambda: _delete(endpoint.pk))

    # when
    response = api.post("/events/evt_race/replay", {}, format="json")
    outcome = held.join()

    # then: the replay went to the endpoint that is left, as a publish would route now
    assert "error" not in outcome and outcome["blocked"], outcome
    assert response.status_code == 202, response.content
    assert response.json()["replayed"] == 1
    assert list(Delivery.objects.filter(is_replay=True).values_list("endpoint_id", flat=True)) == [other.pk]


def test_endpoint_delete_waits_for_a_replay_in_progress_and_detaches_its_delivery(api, endpoint, event):
    # given: a replay to the endpoint has written its delivery, not yet committed
    api.raise_request_exception = False
    held = hold_in_transaction(lambda: delivery_services.replay_event(
        event=event, endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk)).delivery_ids)

    # when: the endpoint is deleted meanwhile
    response = api.delete(f"/endpoints/{endpoint.pk}")
    outcome = held.join()

    # then: the replay committed first, then the delete went through and kept the replay as
    # history with its endpoint set to null, as every delivery of a deleted endpoint
    assert "error" not in outcome and outcome["blocked"], outcome
    assert response.status_code == 204, response.content
    [replay_id] = outcome["result"]
    replay = Delivery.objects.get(pk=replay_id)
    assert (replay.is_replay, replay.endpoint_id) == (True, None)
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
