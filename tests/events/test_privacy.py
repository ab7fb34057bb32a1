"""Data-subject requests (issue 5, "GDPR/CCPA"): ``erase_subject`` and ``POST /privacy/erase``
redact one person's data in stored events and attempts and report what changed;
``export_subject`` prints everything stored about them."""
import copy
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from deliveries.models import Delivery, DeliveryAttempt
from events.models import Event, EventType
from tests.conftest import refused_by_database

EMAIL = "john.doe@example.com"
PHONE = "+1-555-0123"
LEAD = {"lead": {"id": "lead_123", "name": "John Doe", "email": EMAIL, "phone": PHONE, "source": "website",
                 "score": 85, "created_at": "2025-08-05T17:30:00Z"},
        "agent": {"id": "agent_456", "name": "Sarah Johnson", "email": "sarah@vocelio.com"}}
OTHER = {"lead": {"id": "lead_999", "name": "Ann Other", "email": "ann@example.org", "phone": "+1-555-0199"}}
R = "[redacted]"


def make_event(event_id: str, data: dict, metadata: dict | None = None) -> Event:
    return Event.objects.create(event_id=event_id, event_type=EventType.objects.get(name="lead.created"),
                                timestamp=timezone.now(), data=data, metadata=metadata or {},
                                environment="production")


def make_attempt(event: Event, *, request_body: str, response_body: str = '{"ok":true}', **fields) -> DeliveryAttempt:
    delivery = Delivery.objects.create(event=event, status="succeeded", attempt_count=1)
    return DeliveryAttempt.objects.create(
        delivery=delivery, attempt_number=1, url="https://crm.example.com/hook", http_method="POST",
        request_body=request_body, response_status_code=200, response_body=response_body, outcome="succeeded",
        started_at=timezone.now(), **fields,
    )


def envelope(event: Event) -> str:
    return json.dumps({"event_type": "lead.created", "event_id": event.event_id, "data": event.data},
                      separators=(",", ":"))


def run(command: str, **options) -> dict:
    stdout = io.StringIO()
    call_command(command, stdout=stdout, stderr=io.StringIO(), no_progress=True, **options)
    return json.loads(stdout.getvalue())


@pytest.mark.django_db
def test_erase_subject_redacts_email_and_phone_in_events_at_any_depth(event_types):
    # given
    data = {**copy.deepcopy(LEAD), "notes": [{"text": "call me at 1 555 0123"}, "unrelated"]}
    event = make_event("evt_john", data, metadata={"contact": {"primary": "JOHN.DOE@EXAMPLE.COM"}})
    other = make_event("evt_ann", copy.deepcopy(OTHER))

    # when
    report = run("erase_subject", email=EMAIL, phone=PHONE)

    # then
    event.refresh_from_db()
    assert event.data["lead"] == {"id": "lead_123", "name": R, "email": R, "phone": R, "source": "website",
                                  "score": 85, "created_at": "2025-08-05T17:30:00Z"}
    assert event.data["agent"] == LEAD["agent"]  # someone else, in the same event
    assert event.data["notes"] == [{"text": R}, "unrelated"]
    assert event.metadata == {"contact": {"primary": R}}
    assert Event.objects.get(pk=other.pk).data == OTHER
    assert report["dry_run"] is False
    assert report["events"] == {"scanned": 2, "matched": 1, "values_redacted": 5, "event_ids": ["evt_john"]}


@pytest.mark.django_db
@pytest.mark.parametrize("stored", ["+1-555-0123", "15550123", "+1 (555) 0123", "1.555.0123", 15550123, "555-0123"])
def test_erase_subject_matches_phone_numbers_by_digits(event_types, stored):
    # given
    event = make_event("evt_phone", {"caller": {"phone": stored, "region": "US"}})
    neighbour = make_event("evt_neighbour", {"caller": {"phone": "+1-555-0124"}})

    # when
    report = run("erase_subject", phone="15550123")

    # then
    assert Event.objects.get(pk=event.pk).data == {"caller": {"phone": R, "region": "US"}}
    assert Event.objects.get(pk=neighbour.pk).data == {"caller": {"phone": "+1-555-0124"}}
    assert report["events"]["event_ids"] == ["evt_phone"]


