"""``POST /endpoints/{id}/filters/test`` takes the sample event as ``POST /events/publish`` does:
``event_type`` (and ``event_id``, ``timestamp``) must be JSON strings. Before, ``{"event_type": 5}``
answered 200 (DRF turned 5 into "5") while publish refused it."""
import pytest

from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error


@pytest.fixture
def endpoint(api) -> dict:
    response = api.post("/endpoints", {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["*"]},
                        format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value"), [
    ("event_type", 5), ("event_type", 1.5), ("event_type", True), ("event_type", ["lead.created"]),
    ("event_id", 12), ("timestamp", 1754415000),
])
def test_filter_test_refuses_non_string_like_publish(api, endpoint, field, value):
    # given
    body = {"event_type": "lead.created", "data": {}, field: value}

    # when
    tested = api.post(f"/endpoints/{endpoint['id']}/filters/test", body, format="json")
    published = api.post("/events/publish", {"event_type": "lead.created", "data": {}, field: value}, format="json")

    # then
    error = assert_seed_error(tested, 400, "VALIDATION_ERROR")
    assert "string" in error["details"]["fields"][field][0]
    if field != "timestamp":  # publish takes a timestamp as a date-time string and refuses the number its own way
        assert_seed_error(published, 400, "VALIDATION_ERROR")
    assert WebhookEndpoint.objects.get().updated_at.isoformat().replace("+00:00", "Z") == endpoint["updated_at"]


@pytest.mark.django_db
def test_filter_test_still_answers_for_a_string_event_type(api, endpoint):
    # when
    response = api.post(f"/endpoints/{endpoint['id']}/filters/test", {"event_type": "lead.created"}, format="json")

    # then
    assert response.status_code == 200, response.content
    assert response.json()["matched"] is True
