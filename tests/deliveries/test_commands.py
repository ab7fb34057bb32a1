"""Operator commands over deliveries (issue 6): ``purge``, ``send_test_event``, ``endpoint_health``,
and the shared conventions of ``replay_events``/``retry_deliveries`` (examples in ``--help``, dry
runs that write nothing, the summary as the last line, the progress bar only on a terminal).
Delivery behaviour of replay/retry is tested with a live worker in ``test_replay.py`` and
``test_dead_letters.py``."""
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
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
    (("--older-than-days", "-1"),
     "argument --older-than-days: must be a whole number from 0 to 36,500 days, not '-1'."),
    (("--events-days", "-3"), "argument --events-days: must be a whole number from 0 to 36,500 days"),
    (("--batch-size", "0"), "argument --batch-size: must be a whole number from 1 to 10,000 rows, not '0'."),
    (("--max-seconds", "0"), "argument --max-seconds: must be a finite number more than 0 to 315,360,000 seconds"),
    # Past datetime's range (OverflowError) or beyond year 1 (date value out of range) before the bound.
    (("--older-than-days", "99999999999", "--dry-run"), "argument --older-than-days: must be a whole number from 0"),
    (("--older-than-days", "3000000", "--dry-run"), "argument --older-than-days: must be a whole number from 0"),
    (("--events-days", "99999999999", "--dry-run"), "argument --events-days: must be a whole number from 0"),
    (("--successful-bodies-days", "3000000"), "argument --successful-bodies-days: must be a whole number from 0"),
    # nan compared as "not <= 0" and inf as a valid budget: both used to be accepted.
    (("--max-seconds", "nan"), "argument --max-seconds: must be a finite number more than 0 .* not 'nan'."),
    (("--max-seconds", "inf", "--dry-run"), "argument --max-seconds: must be a finite number .* not 'inf'."),
    (("--max-seconds=-inf",), "argument --max-seconds: must be a finite number .* not '-inf'."),
])
def test_purge_rejects_bad_options_and_deletes_nothing(event_types, args, message):
    # given
    history("evt_old", age_days=40)

    # when / then
    with pytest.raises(CommandError, match=message):
        run("purge", *args)
    assert Event.objects.count() == 1
    assert not AuditLogEntry.objects.exists()


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
def test_endpoint_health_escapes_a_name_stored_before_control_characters_were_refused(event_types):
    # given: a name with an escape sequence, written behind validation's back (as rows saved before the rule)
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/h", events=["lead.*"])
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(name="a\u001b[2J\u202eb")

    # when
    out, _ = run("endpoint_health")

    # then: the operator's terminal gets the code points, not the sequence
    assert "\u001b" not in out and "\u202e" not in out
    assert "a\\u001b[2J\\u202eb" in out


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


# --- bad input: bounded options, unknown endpoints, exit statuses (issue 6 review) ----------------
TOO_BIG = "99999999999999999999999"  # beyond bigint: OverflowError in SQLite's driver, LIMIT mismatch


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (("retry_deliveries", "--endpoint", TOO_BIG, "--dry-run"),
     f"argument --endpoint: must be a whole number from 1 to 9,223,372,036,854,775,807, not '{TOO_BIG}'."),
    (("retry_deliveries", "--limit", TOO_BIG, "--dry-run"), "argument --limit: must be a whole number from 1 to "),
    (("retry_deliveries", "--limit", "0"), "argument --limit: must be a whole number from 1 to "),
    (("replay_events", "--endpoint", TOO_BIG, "--since", "2025-08-05", "--dry-run"), "argument --endpoint: must be"),
    (("replay_events", "--since", "2025-08-05", "--limit", TOO_BIG, "--dry-run"), "argument --limit: must be"),
    (("endpoint_health", "--endpoint", TOO_BIG), "argument --endpoint: must be a whole number from 1 to "),
    (("endpoint_health", "--endpoint", "0"), "argument --endpoint: must be a whole number from 1 to "),
    (("send_test_event", TOO_BIG, "--dry-run"), "argument endpoint_id: must be a whole number from 1 to "),
    # +05:00 turns year 1 into year 0 in UTC: OverflowError before the check.
    (("replay_events", "--since", "0001-01-01T00:00:00+05:00", "--dry-run"),
     r"argument --since: '0001-01-01T00:00:00\+05:00' is out of range once converted to UTC"),
    (("retry_deliveries", "--until", "9999-12-31T23:00:00-05:00", "--dry-run"), "argument --until: .* out of range"),
    (("retry_deliveries", "--since", "yesterday", "--dry-run"),
     "argument --since: 'yesterday' is not an ISO-8601 date or date-time."),
])
def test_operator_commands_refuse_out_of_range_options_with_one_argparse_error(event_types, args, message):
    # given: a dead-lettered delivery a faulty bound could act on
    endpoint = make_endpoint()
    delivery = make_delivery(make_event("evt_dead", age_days=0), status="dead_lettered", age_days=0)
    Delivery.objects.filter(pk=delivery.pk).update(endpoint=endpoint)

    # when / then: argparse's error (call_command raises it as CommandError), not a traceback
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert Delivery.objects.get().status == "dead_lettered" and not AuditLogEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)])
def test_retry_deliveries_refuses_an_endpoint_that_does_not_exist(event_types, dry_run):
    # given
    endpoint = make_endpoint()
    delivery = make_delivery(make_event("evt_dead", age_days=0), status="dead_lettered", age_days=0)
    Delivery.objects.filter(pk=delivery.pk).update(endpoint=endpoint)
    missing = endpoint.pk + 100

    # when / then
    with pytest.raises(CommandError, match=rf"^Endpoint {missing} does not exist\.$"):
        run("retry_deliveries", "--endpoint", str(missing), "--since", "2025-08-05T17:00:00Z", *dry_run)
    assert Delivery.objects.get().status == "dead_lettered" and not AuditLogEntry.objects.exists()


