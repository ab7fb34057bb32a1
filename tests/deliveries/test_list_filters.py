"""``GET /deliveries?event_type=``: the patterns of ``GET /events``, repeatable."""
import pytest
from django.utils import timezone

from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from tests.conftest import assert_seed_error


@pytest.fixture
def deliveries(event_types):
    endpoint = WebhookEndpoint.objects.create(name="crm", url="https://example.com/hook", events=["*"])
    made = {}
    for event_id, name in (("evt_l1", "lead.created"), ("evt_c1", "call.ended"), ("evt_a1", "appointment.scheduled")):
        event = Event.objects.create(event_id=event_id, event_type=EventType.objects.get(name=name), data={},
                                     timestamp=timezone.now())
        made[event_id] = Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=timezone.now()).pk
    return made


@pytest.mark.parametrize(("query", "expected"), [
    ({"event_type": "lead.*,call.ended"}, {"evt_l1", "evt_c1"}),
    ({"event_type": ["lead.*", "call.ended"]}, {"evt_l1", "evt_c1"}),
    ({"event_type": ["appointment.*"], "status": ["pending"]}, {"evt_a1"}),
])
def test_deliveries_list_takes_repeated_and_comma_separated_event_types(api, deliveries, query, expected):
    # when
    response = api.get("/deliveries", query)

    # then
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {deliveries[event_id] for event_id in expected}


def test_deliveries_list_refuses_a_bad_value_among_repeated_event_types(api, deliveries):
    # when
    response = api.get("/deliveries", {"event_type": ["lead.*", "lead.."]})

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
