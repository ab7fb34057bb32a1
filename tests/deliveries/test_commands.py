"""Operator commands over deliveries (issue 6): ``purge``, ``send_test_event``, ``endpoint_health``,
and the shared conventions of ``replay_events``/``retry_deliveries`` (examples in ``--help``, dry
runs that write nothing, the summary as the last line, the progress bar only on a terminal).
Delivery behaviour of replay/retry is tested with a live worker in ``test_replay.py`` and
``test_dead_letters.py``."""
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import EndpointHealth, WebhookEndpoint
from endpoints.signing import generate_secret
from events.models import Event
from tests.deliveries.test_delivery_flow import seed_verify_signature
from tests.deliveries.test_retention import (
    history,
    make_attempt,
    make_delivery,
    make_event,
)
from vocelio_webhooks.models import AuditLogEntry


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal, so tqdm draws its bar into it."""

    def isatty(self) -> bool:
        return True


def run(name: str, *args: str, stderr: io.StringIO | None = None) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), stderr if stderr is not None else io.StringIO()
    call_command(name, *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def make_endpoint(**fields) -> WebhookEndpoint:
    values = {"name": "CRM", "url": "https://crm.example.com/hook", "events": ["lead.*"],
              "secret": generate_secret(), **fields}
    return WebhookEndpoint.objects.create(**values)


def table_counts() -> tuple[int, int, int, int]:
    blanked = DeliveryAttempt.objects.filter(outcome="succeeded", request_body="").count()
    return blanked, DeliveryAttempt.objects.count(), Delivery.objects.count(), Event.objects.count()


def retention_dataset() -> None:
    """Old and recent history, an event whose delivery is still retrying, and an old delivery of a
    recent event: every purge step and its exceptions have something to act on."""
    for n in range(3):
        history(f"evt_old_{n}", age_days=40)
    history("evt_recent", age_days=10)  # only its successful body is past its 7 days
    history("evt_fresh", age_days=1)
    _, live_delivery, _ = history("evt_live", age_days=60, status="retrying", outcome="retry")
    make_attempt(live_delivery, outcome="retry", age_days=45, number=2)
    recent_event = make_event("evt_mixed", age_days=5)
    old_delivery = make_delivery(recent_event, status="failed", age_days=35)
    make_attempt(old_delivery, outcome="failed", age_days=35)


# --- purge ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_purge_dry_run_counts_exactly_what_a_real_run_then_purges(event_types):
    # given
    retention_dataset()
    before = table_counts()

    # when
    dry_out, _ = run("purge", "--dry-run")
    after_dry_run = table_counts()
    out, _ = run("purge", "--no-progress")

    # then: the dry run changed nothing and predicted the real run's counts
    assert after_dry_run == before
    assert dry_out.splitlines() == [
        "  successful attempt bodies blanked: 4",
        "  attempts deleted: 4",
        "  deliveries deleted: 4",
        "  events deleted: 3",
        ("Would purge: 4 successful attempt bodies blanked, 4 attempts deleted, 4 deliveries deleted, "
         "3 events deleted. Nothing was changed."),
    ]
    assert out.splitlines()[-1].startswith(
        "Purged: 4 successful attempt bodies blanked, 4 attempts deleted, 4 deliveries deleted, 3 events deleted in ")
    assert set(Event.objects.values_list("event_id", flat=True)) == {"evt_recent", "evt_fresh", "evt_live", "evt_mixed"}
    assert Delivery.objects.filter(status="retrying").count() == 1
    assert DeliveryAttempt.objects.filter(delivery__status="retrying").count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("periods", [
    # deliveries take their attempts with them
    {"events_days": 50, "deliveries_days": 3, "attempts_days": 0, "successful_bodies_days": 0},
    # events take their deliveries and attempts with them
    {"events_days": 20, "deliveries_days": 0, "attempts_days": 0, "successful_bodies_days": 0},
    # overlapping steps: each row counted once, where the service counts it
    {"events_days": 20, "deliveries_days": 8, "attempts_days": 30, "successful_bodies_days": 3},
])
def test_purge_preview_matches_the_service_result_for_other_periods(event_types, periods):
    # given
    retention_dataset()
    from deliveries import queries as delivery_queries

    # when
    preview = delivery_queries.purge_preview(**periods)
    result = delivery_services.purge_expired_data(**periods)

    # then
    assert (preview.attempt_bodies_blanked, preview.attempts_deleted, preview.deliveries_deleted,
            preview.events_deleted) == (result.attempt_bodies_blanked, result.attempts_deleted,
                                        result.deliveries_deleted, result.events_deleted)
    assert preview.total > 0


@pytest.mark.django_db
def test_purge_older_than_days_sets_every_period_and_a_table_option_wins(event_types):
    # given
    history("evt_12_days", age_days=12)
    history("evt_2_days", age_days=2)

    # when
    out, err = run("purge", "--older-than-days", "11", "--events-days", "0", "--dry-run")

    # then: attempts and deliveries of the 12-day-old event, not the event itself (its step is off)
    assert out.splitlines()[-1] == ("Would purge: 1 successful attempt bodies blanked, 1 attempts deleted, "
                                    "1 deliveries deleted, 0 events deleted. Nothing was changed.")
    assert "events: off (period 0)" in err
    assert "attempts: older than " in err


@pytest.mark.django_db
def test_purge_is_audited_with_its_counts(event_types):
    # given
    history("evt_old", age_days=40)

    # when
    run("purge", "--no-progress")

    # then
    entry = AuditLogEntry.objects.get(action="purge")
    assert entry.actor == "command:purge"
    assert entry.changes["events_deleted"]["new"] == 1


@pytest.mark.django_db
def test_purge_progress_bar_only_on_a_terminal_and_not_with_no_progress(event_types):
    # given
    history("evt_old", age_days=40)
    history("evt_old_2", age_days=40)
    terminal, quiet = Terminal(), Terminal()

    # when
    run("purge", stderr=terminal)
    history("evt_old_3", age_days=40)
    run("purge", "--no-progress", stderr=quiet)
    _, piped = run("purge")

    # then: 2 bodies blanked + 2 attempts + 2 deliveries + 2 events = 8 row operations
    assert "Purging: 100%" in terminal.getvalue() and "8/8" in terminal.getvalue()
    assert "Purging" not in quiet.getvalue()
    assert "Purging" not in piped


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (("--older-than-days", "-1"), "--older-than-days must be 0 or more."),
    (("--events-days", "-3"), "--events-days must be 0 or more."),
    (("--batch-size", "0"), "--batch-size must be at least 1."),
    (("--max-seconds", "0"), "--max-seconds must be more than 0."),
])
def test_purge_rejects_bad_options_and_deletes_nothing(event_types, args, message):
    # given
    history("evt_old", age_days=40)

    # when / then
    with pytest.raises(CommandError, match=message):
        run("purge", *args)
    assert Event.objects.count() == 1


# --- send_test_event -----------------------------------------------------------------------------
@pytest.mark.django_db
def test_send_test_event_sends_signed_test_event_and_prints_the_answer(event_types, receiver):
    # given
    receiver.script("/cmd-test", [(202, {"X-Seen": "yes"}, b"accepted by the CRM")])
    endpoint = make_endpoint(url=receiver.url("/cmd-test"))

    # when
    out, _ = run("send_test_event", str(endpoint.pk), "--event-type", "lead.updated")

    # then
    request = receiver.wait_for(1, path="/cmd-test")[0]
    assert seed_verify_signature(request.body.decode(), request.header("X-Vocelio-Signature"), endpoint.secret)
    assert request.json()["metadata"]["test"] is True
    assert request.header("X-Vocelio-Event-Type") == "lead.updated"
    lines = out.splitlines()
    assert lines[0].startswith(f"POST {receiver.url('/cmd-test')}  (lead.updated, evt_test_")
    assert "Response body: accepted by the CRM" in lines
    assert lines[-1].startswith(f"Test event to endpoint {endpoint.pk}: HTTP 202 in ") and lines[-1].endswith(" ms.")
    assert Delivery.objects.count() == 0 and Event.objects.count() == 0


@pytest.mark.django_db
def test_send_test_event_fails_the_command_when_the_answer_is_not_2xx(event_types, receiver):
    # given
    receiver.script("/cmd-down", [(503, {}, b"maintenance")])
    endpoint = make_endpoint(url=receiver.url("/cmd-down"))
    stdout = io.StringIO()

    # when / then
    with pytest.raises(CommandError, match=rf"Test event to endpoint {endpoint.pk}: HTTP 503 in \d+ ms \(not 2xx\)"):
        call_command("send_test_event", str(endpoint.pk), "--data", '{"lead": {"id": "lead_9"}}',
                     stdout=stdout, stderr=io.StringIO())
    assert "Response body: maintenance" in stdout.getvalue()
    assert receiver.wait_for(1, path="/cmd-down")[0].json()["data"] == {"lead": {"id": "lead_9"}}


@pytest.mark.django_db
def test_send_test_event_dry_run_prints_the_signed_request_and_sends_nothing(event_types, receiver):
    # given
    endpoint = make_endpoint(url=receiver.url("/cmd-dry"),
                             custom_headers={"Authorization": "Bearer crm-token-do-not-print", "X-Team": "sales"})

    # when
    out, _ = run("send_test_event", str(endpoint.pk), "--dry-run")

    # then
    lines = out.splitlines()
    assert lines[0] == f"POST {receiver.url('/cmd-dry')}"
    assert "Authorization: Bearer ***" in lines and "X-Team: sales" in lines
    assert "crm-token-do-not-print" not in out and endpoint.secret not in out
    blank = lines.index("")
    body = lines[blank + 1]
    signature = next(line.split(": ", 1)[1] for line in lines if line.startswith("X-Vocelio-Signature: "))
    assert seed_verify_signature(body, signature, endpoint.secret)
    assert json.loads(body)["event_type"] == "lead.created" and json.loads(body)["metadata"]["test"] is True
    assert lines[-1] == f"Would send a lead.created test event to endpoint {endpoint.pk}; nothing was sent."
    assert receiver.for_path("/cmd-dry") == []


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (("999999",), "Endpoint 999999 does not exist."),
    (("{pk}", "--event-type", "lead.teleported"), "Unknown event type 'lead.teleported'."),
    (("{pk}", "--data", "{not json"), "--data: not valid JSON"),
    (("{pk}", "--data", "[1, 2]"), "--data must be a JSON object."),
])
def test_send_test_event_rejects_bad_input_and_sends_nothing(event_types, receiver, args, message):
    # given
    endpoint = make_endpoint(url=receiver.url("/cmd-bad"))

    # when / then
    with pytest.raises(CommandError, match=message):
        run("send_test_event", *(arg.replace("{pk}", str(endpoint.pk)) for arg in args))
    assert receiver.for_path("/cmd-bad") == []


# --- endpoint_health -----------------------------------------------------------------------------
def health_dataset():
    """``crm``: 3 of 4 attempts in the last 24 h succeeded, plus an older failure; 1 pending,
    2 retrying, 1 dead-lettered delivery. ``erp``: disabled, circuit open, no attempts."""
    crm = make_endpoint(name="CRM", url="https://crm.example.com:8443/hooks/lead")
    erp = make_endpoint(name="ERP", url="https://erp.example.com/in", status="disabled")
    EndpointHealth.objects.create(endpoint=erp, circuit_state="open", consecutive_failures=7)
    event = make_event("evt_health", age_days=0)
    statuses = ["succeeded", "succeeded", "succeeded", "failed", "pending", "retrying", "retrying", "dead_lettered"]
    deliveries = []
    for status in statuses:
        delivery = make_delivery(event, status=status, age_days=0)
        Delivery.objects.filter(pk=delivery.pk).update(endpoint=crm)
        deliveries.append(delivery)
    for delivery in deliveries[:3]:
        make_attempt(delivery, outcome="succeeded", age_days=0.1)
    make_attempt(deliveries[3], outcome="failed", age_days=0.5)
    make_attempt(deliveries[7], outcome="failed", age_days=2)
    return crm, erp


@pytest.mark.django_db
def test_endpoint_health_table_shows_state_rates_and_counts(event_types):
    # given
    crm, erp = health_dataset()

    # when
    out, _ = run("endpoint_health")

    # then
    header, crm_line, erp_line, summary = out.splitlines()
    assert header.split() == ["ID", "NAME", "HOST", "STATUS", "CIRCUIT", "FAILS", "OK_24H", "LAST_SUCCESS",
                              "LAST_FAILURE", "PENDING", "RETRYING", "DEAD"]
    crm_cells = crm_line.split()
    assert crm_cells[:7] == [str(crm.pk), "CRM", "crm.example.com:8443", "active", "closed", "0", "75.0%"]
    assert crm_cells[-3:] == ["1", "2", "1"]
    assert erp_line.split()[:7] == [str(erp.pk), "ERP", "erp.example.com", "disabled", "open", "7", "-"]
    assert erp_line.split()[-5:] == ["-", "-", "0", "0", "0"]
    assert summary == "2 endpoints (1 active, 1 disabled); 1 circuit not closed; 1 dead-lettered delivery."


@pytest.mark.django_db
def test_endpoint_health_json_and_status_filter(event_types):
    # given
    crm, _ = health_dataset()

    # when
    out, err = run("endpoint_health", "--status", "active", "--json")

    # then
    rows = json.loads(out)
    assert [row["id"] for row in rows] == [crm.pk]
    row = rows[0]
    assert (row["success_rate_24h"], row["attempts_24h"], row["pending"], row["retrying"], row["dead_lettered"]) == (
        0.75, 4, 1, 2, 1)
    newest_failure = DeliveryAttempt.objects.filter(outcome="failed").order_by("-created_at").first().created_at
    assert row["last_failure_at"] == newest_failure.isoformat()
    assert row["circuit_state"] == "closed" and row["host"] == "crm.example.com:8443"
    assert err.strip() == "1 endpoint (1 active); 0 circuits not closed; 1 dead-lettered delivery."


@pytest.mark.django_db
def test_endpoint_health_without_endpoints_prints_only_the_summary():
    # given / when
    out, _ = run("endpoint_health", "--status", "paused")

    # then
    assert out == "0 endpoints; 0 circuits not closed; 0 dead-lettered deliveries.\n"


def test_endpoint_health_rejects_an_unknown_status():
    # given / when / then
    with pytest.raises(CommandError, match="invalid choice: 'sleeping'"):
        run("endpoint_health", "--status", "sleeping")


# --- replay_events / retry_deliveries conventions ------------------------------------------------
@pytest.mark.parametrize("name", ["replay_events", "retry_deliveries", "purge", "send_test_event", "endpoint_health"])
def test_operator_commands_help_ends_with_examples(capsys, name):
    # given / when
    with pytest.raises(SystemExit):
        call_command(name, "--help")

    # then
    out = capsys.readouterr().out
    assert f"\nexamples:\n  python manage.py {name}" in out


@pytest.mark.django_db
def test_retry_deliveries_dry_run_writes_nothing_and_ends_with_the_summary(event_types):
    # given
    endpoint = make_endpoint()
    delivery = make_delivery(make_event("evt_dead", age_days=0), status="dead_lettered", age_days=0)
    Delivery.objects.filter(pk=delivery.pk).update(endpoint=endpoint)

    # when
    out, err = run("retry_deliveries", "--dry-run")

    # then
    assert out.splitlines() == [f"  endpoint {endpoint.pk}, dead_lettered: 1", "Would retry 1 delivery(ies)."]
    assert Delivery.objects.get(pk=delivery.pk).status == "dead_lettered"
    assert not AuditLogEntry.objects.exists()
    assert err == ""


@pytest.mark.django_db
def test_replay_events_dry_run_writes_nothing_and_ends_with_the_summary(event_types):
    # given
    endpoint = make_endpoint()
    event = make_event("evt_replay_me", age_days=1)
    original = make_delivery(event, status="succeeded", age_days=1)
    Delivery.objects.filter(pk=original.pk).update(endpoint=endpoint)
    since = (timezone.now() - timedelta(days=2)).isoformat()

    # when
    out, err = run("replay_events", "--since", since, "--dry-run")

    # then
    assert out.splitlines() == [f"  endpoint {endpoint.pk}: 1",
                                "Would replay 1 delivery(ies) of 1 event(s) to 1 endpoint(s)."]
    assert Delivery.objects.count() == 1 and not AuditLogEntry.objects.exists()
    assert err == ""
