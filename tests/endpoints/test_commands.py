"""``rotate_secret``: the command rotates like ``POST /endpoints/{id}/rotate-secret`` (same service,
same audit entry), prints the new secret once on the last line, and changes nothing in a dry run."""
import io
import logging
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from endpoints.models import WebhookEndpoint
from endpoints.signing import generate_secret
from vocelio_webhooks.models import AuditLogEntry


def make_endpoint(**fields) -> WebhookEndpoint:
    values = {"name": "CRM", "url": "https://crm.example.com/hook", "events": ["lead.*"],
              "secret": generate_secret(), **fields}
    return WebhookEndpoint.objects.create(**values)


def run(*args: str) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("rotate_secret", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


@pytest.mark.django_db
def test_rotate_secret_prints_new_secret_last_and_keeps_old_one_for_the_grace_period(caplog):
    # given
    endpoint = make_endpoint()
    old = endpoint.secret
    caplog.set_level(logging.DEBUG)

    # when
    out, err = run(str(endpoint.pk), "--grace-hours", "48")

    # then
    endpoint.refresh_from_db()
    assert out.splitlines() == [endpoint.secret]
    assert endpoint.secret.startswith("whsec_") and endpoint.secret != old
    assert endpoint.previous_secret == old
    expected_expiry = timezone.now() + timedelta(hours=48)
    assert abs(endpoint.previous_secret_expires_at - expected_expiry) < timedelta(seconds=30)
    assert f"endpoint {endpoint.pk} 'CRM'" in err and "stays valid until" in err
    assert endpoint.secret not in err
    assert endpoint.secret not in caplog.text and old not in caplog.text


@pytest.mark.django_db
def test_rotate_secret_is_audited_like_the_api_with_the_secret_masked():
    # given
    endpoint = make_endpoint()

    # when
    out, _ = run(str(endpoint.pk))

    # then
    entry = AuditLogEntry.objects.get(action="rotate_secret")
    assert entry.actor == "command:rotate_secret"
    assert entry.object_type == "endpoints.webhookendpoint" and entry.object_id == str(endpoint.pk)
    assert {"secret", "previous_secret", "previous_secret_expires_at"} <= set(entry.changes)
    assert out.strip() not in str(entry.changes)


@pytest.mark.django_db
def test_rotate_secret_zero_grace_drops_the_old_secret_at_once():
    # given
    endpoint = make_endpoint()

    # when
    _, err = run(str(endpoint.pk), "--grace-hours", "0")

    # then
    endpoint.refresh_from_db()
    assert (endpoint.previous_secret, endpoint.previous_secret_expires_at) == ("", None)
    assert "stops working at once" in err


@pytest.mark.django_db
def test_rotate_secret_dry_run_changes_nothing_and_shows_no_secret():
    # given
    endpoint = make_endpoint()
    before = WebhookEndpoint.objects.values("secret", "previous_secret", "previous_secret_expires_at").get()

    # when
    out, _ = run(str(endpoint.pk), "--dry-run", "--grace-hours", "2")

    # then
    assert WebhookEndpoint.objects.values("secret", "previous_secret", "previous_secret_expires_at").get() == before
    assert not AuditLogEntry.objects.exists()
    assert out.splitlines()[-1].startswith(f"Would rotate the signing secret of endpoint {endpoint.pk} 'CRM'")
    assert "whsec_" not in out


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (("999999",), "Endpoint 999999 does not exist."),
    (("99999999999999999999999",), "argument endpoint_id: must be a whole number from 1 to 9,223,372,036,854,775,807"),
    (("{pk}", "--grace-hours", "-1"), "argument --grace-hours: must be a finite number from 0 to 168 hours, not '-1'."),
    # The service's limit (604,800 s) said in the option's name and unit.
    (("{pk}", "--grace-hours", "169"),
     "argument --grace-hours: must be a finite number from 0 to 168 hours, not '169'."),
    (("{pk}", "--dry-run", "--grace-hours", "200"),
     "argument --grace-hours: must be a finite number from 0 to 168 hours"),
    (("{pk}", "--grace-hours", "168.01"), "argument --grace-hours: must be a finite number from 0 to 168 hours"),
    # nan used to crash round() with a ValueError traceback.
    (("{pk}", "--grace-hours", "nan"),
     "argument --grace-hours: must be a finite number from 0 to 168 hours, not 'nan'."),
    (("{pk}", "--grace-hours", "inf"),
     "argument --grace-hours: must be a finite number from 0 to 168 hours, not 'inf'."),
])
def test_rotate_secret_rejects_bad_input_with_one_line_and_changes_nothing(args, message):
    # given
    endpoint = make_endpoint()
    secret = endpoint.secret

    # when / then
    with pytest.raises(CommandError, match=message):
        run(*(arg.format(pk=endpoint.pk) for arg in args))
    endpoint.refresh_from_db()
    assert endpoint.secret == secret and not AuditLogEntry.objects.exists()


