"""Numbers and lists on endpoints: one documented range message per field for every value out of
range (``endpoints.models.number_ranges``), ``retry_on_status_codes`` without successes or
duplicates, ``events`` without duplicates, at most 100 patterns, and exact event types that
exist (400 ``UNKNOWN_EVENT_TYPE``; wildcards always pass). Before, ``timeout_seconds`` 61 said
"between 1 and 60" but ``10**30`` "less than or equal to 9223372036854775807";
``rate_limit_per_minute`` -5 said "≥ 0" but 0 "at least 1"; ``[200, 201]`` and 1,500 duplicate
codes were stored, so were 10,000 duplicate events and ``["lead.creatd"]``, which never matches."""
import pytest
from django.core.exceptions import ValidationError

from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error

BIG = 10**30
THOUSAND_DIGITS = int("9" * 1500)  # past DRF's 1,000-character limit for integers, under Python's 4,300 digits


def _endpoint(**fields) -> dict:
    return {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"], **fields}


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value", "message"), [
    *[("timeout_seconds", value, "Must be between 1 and 60 seconds.") for value in (0, -1, 61, BIG, THOUSAND_DIGITS)],
    *[("rate_limit_per_minute", value,
       "Must be between 1 and 100000 requests per minute, or null for no limit.")
      for value in (-5, 0, 100_001, BIG, -BIG)],
    *[("batch_max_events", value, "Must be between 1 and 100 events.") for value in (0, -3, 101, BIG)],
])
def test_create_endpoint_gives_one_range_message_per_number_field(api, field, value, message):
    # when
    response = api.post("/endpoints", _endpoint(**{field: value}), format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert error["details"]["fields"] == {field: [message]}
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_create_endpoint_accepts_the_bounds_of_each_range(api):
    # when
    low = api.post("/endpoints", _endpoint(timeout_seconds=1, rate_limit_per_minute=1, batch_max_events=1),
                   format="json")
    high = api.post("/endpoints", _endpoint(timeout_seconds=60, rate_limit_per_minute=100_000, batch_max_events=100),
                    format="json")
    unlimited = api.post("/endpoints", _endpoint(rate_limit_per_minute=None), format="json")

    # then
    assert [low.status_code, high.status_code, unlimited.status_code] == [201, 201, 201]
    assert WebhookEndpoint.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(("codes", "words"), [
    pytest.param([200, 201], "holds 200", id="successes"),
    pytest.param([500, 204], "holds 204", id="one-success"),
    pytest.param([100], "holds 100", id="informational"),
    pytest.param([500] * 1500, "at most 100", id="1500-duplicates"),
    pytest.param([500, 502, 500], "500 more than once", id="duplicate"),
    pytest.param(list(range(400, 501)), "at most 100", id="101-codes"),
])
def test_create_endpoint_refuses_bad_retry_status_codes(api, codes, words):
    # given
    body = _endpoint(retry_policy={"retry_on_status_codes": codes})

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert words in error["details"]["fields"]["retry_policy"][0]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("events", "words"), [
    pytest.param(["lead.created"] * 10_000, "at most 100", id="10000-duplicates"),
    pytest.param(["lead.created", "lead.*", "lead.created"], "more than once", id="duplicate"),
    pytest.param([f"area{n}.*" for n in range(101)], "at most 100", id="101-patterns"),
])
def test_create_endpoint_refuses_duplicate_or_too_many_event_patterns(api, events, words):
    # when
    response = api.post("/endpoints", _endpoint(events=events), format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert words in error["details"]["fields"]["events"][0]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("events", [["lead.creatd"], ["lead.*", "lead.creatd"], ["lead.created", "nope.never"]])
def test_create_endpoint_refuses_unknown_exact_event_type(api, events):
    # when
    response = api.post("/endpoints", _endpoint(events=events), format="json")

    # then
    error = assert_seed_error(response, 400, "UNKNOWN_EVENT_TYPE")
    assert error["details"]["event_type"] == events[-1]
    assert events[-1] in error["message"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_create_endpoint_accepts_wildcards_for_categories_without_types(api):
    # given: wildcards are patterns, not names; a category may get its types later
    events = ["*", "lead.*", "future_category.*"]

    # when
    response = api.post("/endpoints", _endpoint(events=events), format="json")

    # then
    assert response.status_code == 201, response.content
    assert WebhookEndpoint.objects.get().events == events


@pytest.mark.django_db
def test_update_endpoint_keeps_an_unknown_type_it_already_had(api):
    # given: a row stored before the rule (or whose type went away since)
    endpoint = WebhookEndpoint.objects.create(name="Old", url="https://crm.example.com/hooks",
                                              events=["lead.created", "legacy.type"], environment="development")

    # when
    renamed = api.patch(f"/endpoints/{endpoint.pk}", {"name": "Renamed"}, format="json")
    same_events = api.patch(f"/endpoints/{endpoint.pk}", {"events": ["legacy.type"]}, format="json")
    added = api.patch(f"/endpoints/{endpoint.pk}", {"events": ["legacy.type", "lead.creatd"]}, format="json")

    # then
    assert (renamed.status_code, same_events.status_code) == (200, 200)
    assert_seed_error(added, 400, "UNKNOWN_EVENT_TYPE")
    assert WebhookEndpoint.objects.get().events == ["legacy.type"]


@pytest.mark.django_db
def test_full_clean_refuses_unknown_event_type_for_the_admin(event_types):
    # given: the admin's form validates with full_clean, not with the API serializer
    endpoint = WebhookEndpoint(name="CRM", url="https://crm.example.com/hooks", events=["lead.creatd"],
                               environment="development", secret="whsec_" + "a" * 32)

    # when / then
    with pytest.raises(ValidationError) as caught:
        endpoint.full_clean()
    assert "lead.creatd" in caught.value.message_dict["events"][0]
