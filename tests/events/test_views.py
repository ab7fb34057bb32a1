"""Event API: publishing and fan-out, idempotency, reading events, the event type catalog.

No worker: enqueueing is asserted by capturing the after-commit callbacks without running them
(``execute=False``), so nothing is sent."""
import pytest

from deliveries.models import Delivery
from events.models import Event, EventType
from tests.conftest import assert_seed_error

# The seed's "Supported Event Types", literally (38).
SEED_EVENT_TYPES = {
    "call.started", "call.ended", "call.answered", "call.missed", "call.transferred", "call.recording_available",
    "lead.created", "lead.updated", "lead.converted", "lead.lost", "lead.assigned",
    "appointment.scheduled", "appointment.confirmed", "appointment.cancelled", "appointment.completed",
    "appointment.rescheduled", "appointment.reminder_sent",
    "agent.online", "agent.offline", "agent.busy", "agent.available", "agent.performance_updated",
    "campaign.started", "campaign.completed", "campaign.paused", "campaign.performance_updated",
    "notification.sent", "notification.delivered", "notification.clicked", "notification.failed",
    "system.health_alert", "system.maintenance", "system.error", "system.backup_completed",
    "crm.sync_completed", "crm.sync_failed", "api.rate_limit_exceeded", "api.error",
}
LEAD = {"lead": {"id": "test_123", "name": "Test Lead"}}


def _endpoint(api, name, events, *, environment="production", status="active") -> int:
    created = api.post("/endpoints", {"name": name, "url": f"https://{name}.example.com/hook", "events": events,
                                      "environment": environment}, format="json")
    assert created.status_code == 201, created.content
    endpoint_id = created.json()["id"]
    if status != "active":
        assert api.put(f"/endpoints/{endpoint_id}/status", {"status": status}, format="json").status_code == 200
    return endpoint_id


def _claimed_after_wakeup(callbacks) -> list[int]:
    """Ids of the deliveries a batch woken by this publish claims: exactly one ``deliver_due``
    wake-up must be queued to run after commit (issue 7: a wake-up per batch, not per delivery)."""
    from deliveries import services as delivery_services

    assert [callback.func.__name__ for callback in callbacks] == ["enqueue_wakeup"]
    return sorted(delivery_services.claim_due(limit=50))


# --- publish and fan-out ----------------------------------------------------------------------
def test_publish_creates_one_delivery_per_matching_endpoint(api, django_capture_on_commit_callbacks):
    # given
    exact = _endpoint(api, "exact", ["lead.created"])
    prefix = _endpoint(api, "prefix", ["lead.*"])
    everything = _endpoint(api, "everything", ["*"])
    paused = _endpoint(api, "paused", ["lead.*"], status="paused")
    _endpoint(api, "calls", ["call.*"])
    _endpoint(api, "other-lead", ["lead.updated"])
    _endpoint(api, "staging", ["*"], environment="staging")
    _endpoint(api, "disabled", ["lead.*"], status="disabled")

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post("/events/publish", {"event_type": "lead.created", "payload": LEAD}, format="json")

    # then
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["event_id"].startswith("evt_")
    assert body["duplicate"] is False
    assert body["matched_endpoints"] == 4
    by_endpoint = {d["endpoint_id"]: d for d in body["deliveries"]}
    assert set(by_endpoint) == {exact, prefix, everything, paused}
    assert {d["status"] for d in body["deliveries"]} == {"pending"}
    rows = Delivery.objects.filter(event__event_id=body["event_id"])
    assert sorted(rows.values_list("endpoint_id", flat=True)) == sorted([exact, prefix, everything, paused])
    assert set(rows.values_list("status", flat=True)) == {"pending"}
    # the paused endpoint's delivery waits; a batch claims only the active ones
    assert _claimed_after_wakeup(callbacks) == sorted(
        by_endpoint[endpoint_id]["id"] for endpoint_id in (exact, prefix, everything)
    )


def test_publish_reaches_only_endpoints_of_the_events_environment(api, django_capture_on_commit_callbacks):
    # given
    _endpoint(api, "prod", ["*"])
    staging = _endpoint(api, "staging", ["lead.*"], environment="staging")

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post("/events/publish", {"event_type": "lead.created", "data": LEAD, "environment": "staging"},
                            format="json")

    # then
    assert response.status_code == 202, response.content
    assert [d["endpoint_id"] for d in response.json()["deliveries"]] == [staging]
    assert Event.objects.get(event_id=response.json()["event_id"]).environment == "staging"
    assert _claimed_after_wakeup(callbacks) == [response.json()["deliveries"][0]["id"]]


