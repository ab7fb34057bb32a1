"""Readiness (``GET /health/ready``) and the heartbeats behind it, with a real Celery worker and a
real ``celery beat`` process writing them."""
import io
import json
import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import ROOT, assert_seed_error, wait_until
from vocelio_webhooks import monitoring
from vocelio_webhooks.logs import JsonFormatter, MaskPersonalDataFilter
from vocelio_webhooks.models import Heartbeat


def start_beat(log_path: Path) -> subprocess.Popen:
    """A real ``celery beat`` on the test database (the scheduler in CELERY_BEAT_SCHEDULER)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "VOCELIO_TEST_DB_NAME": str(settings.DATABASES["default"]["NAME"])}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "vocelio_webhooks", "beat", "--loglevel", "INFO",
         "--schedule", str(Path(settings.VAR_DIR) / "test-beat-schedule")],
        cwd=ROOT, env=env, stdout=open(log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_health_ready_answers_200_with_live_worker_and_beat(worker):
    # given: the session's worker and a real beat process, each writing its own heartbeat
    log_path = Path(settings.VAR_DIR) / "test-beat.log"
    beat = start_beat(log_path)
    try:
        wait_until(lambda: Heartbeat.objects.filter(component="beat").exists(), timeout=30)
        wait_until(lambda: Heartbeat.objects.filter(component="worker").exists(), timeout=10)

        # when
        response = APIClient().get("/health/ready")
    finally:
        stop(beat)

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    checks = body["checks"]
    assert set(checks) == {"database", "broker", "worker", "beat"}
    assert all(check["status"] == "ok" for check in checks.values())
    assert checks["worker"]["alive"] >= 1
    assert 0 <= checks["beat"]["last_seen_seconds_ago"] <= settings.WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS


def test_beat_heartbeat_names_beat_host_and_pid(worker):
    # given
    beat = start_beat(Path(settings.VAR_DIR) / "test-beat.log")
    try:
        # when
        row = wait_until(lambda: Heartbeat.objects.filter(component="beat").first(), timeout=30)
    finally:
        stop(beat)

    # then: the row belongs to that beat process (host:pid), and it is recent
    assert row.instance.endswith(f":{beat.pid}")
    assert timezone.now() - row.seen_at < timedelta(seconds=30)


def test_worker_heartbeat_is_renewed_every_interval(worker):
    # given: the worker's row (the flush between tests removed the previous one)
    first = wait_until(lambda: Heartbeat.objects.filter(component="worker").first(), timeout=10)

    # when: one heartbeat interval (1 s in tests) passes
    renewed = wait_until(
        lambda: Heartbeat.objects.filter(component="worker", instance=first.instance,
                                         seen_at__gt=first.seen_at).first(),
        timeout=10,
    )

    # then
    assert first.instance.startswith("celery@")
    assert renewed.seen_at > first.seen_at


def test_health_ready_answers_503_not_ready_when_beat_heartbeat_is_stale(db, settings):
    # given: beat last seen two minutes ago, more than the allowed age
    settings.WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS = 60
    Heartbeat.objects.filter(component="beat").delete()
    monitoring.record_heartbeat(component="beat", instance="host:1", seen_at=timezone.now() - timedelta(seconds=120))

    # when
    response = APIClient().get("/health/ready")

    # then
    error = assert_seed_error(response, 503, "NOT_READY")
    assert "beat" in error["message"]
    assert error["details"]["beat"]["status"] == "fail"
    assert error["details"]["beat"]["error"] == "stale_heartbeat"
    assert error["details"]["beat"]["last_seen_seconds_ago"] >= 120
    assert error["details"]["database"] == {"status": "ok"}
    assert error["details"]["broker"] == {"status": "ok"}
    assert settings.CELERY_BROKER_URL.encode() not in response.content
    assert b"host:1" not in response.content  # no host names to an unauthenticated caller


def test_health_ready_answers_503_when_no_beat_ever_ran(db):
    # given
    Heartbeat.objects.filter(component="beat").delete()

    # when
    response = APIClient().get("/health/ready")

    # then
    error = assert_seed_error(response, 503, "NOT_READY")
    assert error["details"]["beat"] == {"status": "fail", "last_seen_seconds_ago": None,
                                        "max_age_seconds": settings.WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS,
                                        "error": "no_heartbeat"}


def test_check_readiness_fails_heartbeats_older_than_max_age(db, settings):
    # given: both components seen just now
    settings.WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS = 60
    now = timezone.now()
    monitoring.record_heartbeat(component="worker", instance="celery@a", seen_at=now)
    monitoring.record_heartbeat(component="beat", instance="host:1", seen_at=now)

    # when: checked as of 61 s later, and as of 59 s later
    late = monitoring.check_readiness(now=now + timedelta(seconds=61))
    in_time = monitoring.check_readiness(now=now + timedelta(seconds=59))

    # then
    assert not late.ready
    assert late.checks["worker"]["status"] == "fail" and late.checks["worker"]["error"] == "stale_heartbeat"
    assert late.checks["worker"]["alive"] == 0
    assert late.checks["beat"]["status"] == "fail"
    assert in_time.checks["worker"] == {"status": "ok", "last_seen_seconds_ago": 59.0, "max_age_seconds": 60,
                                        "alive": 1}
    assert in_time.checks["beat"]["status"] == "ok"


def test_record_heartbeat_removes_rows_gone_for_a_day(db):
    # given: a worker container that stopped two days ago
    now = timezone.now()
    monitoring.record_heartbeat(component="worker", instance="celery@old", seen_at=now - timedelta(days=2))

    # when: another worker writes its heartbeat
    monitoring.record_heartbeat(component="worker", instance="celery@new", seen_at=now)

    # then
    assert list(Heartbeat.objects.filter(component="worker", instance__in=["celery@old", "celery@new"])
                .values_list("instance", flat=True)) == ["celery@new"]


def test_health_ready_needs_no_credentials_and_ignores_accept(db):
    # when: a probe without credentials that accepts only text
    response = APIClient().get("/health/ready", HTTP_ACCEPT="text/plain")

    # then: answered (ready or not), never 401/403/406
    assert response.status_code in (200, 503)
    assert response["Content-Type"] == "application/json"


def test_health_ready_answers_503_naming_broker_without_its_url(db, monkeypatch):
    # given: a broker nobody listens on, with a password in its URL
    from vocelio_webhooks.celery import app

    monkeypatch.setitem(app.conf, "broker_read_url", "redis://:hunter2-secret@127.0.0.1:1/0")

    # when
    response = APIClient().get("/health/ready")

    # then
    error = assert_seed_error(response, 503, "NOT_READY")
    assert error["details"]["broker"]["status"] == "fail"
    assert "broker" in error["message"]
    assert b"hunter2" not in response.content and b"127.0.0.1:1" not in response.content
    assert error["details"]["database"] == {"status": "ok"}


def test_health_ready_503_is_logged_as_a_warning_not_an_error(db, caplog):
    # given: no beat ever ran, so readiness fails
    Heartbeat.objects.filter(component="beat").delete()

    # when
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        response = APIClient().get("/health/ready")

    # then: the same 503 body, logged once by django.request at WARNING, never at ERROR
    assert_seed_error(response, 503, "NOT_READY")
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "Service Unavailable: /health/ready")]
    assert records[0].status_code == 503


def test_log_mask_keeps_celery_task_names_and_masks_personal_names():
    # given: the service's masking filter and JSON formatter, and what Celery's tracer logs
    # (celery.app.trace.info: the context both as the format arguments and as extra "data")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(MaskPersonalDataFilter(fields=("email", "phone", "name")))
    handler.setFormatter(JsonFormatter())
    celery_logger, app_logger = logging.getLogger("celery.app.trace"), logging.getLogger("tests.monitoring.events")
    context = {"id": "c0ffee", "name": "deliveries.tasks.deliver", "return_value": "None", "runtime": 0.01,
               "args": "(12,)", "kwargs": "{}"}
    lead = {"lead": {"name": "John Doe", "email": "john.doe@example.com"}}

    # when
    for logger in (celery_logger, app_logger):
        logger.addHandler(handler)
    try:
        celery_logger.info("Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s", context,
                           extra={"data": context})
        celery_logger.info("Task received", extra={"data": {"name": "John", "id": "x"}})
        app_logger.info("lead published", extra={"data": lead})
    finally:
        for logger in (celery_logger, app_logger):
            logger.removeHandler(handler)

    # then: the task name is readable where Celery puts it; a person's name is still masked,
    # in an application's event data and in a celery.* record whose "name" is not a task name
    task, not_a_task, event = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert task["data"]["name"] == "deliveries.tasks.deliver" and task["logger"] == "celery.app.trace"
    assert task["message"] == "Task deliveries.tasks.deliver[c0ffee] succeeded in 0.01s: None"
    assert not_a_task["data"]["name"] == "[masked]"
    assert event["data"] == {"lead": {"name": "[masked]", "email": "[masked]"}}
    assert "John" not in buffer.getvalue() and "john.doe" not in buffer.getvalue()
