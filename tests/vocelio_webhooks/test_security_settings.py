"""Security settings: `check --deploy` passes with the production settings, local http keeps
working, and the headers that are safe over http are always sent."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def _check_deploy(tmp_path, **env) -> subprocess.CompletedProcess:
    """``manage.py check --deploy --fail-level WARNING`` with the real settings module (not the
    test settings), the given environment and nothing inherited that could change the result."""
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "SECRET_KEY", "WEBHOOK_", "DATABASE_URL", "REDIS_URL", "CELERY_"))}
    full_env = {**base, "DJANGO_SETTINGS_MODULE": "vocelio_webhooks.settings", "VOCELIO_VAR_DIR": str(tmp_path),
                "DJANGO_DEBUG": "false", **env}
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120, check=False)


def test_check_deploy_passes_with_production_settings(tmp_path):
    # given
    env = {"DJANGO_HTTPS": "true", "SECRET_KEY": secrets.token_urlsafe(50)}

    # when
    result = _check_deploy(tmp_path, **env)

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_https_settings_are_off(tmp_path):
    # given plain http, as `make run` serves
    env = {"DJANGO_HTTPS": "false", "SECRET_KEY": secrets.token_urlsafe(50)}

    # when
    result = _check_deploy(tmp_path, **env)

    # then
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr + result.stdout


def test_check_deploy_refuses_a_weak_secret_key(tmp_path):
    # given
    env = {"DJANGO_HTTPS": "true", "SECRET_KEY": "short"}

    # when
    result = _check_deploy(tmp_path, **env)

    # then
    assert result.returncode != 0
    assert "security.W009" in result.stderr + result.stdout


def test_settings_require_secret_key_when_not_debug(tmp_path):
    # given
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    env.update({"DJANGO_SETTINGS_MODULE": "vocelio_webhooks.settings", "VOCELIO_VAR_DIR": str(tmp_path),
                "DJANGO_DEBUG": "false"})
    code = "import environ; environ.Env.read_env = lambda *a, **k: None; import vocelio_webhooks.settings"

    # when
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=False)

    # then
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.parametrize(("agent", "refused"), [("Acme-Hooks/2.0 (ops@example.com)", False), ("Acmé/1", True),
                                               ("Acme/1\r\nX-Injected: yes", True), (" Acme/1", True)])
def test_settings_refuse_a_user_agent_that_cannot_be_a_header(tmp_path, agent, refused):
    # given
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "vocelio_webhooks.settings", "VOCELIO_VAR_DIR": str(tmp_path),
           "WEBHOOK_USER_AGENT": agent}
    code = "import environ; environ.Env.read_env = lambda *a, **k: None; import vocelio_webhooks.settings"

    # when
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=False)

    # then: at start-up, not at every delivery
    assert (result.returncode != 0) == refused, result.stderr
    assert ("WEBHOOK_USER_AGENT must be visible ASCII" in result.stderr) == refused


@pytest.mark.django_db
def test_security_headers_are_sent_over_plain_http():
    # given
    client = Client()

    # when
    response = client.get("/admin/login/")

    # then
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response  # DJANGO_HTTPS is off in tests, as in `make run`


@pytest.mark.django_db
def test_ssl_redirect_spares_health_checks(settings):
    # given DJANGO_HTTPS=true's redirect
    settings.SECURE_SSL_REDIRECT = True

    # when
    api = Client().get("/endpoints")
    health = Client().get("/health")

    # then
    assert api.status_code == 301
    assert api["Location"].startswith("https://")
    assert health.status_code == 200


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("WEBHOOK_WAKEUP_BUDGET_SECONDS", "bogus-hunter2", "WEBHOOK_WAKEUP_BUDGET_SECONDS must be a valid float"),
    ("WEBHOOK_WAKEUP_BUDGET_SECONDS", "inf", "WEBHOOK_WAKEUP_BUDGET_SECONDS must be a valid float"),
    ("WEBHOOK_BATCH_SIZE", "ten-hunter2", "WEBHOOK_BATCH_SIZE must be a valid int"),
    ("WEBHOOK_BATCH_SIZE", "$hunter2", "WEBHOOK_BATCH_SIZE must be a valid int"),
    ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:port/db", "DATABASE_URL must be a valid database URL"),
    ("WEBHOOK_ALLOWED_PRIVATE_CIDRS", "10.0.0.0/33", "WEBHOOK_ALLOWED_PRIVATE_CIDRS: "),
])
def test_settings_refuse_a_value_their_type_cannot_read_naming_the_variable(tmp_path, name, value, expected):
    # given: a typo in one variable (it used to stop start-up with a bare ValueError from int()/float(),
    # or, for "$hunter2", to fall back to the default: django-environ reads "$NAME" as a reference)
    env = {"SECRET_KEY": secrets.token_urlsafe(50), name: value}

    # when: the settings load, as at the start of web, worker and beat
    result = _check_deploy(tmp_path, **env)

    # then: start-up fails with ImproperlyConfigured naming the variable; the value (it may be a
    # secret) is nowhere in the output, not even in a chained exception
    assert result.returncode != 0
    assert f"django.core.exceptions.ImproperlyConfigured: {expected}" in result.stderr, result.stderr[-2000:]
    assert "hunter2" not in result.stderr + result.stdout


def test_settings_take_a_secret_key_starting_with_a_dollar_as_it_is(tmp_path):
    # given: a key as Django generates them, which may start with "$" (django-environ would read it
    # as a reference to the variable named by the rest of the key, and print that name)
    key = "$" + secrets.token_urlsafe(50)

    # when
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.SECRET_KEY)"], cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECRET_KEY"))},
             "DJANGO_SETTINGS_MODULE": "vocelio_webhooks.settings", "VOCELIO_VAR_DIR": str(tmp_path),
             "DJANGO_DEBUG": "false", "SECRET_KEY": key},
        capture_output=True, text=True, timeout=120, check=False)

    # then: the service starts with exactly that key
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == key
