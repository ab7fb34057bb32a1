"""Bugs found by walking the README on a clean clone: a NUL character half-writing an event type
on PostgreSQL, a staging key reading a production event through the duplicate answer, and
replays counted in a duplicate answer."""
import pytest
from rest_framework.test import APIClient

from deliveries.models import Delivery
from events import services as event_services
from events.models import Event, EventType
from tests.conftest import assert_seed_error
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.models import AuditLogEntry


def _endpoint(api, name: str, environment: str = "production") -> int:
    created = api.post("/endpoints", {"name": name, "url": f"https://{name}.example.com/hook", "events": ["lead.*"],
                                      "environment": environment}, format="json")
    assert created.status_code == 201, created.content
    return created.json()["id"]


def _client(*, scopes: list[str], environments: list[str] | None = None) -> APIClient:
    raw = audit_services.create_api_key(name="walk", scopes=scopes, environments=environments).raw_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


# --- NUL characters and half writes -----------------------------------------------------------
def test_create_event_type_with_nul_in_sample_data_is_refused_and_writes_nothing(api):
    # given
    audit_before = AuditLogEntry.objects.count()

    # when
    response = api.post("/event-types", {"name": "billing.nul", "category": "billing",
                                         "sample_data": {"a": "x\u0000y"}}, format="json")
    nested_key = api.post("/event-types", {"name": "billing.nul_key", "category": "billing",
                                           "sample_data": {"items": [{"k\u0000": 1}]}}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert error["details"]["fields"]["sample_data"] == [
        "Contains a NUL character (\\u0000) at a; it cannot be stored."]
    assert_seed_error(nested_key, 400, "VALIDATION_ERROR")
    assert not EventType.objects.filter(name__in=["billing.nul", "billing.nul_key"]).exists()
    assert AuditLogEntry.objects.count() == audit_before


def test_create_event_type_writes_nothing_when_its_audit_entry_fails(api, audit_entries_refused):
    # given: the database refuses every audit entry (a real failure after the event type INSERT)
    api.raise_request_exception = False

    # when
    response = api.post("/event-types", {"name": "billing.audited", "category": "billing"}, format="json")

    # then
    assert response.status_code == 500
    assert not EventType.objects.filter(name="billing.audited").exists()


def test_record_audit_stores_a_nul_character_as_the_replacement_character(db):
    # given
    event_type = EventType.objects.create(name="billing.legacy", category="billing", sample_data={"a": "x\u0000y"})

    # when
    entry = audit_services.record_audit(actor="command:test", action="create", obj=event_type)

    # then: stored (jsonb refuses \u0000 on PostgreSQL), with U+FFFD where the NUL was
    entry.refresh_from_db()
    assert entry.changes["sample_data"] == {"new": {"a": "x\ufffdy"}}


def test_publish_with_nul_in_data_is_stored_as_sent(api):
    # given: Event.data is a text column (OrderedJSONField), which holds the \u0000 escape
    _endpoint(api, "nul")

    # when
    response = api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt_nul",
                                            "data": {"note": "a\u0000b"}}, format="json")

    # then
    assert response.status_code == 202, response.content
    assert Event.objects.get(event_id="evt_nul").data == {"note": "a\u0000b"}


# --- the duplicate answer ---------------------------------------------------------------------
def test_publish_existing_event_id_into_another_environment_is_a_conflict_revealing_nothing(api):
    # given: an event published in production, and a key limited to staging
    _endpoint(api, "prod")
    _endpoint(api, "stage", environment="staging")
    first = api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt_prod_1",
                                         "data": {"secret": "production"}}, format="json")
    assert first.status_code == 202, first.content
    staging = _client(scopes=["events:publish"], environments=["staging"])
    events_before, deliveries_before = Event.objects.count(), Delivery.objects.count()

    # when
    response = staging.post("/events/publish", {"event_type": "lead.created", "environment": "staging",
                                                "event_id": "evt_prod_1", "data": {}}, format="json")

    # then
    error = assert_seed_error(response, 409, "EVENT_ID_CONFLICT")
    text = response.content.decode()
    assert "production" not in text
    for delivery in first.json()["deliveries"]:
        assert f'"id": {delivery["id"]}' not in text and f'"id":{delivery["id"]}' not in text
    assert error["details"] == {"event_id": "evt_prod_1", "environment": "staging"}
    assert (Event.objects.count(), Delivery.objects.count()) == (events_before, deliveries_before)


def test_publish_existing_event_id_into_the_same_environment_answers_the_first_publication(api):
    # given
    _endpoint(api, "stage", environment="staging")
    staging = _client(scopes=["events:publish"], environments=["staging"])
    first = staging.post("/events/publish", {"event_type": "lead.created", "environment": "staging",
                                             "event_id": "evt_stage_1", "data": {}}, format="json")
    assert first.status_code == 202, first.content

    # when
    again = staging.post("/events/publish", {"event_type": "lead.created", "environment": "staging",
                                             "event_id": "evt_stage_1", "data": {}}, format="json")

    # then
    assert again.status_code == 200, again.content
    assert again.json()["duplicate"] is True
    assert again.json()["environment"] == "staging"
    assert again.json()["deliveries"] == first.json()["deliveries"]


def test_publish_duplicate_after_a_replay_lists_only_the_first_publications_deliveries(api):
    # given: a published event, then replayed to its endpoints
    _endpoint(api, "one")
    _endpoint(api, "two")
    first = api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt_replayed", "data": {}},
                     format="json")
    assert first.status_code == 202, first.content
    replay = api.post("/events/evt_replayed/replay", {}, format="json")
    assert replay.status_code == 202, replay.content
    assert Delivery.objects.filter(event__event_id="evt_replayed", is_replay=True).count() == 2

    # when
    again = api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt_replayed", "data": {}},
                     format="json")

    # then
    assert again.status_code == 200, again.content
    body = again.json()
    assert body["matched_endpoints"] == 2
    assert [d["id"] for d in body["deliveries"]] == [d["id"] for d in first.json()["deliveries"]]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_publish_conflict_is_the_same_when_the_queue_is_full(api, settings, monkeypatch, environment):
    # given: new events are refused (503) while the queue is full; repeats are still answered
    _endpoint(api, "prod")
    first = api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt_full", "data": {}},
                     format="json")
    assert first.status_code == 202, first.content
    settings.WEBHOOK_MAX_QUEUE_SIZE = 1
    monkeypatch.setattr(event_services, "_queue_size_seen", (0.0, 0))  # count now, restored after

    # when
    response = api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt_full",
                                            "environment": environment, "data": {}}, format="json")

    # then
    if environment == "staging":
        assert_seed_error(response, 409, "EVENT_ID_CONFLICT")
    else:
        assert response.status_code == 200, response.content
        assert response.json()["deliveries"] == first.json()["deliveries"]
