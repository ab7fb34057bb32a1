"""``in`` / ``not_in`` value lists are bounded (``endpoints.filters.MAX_IN_VALUES`` per list,
``MAX_IN_VALUES_TOTAL`` for all lists of one filter). Before, 25 ``not_in`` conditions of 9,000
values each were accepted and made every publish of that type take 125-184 ms instead of 7-12 ms;
a 100,000-value list was accepted too. Now 400 ``INVALID_FILTER`` naming the condition."""
import pytest

from endpoints.filters import MAX_IN_VALUES, MAX_IN_VALUES_TOTAL
from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error


def _condition(operator: str, count: int, start: int = 0) -> dict:
    values = [f"id-{n}" for n in range(start, start + count)]
    return {"field_path": "data.lead.id", "operator": operator, "value": values}


def _endpoint(filters) -> dict:
    return {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"], "filters": filters}


@pytest.mark.django_db
@pytest.mark.parametrize(("filters", "location"), [
    pytest.param([_condition("in", MAX_IN_VALUES + 1)], "all[0]", id="501-in"),
    pytest.param([_condition("not_in", 100_000)], "all[0]", id="100000-not_in"),
    pytest.param({"any": [_condition("equals", 0) | {"value": "x"}, _condition("not_in", MAX_IN_VALUES + 1)]},
                 "any[1]", id="nested-in-group"),
    pytest.param([_condition("not_in", MAX_IN_VALUES, start=n * MAX_IN_VALUES)
                  for n in range(MAX_IN_VALUES_TOTAL // MAX_IN_VALUES + 1)],
                 f"all[{MAX_IN_VALUES_TOTAL // MAX_IN_VALUES}]", id="over-the-total"),
])
def test_create_endpoint_refuses_oversized_in_lists_naming_the_condition(api, filters, location):
    # when
    response = api.post("/endpoints", _endpoint(filters), format="json")

    # then
    error = assert_seed_error(response, 400, "INVALID_FILTER")
    assert error["details"]["location"] == location
    assert location in error["message"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_create_endpoint_accepts_in_lists_up_to_the_limits(api):
    # given: every list at the per-list cap, together exactly at the total cap
    filters = [_condition("not_in", MAX_IN_VALUES, start=n * MAX_IN_VALUES)
               for n in range(MAX_IN_VALUES_TOTAL // MAX_IN_VALUES)]

    # when
    response = api.post("/endpoints", _endpoint(filters), format="json")

    # then
    assert response.status_code == 201, response.content
    assert WebhookEndpoint.objects.get().filters == filters


@pytest.mark.django_db
def test_update_endpoint_refuses_oversized_in_list_and_keeps_the_old_filter(api):
    # given
    small = [_condition("in", 3)]
    endpoint_id = api.post("/endpoints", _endpoint(small), format="json").json()["id"]

    # when
    response = api.patch(f"/endpoints/{endpoint_id}", {"filters": [_condition("in", 9_000)]}, format="json")

    # then
    assert_seed_error(response, 400, "INVALID_FILTER")
    assert WebhookEndpoint.objects.get().filters == small


@pytest.mark.django_db
@pytest.mark.parametrize(("operator", "lead", "matched"), [("in", "lead_7", 1), ("not_in", "lead_9999", 1),
                                                           ("not_in", "lead_7", 0)])
def test_a_stored_filter_over_the_caps_still_routes_as_before(event_types, operator, lead, matched):
    # given: a row stored before the caps existed (600 values; save() does not validate)
    from events import services as event_services

    endpoint = WebhookEndpoint.objects.create(
        name="crm", url="https://crm.example.com/hooks", events=["lead.*"],
        filters=[{"field_path": "data.lead.id", "operator": operator,
                  "value": [f"lead_{n}" for n in range(MAX_IN_VALUES + 100)]}])

    # when
    result = event_services.publish(event_type="lead.created", data={"lead": {"id": lead}},
                                    environment=endpoint.environment)

    # then: the caps bind new saves only; the stored filter decides as it did
    assert result.matched_endpoints == matched
