"""``create_api_key`` options (scopes, environments, expiry) and ``revoke_api_key``; the data
migration that keeps keys made before scopes working."""
import importlib
import io
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from vocelio_webhooks.models import ApiKey

grant_migration = importlib.import_module("vocelio_webhooks.migrations.0003_existing_api_keys_get_all_scopes")


def _create_key(*args: str) -> str:
    stdout = io.StringIO()
    call_command("create_api_key", *args, stdout=stdout, stderr=io.StringIO())
    return stdout.getvalue().rstrip("\n").splitlines()[-1]


@pytest.mark.django_db
def test_create_api_key_defaults_to_all_scopes_every_environment_no_expiry():
    # given / when
    _create_key("ops")

    # then
    key = ApiKey.objects.get()
    assert (key.scopes, key.environments, key.expires_at) == (["*"], [], None)


@pytest.mark.django_db
def test_create_api_key_with_scopes_environments_and_expiry(event_types):
    # given
    before = timezone.now()

    # when
    raw = _create_key("ci", "--scopes", "events:publish,read", "--environments", "staging",
                      "--expires-in-days", "90")

    # then
    key = ApiKey.objects.get()
    assert key.scopes == ["events:publish", "read"]
    assert key.environments == ["staging"]
    assert timedelta(days=89, hours=23) < key.expires_at - before <= timedelta(days=90, seconds=5)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/events").status_code == 200
    assert client.post("/endpoints", {}, format="json").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("args", [
    ("--scopes", "events:publish,write-everything"),
    ("--environments", "moon"),
    ("--expires-in-days", "0"),
    ("--scopes", ","),
    # Beyond datetime's year 9999: OverflowError tracebacks before the bound.
    ("--expires-in-days", "99999999999"),
    ("--expires-in-days", "3000000"),
    ("--expires-in-days", "3000000", "--dry-run"),
])
def test_create_api_key_rejects_bad_options_and_creates_nothing(args):
    # given / when / then: a one-line error, never another exception
    with pytest.raises(CommandError):
        _create_key("bad", *args)
    assert ApiKey.objects.count() == 0


@pytest.mark.django_db
def test_create_api_key_expiry_is_bounded_to_36500_days():
    # given / when / then
    with pytest.raises(CommandError, match=re.escape("argument --expires-in-days: must be a whole number from 1 to "
                                                     "36,500 days, not '36501'.")):
        _create_key("bad", "--expires-in-days", "36501")
    _create_key("century", "--expires-in-days", "36500")
    assert ApiKey.objects.get().expires_at.year >= timezone.now().year + 99


@pytest.mark.django_db
def test_create_api_key_dry_run_validates_and_creates_nothing():
    # given
    from vocelio_webhooks.models import AuditLogEntry

    stdout, stderr = io.StringIO(), io.StringIO()

    # when
    call_command("create_api_key", "ci", "--scopes", "read", "--environments", "staging", "--dry-run",
                 stdout=stdout, stderr=stderr)

    # then
    assert stdout.getvalue() == ("Would create API key 'ci' (scopes read; environments staging; never expires). "
                                 "Nothing was created.\n")
    assert "vwk_" not in stdout.getvalue() + stderr.getvalue()
    assert ApiKey.objects.count() == 0 and AuditLogEntry.objects.count() == 0
    with pytest.raises(CommandError, match="moon"):
        call_command("create_api_key", "ci", "--environments", "moon", "--dry-run", stdout=io.StringIO())


def test_create_api_key_help_ends_with_examples(capsys):
    # given / when
    with pytest.raises(SystemExit):
        call_command("create_api_key", "--help")

    # then
    assert "\nexamples:\n  python manage.py create_api_key crm-sync" in capsys.readouterr().out


@pytest.mark.django_db
def test_create_api_key_admin_alias_is_stored_as_star():
    # given / when
    _create_key("ops", "--scopes", "admin")

    # then
    assert ApiKey.objects.get().scopes == ["*"]


@pytest.mark.django_db
def test_revoke_api_key_stops_the_key_authenticating(event_types):
    # given
    raw = _create_key("leaked")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/endpoints").status_code == 200

    # when
    call_command("revoke_api_key", raw[:12], stdout=io.StringIO())

    # then
    response = client.get("/endpoints")
    assert response.status_code == 401
    assert ApiKey.objects.get().revoked_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["99999999999999999999999", "9223372036854775808", "²"])
def test_revoke_api_key_an_id_beyond_bigint_or_not_ascii_is_just_not_found(key):
    # given
    _create_key("ops")

    # when / then: not an OverflowError (SQLite) nor a ValueError (int("²"))
    with pytest.raises(CommandError, match="No API key with id or prefix"):
        call_command("revoke_api_key", key, stdout=io.StringIO())
    assert ApiKey.objects.get().revoked_at is None


@pytest.mark.django_db
def test_revoke_api_key_unknown_key_fails():
    # given / when / then
    with pytest.raises(CommandError):
        call_command("revoke_api_key", "vwk_nosuchkey", stdout=io.StringIO())


@pytest.mark.django_db
def test_grant_all_scopes_migration_gives_old_keys_star_and_keeps_scoped_keys():
    # given a key from before scopes existed, and one that already has scopes
    old = ApiKey.objects.create(name="old", prefix="vwk_old", key_hash="a" * 64, scopes=[])
    scoped = ApiKey.objects.create(name="scoped", prefix="vwk_new", key_hash="b" * 64, scopes=["read"])

    # when
    grant_migration.grant_all_scopes(django_apps, SimpleNamespace(connection=SimpleNamespace(alias="default")))

    # then
    old.refresh_from_db()
    scoped.refresh_from_db()
    assert (old.scopes, scoped.scopes) == (["*"], ["read"])