@pytest.mark.django_db
def test_rotate_secret_refuses_an_endpoint_without_a_secret_method():
    # given
    endpoint = make_endpoint(signature_method="api_key", api_key="crm-api-key-123", secret="")

    # when / then
    with pytest.raises(CommandError, match="uses no secret to rotate"):
        run(str(endpoint.pk), "--dry-run")


def test_rotate_secret_help_shows_examples(capsys):
    # given / when: argparse prints --help to the process's stdout and exits
    with pytest.raises(SystemExit):
        call_command("rotate_secret", "--help")

    # then
    out = capsys.readouterr().out
    assert "examples:\n  python manage.py rotate_secret 7 --dry-run" in out and "--grace-hours 48" in out


@pytest.mark.django_db
def test_rotate_secret_accepts_the_longest_grace_period_of_168_hours():
    # given
    endpoint = make_endpoint()
    before = timezone.now()

    # when
    run(str(endpoint.pk), "--grace-hours", "168")

    # then
    endpoint.refresh_from_db()
    grace = endpoint.previous_secret_expires_at - before
    assert timedelta(hours=167, minutes=59) < grace <= timedelta(hours=168, seconds=5)


@pytest.mark.django_db
def test_rotate_encryption_keys_refuses_a_batch_size_that_would_skip_or_crash():
    # given
    make_endpoint()

    # when / then: 0 crashed range(); -1 re-encrypted nothing and said so
    for size in ("0", "-1"):
        with pytest.raises(CommandError, match=f"argument --batch-size: must be a whole number from 1 to 10,000 rows, "
                                               f"not '{size}'."):
            call_command("rotate_encryption_keys", "--batch-size", size, stdout=io.StringIO())
    assert not AuditLogEntry.objects.exists()


def test_validate_endpoints_names_rows_saved_before_a_rule_without_their_values(event_types):
    # given: one valid endpoint, and two written behind validation's back (as rows saved before
    # the header-value and control-character rules existed)
    good = WebhookEndpoint.objects.create(name="Good", url="https://good.example.com/h", events=["lead.*"])
    key = WebhookEndpoint.objects.create(name="Key", url="https://key.example.com/h", events=["lead.*"],
                                         signature_method="api_key", api_key="ok-key-1234567890")
    named = WebhookEndpoint.objects.create(name="Named", url="https://named.example.com/h", events=["lead.*"])
    WebhookEndpoint.objects.filter(pk=named.pk).update(name="a\u001b[2Jb")
    key.api_key = " supersecretkey123"
    key.save(update_fields=["api_key"])  # save() does not validate
    out = io.StringIO()

    # when
    with pytest.raises(CommandError, match="2 endpoint"):
        call_command("validate_endpoints", stdout=out)

    # then: each bad row by id with the failing field, never the value; the good one not listed
    text = out.getvalue()
    assert f"endpoint {key.pk} (production): VALIDATION_ERROR in api_key" in text
    assert f"endpoint {named.pk} (production): VALIDATION_ERROR in name" in text
    assert f"endpoint {good.pk} " not in text
    assert "supersecretkey123" not in text and "\u001b" not in text


def test_validate_endpoints_passes_when_every_endpoint_is_valid(event_types):
    # given
    WebhookEndpoint.objects.create(name="Good", url="https://good.example.com/h", events=["lead.*"])
    out = io.StringIO()

    # when
    call_command("validate_endpoints", stdout=out)

    # then
    assert out.getvalue().strip() == "Every endpoint passes validation."
