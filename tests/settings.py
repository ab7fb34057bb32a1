"""Test settings: the real settings with a throwaway SECRET_KEY, the SSRF guard on with only
127.0.0.1 (the test receiver) opened — tests of the guard intercept name resolution instead of
switching it off — and runtime files in ``VOCELIO_VAR_DIR`` (default ``var/test``)."""
import os
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
# One folder per test run (SQLite file, embedded broker), inherited by the worker subprocess,
# so two runs on one machine never share a database or a queue.
os.environ.setdefault("VOCELIO_VAR_DIR",
                      str(Path(__file__).resolve().parent.parent / "var" / "test" / f"run-{os.getpid()}"))
# The SSRF guard stays on: only the test receiver's address (127.0.0.1) is opened. Set, not
# defaulted, so a developer's .env (`make env` writes WEBHOOK_ALLOW_PRIVATE_NETWORKS=true) cannot
# switch the guard off under the tests; the worker subprocess inherits both.
os.environ["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "false"
os.environ["WEBHOOK_ALLOWED_PRIVATE_CIDRS"] = "127.0.0.1/32"
os.environ.setdefault("WEBHOOK_SWEEP_GRACE_SECONDS", "2")
# Owner mail goes to files under the run folder, where tests (and the worker subprocess) find it.
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
# Short circuit-breaker cool-downs and claim margins keep health and crash tests fast.
os.environ.setdefault("WEBHOOK_CIRCUIT_COOLDOWN_SECONDS", "2")
os.environ.setdefault("WEBHOOK_CLAIM_MARGIN_SECONDS", "3")
# Heartbeats every second, so readiness tests see a live worker soon after the flush between tests.
os.environ.setdefault("WEBHOOK_HEARTBEAT_INTERVAL_SECONDS", "1")

from vocelio_webhooks.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The worker subprocess started by tests/conftest.py is pointed at the test database this way.
if os.environ.get("VOCELIO_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["VOCELIO_TEST_DB_NAME"]  # noqa: F405
