"""``GET /events?event_type=``: patterns, as endpoint subscriptions use them."""
import pytest
from django.utils import timezone

from events.models import Event, EventType
from tests.conftest import assert_seed_error


@pytest.fixture
def stored_events(event_types):
    for event_id, name in (("evt_l1", "lead.created"), ("evt_l2", "lead.converted"),
                           ("evt_c1", "call.ended"), ("evt_a1", "appointment.scheduled")):
        Event.objects.create(event_id=event_id, event_type=EventType.objects.get(name=name), data={},
                             timestamp=timezone.now())


@pytest.mark.parametrize(("query", "expected"), [
    ("lead.created", {"evt_l1"}),
    ("lead.*", {"evt_l1", "evt_l2"}),
    ("lead.*,call.ended", {"evt_l1", "evt_l2", "evt_c1"}),
    (" call.ended , appointment.scheduled ", {"evt_c1", "evt_a1"}),
    ("*", {"evt_l1", "evt_l2", "evt_c1", "evt_a1"}),
    ("lead", set()),  # a prefix without ".*" is an exact name, as in subscriptions
    ("lea.*", set()),
    (",, ,", {"evt_l1", "evt_l2", "evt_c1", "evt_a1"}),  # blanks only: no filter
])
def test_events_list_filters_event_type_by_pattern(api, stored_events, query, expected):
    # when
    response = api.get("/events", {"event_type": query})

    # then
    assert response.status_code == 200
    assert {e["event_id"] for e in response.json()["results"]} == expected


@pytest.mark.parametrize("query", ["LEAD.*", "lead.%", "lead.*.x", "' OR 1=1 --", ",".join(["a.b"] * 101)])
def test_events_list_with_a_malformed_or_too_long_event_type_list_answers_400(api, stored_events, query):
    # when
    response = api.get("/events", {"event_type": query})

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(("values", "expected"), [
    (["lead.created", "call.ended"], {"evt_l1", "evt_c1"}),
    (["lead.*", "appointment.scheduled,call.ended"], {"evt_l1", "evt_l2", "evt_c1", "evt_a1"}),
    (["call.ended", ""], {"evt_c1"}),
])
def test_a_repeated_event_type_parameter_selects_any_of_its_values(api, stored_events, values, expected):
    # when: ?event_type=a&event_type=b (it used to mean b alone)
    response = api.get("/events", {"event_type": values})

    # then
    assert response.status_code == 200
    assert {e["event_id"] for e in response.json()["results"]} == expected


@pytest.mark.parametrize("values", [["lead.*", "LEAD.*"], [",".join(["a.b"] * 60), ",".join(["c.d"] * 41)]])
def test_every_value_of_a_repeated_event_type_parameter_is_validated(api, stored_events, values):
    # when: one bad value among good ones, or more than 100 patterns in all
    response = api.get("/events", {"event_type": values})

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