def test_publish_with_no_matching_endpoint_stores_event_without_deliveries(api, django_capture_on_commit_callbacks):
    # given
    _endpoint(api, "calls", ["call.*"])

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post("/events/publish", {"event_type": "lead.created", "payload": LEAD}, format="json")

    # then
    assert response.status_code == 202, response.content
    assert response.json()["deliveries"] == []
    assert Event.objects.filter(event_id=response.json()["event_id"]).exists()
    assert Delivery.objects.count() == 0
    assert callbacks == []


@pytest.mark.parametrize("key", ["payload", "data"])
def test_publish_accepts_payload_or_data(api, key):
    # given
    body = {"event_type": "lead.created", key: LEAD, "event_id": f"evt_{key}",
            "timestamp": "2025-08-05T17:30:00Z", "metadata": {"source_service": "lead_management"}}

    # when
    response = api.post("/events/publish", body, format="json")

    # then
    assert response.status_code == 202, response.content
    assert response.json()["event_id"] == f"evt_{key}"
    event = Event.objects.get(event_id=f"evt_{key}")
    assert event.data == LEAD
    assert event.metadata == {"source_service": "lead_management"}
    assert event.timestamp.isoformat() == "2025-08-05T17:30:00+00:00"


def test_publish_with_different_payload_and_data_answers_400(api):
    # given / when
    response = api.post("/events/publish", {"event_type": "lead.created", "payload": LEAD, "data": {"other": 1}},
                        format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "data" in error["details"]["fields"]
    assert Event.objects.count() == 0


def test_publish_unknown_event_type_answers_400_and_stores_nothing(api, django_capture_on_commit_callbacks):
    # given
    _endpoint(api, "everything", ["*"])

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post("/events/publish", {"event_type": "lead.teleported", "payload": LEAD}, format="json")

    # then
    error = assert_seed_error(response, 400, "UNKNOWN_EVENT_TYPE")
    assert "lead.teleported" in error["message"]
    assert Event.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert callbacks == []


@pytest.mark.parametrize(
    "body",
    [
        {"event_type": "lead.created", "data": ["lead"]},
        {"event_type": "lead.created", "data": "lead"},
        {"event_type": "lead.created", "payload": 42},
        {"event_type": "lead.created", "data": LEAD, "metadata": ["x"]},
        {"event_type": "lead.created", "data": LEAD, "environment": "qa"},
        {"event_type": "lead.created", "data": LEAD, "event_id": "has spaces"},
        {"event_type": "lead.created", "data": LEAD, "timestamp": "yesterday"},
        {"data": LEAD},
    ],
)
def test_publish_invalid_body_answers_400_and_stores_nothing(api, body):
    # given / when
    response = api.post("/events/publish", body, format="json")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert Event.objects.count() == 0


def test_publish_same_event_id_twice_answers_200_with_first_deliveries(api, django_capture_on_commit_callbacks):
    # given
    _endpoint(api, "prefix", ["lead.*"])
    _endpoint(api, "everything", ["*"])
    body = {"event_type": "lead.created", "event_id": "lead_123_created", "payload": LEAD}
    first = api.post("/events/publish", body, format="json")
    assert first.status_code == 202, first.content
    deliveries_before = Delivery.objects.count()

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        second = api.post("/events/publish", {**body, "payload": {"changed": True}}, format="json")

    # then
    assert second.status_code == 200, second.content
    assert second.json()["duplicate"] is True
    assert second.json()["event_id"] == "lead_123_created"
    assert sorted(d["id"] for d in second.json()["deliveries"]) == sorted(d["id"] for d in first.json()["deliveries"])
    assert Delivery.objects.count() == deliveries_before == 2
    assert Event.objects.count() == 1
    assert Event.objects.get().data == LEAD
    assert callbacks == []


# --- reading events ---------------------------------------------------------------------------
def test_events_list_and_detail_show_published_events(api):
    # given
    _endpoint(api, "everything", ["*"])
    api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt_a", "payload": LEAD}, format="json")
    api.post("/events/publish", {"event_type": "call.ended", "event_id": "evt_b", "payload": {"call": {"id": "c"}}},
             format="json")

    # when
    listed = api.get("/events")
    filtered = api.get("/events", {"event_type": "call.ended"})
    detail = api.get("/events/evt_a")

    # then
    assert listed.status_code == 200
    assert {e["event_id"] for e in listed.json()["results"]} == {"evt_a", "evt_b"}
    assert [e["event_id"] for e in filtered.json()["results"]] == ["evt_b"]
    assert detail.status_code == 200
    assert detail.json()["event_type"] == "lead.created"
    assert detail.json()["data"] == LEAD
    assert detail.json()["delivery_count"] == 1


def test_events_detail_unknown_event_id_answers_404(api):
    # given / when
    response = api.get("/events/evt_missing")

    # then
    assert_seed_error(response, 404, "NOT_FOUND")


# --- event types ----------------------------------------------------------------------------
def test_event_types_list_has_all_seed_types_with_sample_data(api):
    # given / when
    response = api.get("/event-types")

    # then
    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()}
    assert set(types) == SEED_EVENT_TYPES
    assert all(isinstance(t["sample_data"], dict) and t["sample_data"] for t in types.values())
    assert types["crm.sync_failed"]["category"] == "integration"
    assert types["lead.created"]["description"] == "New lead created"