@pytest.mark.django_db
def test_erase_subject_redacts_attempt_bodies_headers_and_errors(event_types):
    # given
    event = make_event("evt_sent", copy.deepcopy(LEAD))
    attempt = make_attempt(event, request_body=envelope(event), response_body=f"<ok>Thanks {EMAIL}</ok>",
                           request_headers={"X-Customer": EMAIL, "Content-Type": "application/json"},
                           error_message=f"receiver said: unknown phone {PHONE}")
    other_event = make_event("evt_other", copy.deepcopy(OTHER))
    other_attempt = make_attempt(other_event, request_body=envelope(other_event))

    # when
    report = run("erase_subject", email=EMAIL, phone=PHONE)

    # then
    attempt.refresh_from_db()
    sent = json.loads(attempt.request_body)
    assert sent["data"]["lead"]["email"] == R and sent["data"]["lead"]["name"] == R
    assert sent["data"]["lead"]["id"] == "lead_123" and sent["event_id"] == "evt_sent"
    assert attempt.response_body == R  # not JSON: replaced whole
    assert attempt.request_headers == {"X-Customer": R, "Content-Type": "application/json"}
    assert attempt.error_message == R
    assert EMAIL not in json.dumps(DeliveryAttempt.objects.filter(pk=attempt.pk).values().get(), default=str)
    assert DeliveryAttempt.objects.get(pk=other_attempt.pk).request_body == envelope(other_event)
    assert report["attempts"]["matched"] == 1 and report["attempts"]["attempt_ids"] == [attempt.pk]


@pytest.mark.django_db
def test_erase_subject_dry_run_reports_and_changes_nothing(event_types):
    # given
    event = make_event("evt_dry", copy.deepcopy(LEAD))
    attempt = make_attempt(event, request_body=envelope(event))
    before = (list(Event.objects.values()), list(DeliveryAttempt.objects.values()))

    # when
    dry = run("erase_subject", email=EMAIL, dry_run=True)

    # then
    assert (list(Event.objects.values()), list(DeliveryAttempt.objects.values())) == before
    assert dry["dry_run"] is True
    assert dry["events"]["event_ids"] == ["evt_dry"] and dry["attempts"]["attempt_ids"] == [attempt.pk]
    real = run("erase_subject", email=EMAIL)
    assert {k: v for k, v in real.items() if k != "dry_run"} == {k: v for k, v in dry.items() if k != "dry_run"}


@pytest.mark.django_db
def test_erase_subject_reads_and_writes_in_chunks(event_types):
    # given
    events = [make_event(f"evt_chunk_{n}", copy.deepcopy(LEAD)) for n in range(5)]

    # when
    with CaptureQueriesContext(connection) as queries:
        report = run("erase_subject", email=EMAIL, chunk_size=2)

    # then
    updates = [q for q in queries.captured_queries if q["sql"].startswith('UPDATE "events_event"')]
    assert len(updates) == 3  # 2 + 2 + 1 rows
    assert report["events"]["matched"] == 5
    assert all(event.data["lead"]["email"] == R for event in Event.objects.filter(pk__in=[e.pk for e in events]))


@pytest.mark.django_db
@pytest.mark.parametrize(("options", "message"), [
    ({}, "Give an email, a phone number, or both."),
    ({"email": "not-an-email"}, "email is not an email address."),
    ({"phone": "555"}, "phone must have 7 to 15 digits"),
])
def test_erase_subject_refuses_a_vague_subject(event_types, options, message):
    # given
    event = make_event("evt_safe", copy.deepcopy(LEAD))

    # when
    with pytest.raises(CommandError) as raised:
        run("erase_subject", **options)

    # then
    assert message in str(raised.value)
    assert Event.objects.get(pk=event.pk).data == LEAD