@pytest.mark.django_db
def test_endpoint_health_refuses_endpoints_that_do_not_exist():
    # given
    endpoint = make_endpoint()

    # when / then: one unknown id, then two (the known one is not reported)
    with pytest.raises(CommandError, match=rf"^Endpoint {endpoint.pk + 98} does not exist\.$"):
        run("endpoint_health", "--endpoint", str(endpoint.pk + 98))
    with pytest.raises(CommandError, match=rf"^Endpoints {endpoint.pk + 1}, {endpoint.pk + 2} do not exist\.$"):
        run("endpoint_health", "--endpoint", str(endpoint.pk + 2), "--endpoint", str(endpoint.pk),
            "--endpoint", str(endpoint.pk + 1))


def manage(*args: str) -> subprocess.CompletedProcess:
    """``python manage.py ARGS`` as an operator runs it, on the test database (as the worker fixture
    does), so exit statuses and stderr are the real ones."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "VOCELIO_TEST_DB_NAME": str(settings.DATABASES["default"]["NAME"])}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_malformed_option_exits_2_with_argparse_usage_and_one_error_line():
    # given / when
    result = manage("retry_deliveries", "--endpoint", TOO_BIG, "--dry-run")

    # then
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr and result.stderr.startswith("usage: manage.py retry_deliveries ")
    assert result.stderr.splitlines()[-1] == (
        f"manage.py retry_deliveries: error: argument --endpoint: must be a whole number from 1 to "
        f"9,223,372,036,854,775,807, not '{TOO_BIG}'.")


def test_a_nan_budget_exits_2_and_purges_nothing():
    # given / when
    result = manage("purge", "--max-seconds", "nan")

    # then
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("manage.py purge: error: argument --max-seconds: must be a finite "
                                              "number more than 0 to 315,360,000 seconds, not 'nan'.")


@pytest.mark.django_db(transaction=True)
def test_an_unknown_endpoint_exits_1_with_one_command_error_line():
    # given
    make_endpoint()

    # when
    result = manage("endpoint_health", "--endpoint", "999999")

    # then
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", "CommandError: Endpoint 999999 does not exist.\n")


@pytest.mark.django_db(transaction=True)
def test_replay_events_enqueues_without_kombu_warnings_on_stderr(event_types):
    # given: one event its endpoint received, so a real replay publishes one task to the broker
    endpoint = make_endpoint()
    original = make_delivery(make_event("evt_replay_me", age_days=1), status="succeeded", age_days=1)
    Delivery.objects.filter(pk=original.pk).update(endpoint=endpoint)

    # when
    result = manage("replay_events", "--since", (timezone.now() - timedelta(days=2)).isoformat(), "--no-progress")

    # then: stderr is empty (kombu used to log "No hostname was supplied" for filesystem://)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Replayed 1 of 1 delivery(ies) of 1 event(s) to 1 endpoint(s)."
    assert result.stderr == ""
    assert Delivery.objects.filter(is_replay=True).count() == 1


def test_receive_webhooks_on_a_taken_port_says_so_without_a_traceback():
    # given: a port something already listens on
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]

    # when / then: a CommandError (one line on stderr, exit status 1), not an OSError traceback
    try:
        with pytest.raises(CommandError, match=rf"Cannot listen on 127\.0\.0\.1:{port}: .*Pick another --port"):
            call_command("receive_webhooks", port=port)
    finally:
        taken.close()


@pytest.mark.parametrize(("args", "message"), [
    (("--port", "99999"), "argument --port: must be a whole number from 1 to 65,535, not '99999'."),
    (("--port", "-1"), "argument --port: must be a whole number from 1 to 65,535, not '-1'."),
    (("--status", "99"), "argument --status: must be a whole number from 100 to 599, not '99'."),
    (("--status", "1000"), "argument --status: must be a whole number from 100 to 599, not '1000'."),
])
def test_receive_webhooks_refuses_a_port_or_status_out_of_range_before_listening(args, message):
    # when: a port beyond 65,535 used to end in an OverflowError traceback from bind() (exit 1),
    # and --status 99 or 1000 started a receiver that answered what no HTTP client accepts
    result = manage("receive_webhooks", *args)

    # then: argparse's usage and one error line, exit status 2, nothing listening
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == f"manage.py receive_webhooks: error: {message}"


@pytest.mark.django_db
@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)])
def test_replay_events_refuses_event_ids_that_do_not_exist(event_types, dry_run):
    # given: one event that exists
    endpoint = make_endpoint()
    event = make_event("evt_known", age_days=0)
    Delivery.objects.filter(pk=make_delivery(event, status="dead_lettered", age_days=0).pk).update(endpoint=endpoint)

    # when / then: a mistyped id was "Replayed 0 of 0 ...", exit 0, like the unknown endpoint before
    with pytest.raises(CommandError, match=r"^Event evt_knwon does not exist\.$"):
        run("replay_events", "--event-id", "evt_knwon", *dry_run)
    with pytest.raises(CommandError, match=r"^Events evt_a, evt_b do not exist\.$"):
        run("replay_events", "--event-id", "evt_a", "--event-id", "evt_known", "--event-id", "evt_b", *dry_run)
    assert Delivery.objects.count() == 1 and not AuditLogEntry.objects.exists()