def test_event_types_create_custom_type_that_can_be_published(api, django_capture_on_commit_callbacks):
    # given
    everything = _endpoint(api, "everything", ["*"])
    billing = _endpoint(api, "billing", ["billing.*"])

    # when
    created = api.post("/event-types", {"name": "billing.invoice_paid", "category": "billing",
                                        "description": "Invoice paid", "sample_data": {"invoice": {"id": "inv_1"}}},
                       format="json")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        published = api.post("/events/publish", {"event_type": "billing.invoice_paid",
                                                 "payload": {"invoice": {"id": "inv_2"}}}, format="json")

    # then
    assert created.status_code == 201, created.content
    assert EventType.objects.filter(name="billing.invoice_paid").exists()
    assert api.get("/event-types/billing.invoice_paid").json()["sample_data"] == {"invoice": {"id": "inv_1"}}
    assert published.status_code == 202, published.content
    assert {d["endpoint_id"] for d in published.json()["deliveries"]} == {everything, billing}
    assert _claimed_after_wakeup(callbacks) == sorted(d["id"] for d in published.json()["deliveries"])


def test_event_types_create_duplicate_name_answers_409(api):
    # given / when
    response = api.post("/event-types", {"name": "lead.created", "category": "lead"}, format="json")

    # then: a clash with what exists, as a duplicate template name (tests/vocelio_webhooks/test_api_walk_fixes.py)
    error = assert_seed_error(response, 409, "CONFLICT")
    assert "name" in error["details"]["fields"]
    assert EventType.objects.filter(name="lead.created").count() == 1


@pytest.mark.parametrize("name", ["Billing Invoice Paid", "billing", "billing.*", "*", "billing..paid", "Billing.Paid"])
def test_event_types_create_name_that_no_subscription_could_match_answers_400(api, name):
    # given
    before = EventType.objects.count()

    # when
    response = api.post("/event-types", {"name": name, "category": "billing"}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "name" in error["details"]["fields"]
    assert EventType.objects.count() == before


@pytest.mark.parametrize("sample_data", [["invoice"], "invoice", 3])
def test_event_types_create_non_object_sample_data_answers_400(api, sample_data):
    # given / when
    response = api.post("/event-types", {"name": "billing.invoice_paid", "category": "billing",
                                         "sample_data": sample_data}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "sample_data" in error["details"]["fields"]
    assert not EventType.objects.filter(name="billing.invoice_paid").exists()


def test_publish_with_an_endpoint_whose_stored_filters_no_longer_validate_still_accepts(api):
    # given: filters stored before a rule tightened (written behind validation's back)
    from endpoints.models import WebhookEndpoint

    good = api.post("/endpoints", {"name": "ok", "url": "https://example.com/a", "events": ["*"]}, format="json").json()
    bad = api.post("/endpoints", {"name": "old", "url": "https://example.com/b", "events": ["*"]}, format="json").json()
    WebhookEndpoint.objects.filter(pk=bad["id"]).update(
        filters=[{"field_path": "data.s", "operator": "regex", "value": "(.?){1000}z"}])

    # when
    response = api.post("/events/publish", {"event_type": "lead.created", "data": {"s": "x"}}, format="json")

    # then
    assert response.status_code == 202, response.content
    assert [d["endpoint_id"] for d in response.json()["deliveries"]] == [good["id"]]