@pytest.mark.django_db
def test_export_subject_prints_everything_stored_about_the_subject(event_types, tmp_path):
    # given
    event = make_event("evt_export", copy.deepcopy(LEAD), metadata={"source_service": "lead_management"})
    attempt = make_attempt(event, request_body=envelope(event))
    make_attempt(event, request_body='{"template":"without personal data"}')
    other = make_event("evt_not_them", copy.deepcopy(OTHER))
    make_attempt(other, request_body=envelope(other))

    # when
    export = run("export_subject", email=EMAIL.upper(), phone="15550123")
    call_command("export_subject", email=EMAIL, output=str(tmp_path / "export.json"), no_progress=True,
                 stdout=io.StringIO(), stderr=io.StringIO())

    # then
    assert [e["event_id"] for e in export["events"]] == ["evt_export"]
    assert export["events"][0]["data"] == LEAD
    assert export["events"][0]["metadata"] == {"source_service": "lead_management"}
    assert [d["status"] for d in export["events"][0]["deliveries"]] == ["succeeded", "succeeded"]
    assert [(a["id"], a["event_id"]) for a in export["attempts"]] == [(attempt.pk, "evt_export")]
    assert json.loads(export["attempts"][0]["request_body"])["data"] == LEAD
    assert export["counts"] == {"events": 1, "attempts": 1}
    assert json.loads((tmp_path / "export.json").read_text())["counts"] == {"events": 1, "attempts": 1}
    assert Event.objects.get(pk=event.pk).data == LEAD  # exporting changes nothing


@pytest.mark.django_db
def test_privacy_erase_api_redacts_and_returns_counts(api):
    # given
    event = make_event("evt_api", copy.deepcopy(LEAD))
    make_attempt(event, request_body=envelope(event))

    # when
    response = api.post("/privacy/erase", {"email": EMAIL, "phone": PHONE}, format="json")

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["dry_run"] is False
    assert body["events"]["matched"] == 1 and body["events"]["event_ids"] == ["evt_api"]
    assert body["attempts"]["matched"] == 1
    assert Event.objects.get(pk=event.pk).data["lead"]["email"] == R


@pytest.mark.django_db
def test_privacy_erase_api_dry_run_changes_nothing(api):
    # given
    event = make_event("evt_api_dry", copy.deepcopy(LEAD))

    # when
    response = api.post("/privacy/erase", {"phone": "15550123", "dry_run": True}, format="json")

    # then
    assert response.status_code == 200, response.content
    assert response.json()["events"]["event_ids"] == ["evt_api_dry"]
    assert Event.objects.get(pk=event.pk).data == LEAD


@pytest.mark.django_db
def test_privacy_erase_api_requires_an_api_key(event_types):
    # given
    event = make_event("evt_api_anon", copy.deepcopy(LEAD))

    # when
    response = APIClient().post("/privacy/erase", {"email": EMAIL}, format="json")

    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert Event.objects.get(pk=event.pk).data == LEAD


@pytest.mark.django_db
def test_privacy_erase_api_rejects_a_request_without_a_subject(api):
    # given / when
    response = api.post("/privacy/erase", {"email": ""}, format="json")

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.django_db
@pytest.mark.parametrize(("scopes", "environments"), [
    (["read", "events:publish", "endpoints:manage", "deliveries:retry"], []),  # every named scope but not "*"
    (["*"], ["staging"]),  # everything, but only for one environment
])
def test_privacy_erase_api_needs_a_full_unrestricted_key(event_types, scopes, environments):
    # given
    from vocelio_webhooks import services as key_services

    raw = key_services.create_api_key(name="limited", scopes=scopes, environments=environments).raw_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    event = make_event("evt_api_limited", copy.deepcopy(LEAD))

    # when
    response = client.post("/privacy/erase", {"email": EMAIL}, format="json")

    # then
    assert response.status_code == 403, response.content
    assert Event.objects.get(pk=event.pk).data == LEAD


@pytest.mark.django_db
def test_erase_subject_stopped_part_way_is_on_record(event_types):
    # given: an event and an attempt holding the subject, and a database that refuses to change the
    # attempt (the erasure writes events first, then attempts, in batches that commit one by one)
    event = make_event("evt_partway", copy.deepcopy(LEAD))
    make_attempt(event, request_body=envelope(event))

    # when
    with refused_by_database("deliveries_deliveryattempt", "UPDATE"), \
            pytest.raises(Exception, match="refused by the test"):
        run("erase_subject", email=EMAIL)

    # then: the event is redacted, and the audit log says what the erasure was to change (without
    # the subject), so the stopped run is on record; running it again would finish it
    from vocelio_webhooks.models import AuditLogEntry

    assert Event.objects.get(pk=event.pk).data["lead"]["email"] == R
    [entry] = AuditLogEntry.objects.filter(actor="command:erase_subject")
    erasure = entry.changes["erasure"]["new"]
    assert erasure["events"]["matched"] == 1 and erasure["attempts"]["matched"] == 1
    assert EMAIL not in json.dumps(entry.changes)
