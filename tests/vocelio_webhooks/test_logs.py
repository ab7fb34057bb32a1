"""Logs never carry personal data or secrets (issue 5, "PII masking in logs").

Unit tests drive the masking filter and the two formatters through a real handler; the flow test
runs a full delivery of the seed's ``lead.created`` payload (API → database → real worker → real
receiver) with every logger at DEBUG and SQL logging on, and reads what the service actually wrote:
the test process's root handler and a worker's log file.
"""
import io
import json
import logging
import os
import re
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.db import connection

from tests.conftest import ROOT, own_worker_process, wait_until
from vocelio_webhooks.logs import JsonFormatter, MaskPersonalDataFilter, PlainFormatter, mask_patterns

EMAIL = "john.doe@example.com"
PHONE = "+1-555-0123"
LEAD = {"lead": {"id": "lead_123", "name": "John Doe", "email": EMAIL, "phone": PHONE, "source": "website",
                 "score": 85, "created_at": "2025-08-05T17:30:00Z"},
        "agent": {"id": "agent_456", "name": "Sarah Johnson", "email": "sarah@vocelio.com"}}
PERSONAL = (EMAIL, PHONE, "John Doe", "sarah@vocelio.com", "Sarah Johnson")


@contextmanager
def logged(formatter: logging.Formatter, fields=("email", "phone", "name")):
    """A logger whose only handler is the service's: masking filter + ``formatter`` → a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(MaskPersonalDataFilter(fields=fields))
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"tests.logs.{id(buffer)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)


@contextmanager
def root_handler_output():
    """What the configured root handler (settings.LOGGING) writes, captured while the block runs."""
    handler = next(h for h in logging.getLogger().handlers
                   if any(isinstance(f, MaskPersonalDataFilter) for f in h.filters))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def test_mask_filter_masks_email_and_phone_in_message_arguments():
    # given
    with logged(PlainFormatter("%(levelname)s %(message)s")) as (logger, buffer):
        # when
        logger.info("lead %s called from %s about %s", EMAIL, PHONE, "+14155552671")

    # then
    line = buffer.getvalue()
    assert line == "INFO lead [email] called from [phone] about [phone]\n"


def test_mask_filter_masks_configured_fields_and_keeps_the_rest_in_json_extra():
    # given
    with logged(JsonFormatter()) as (logger, buffer):
        # when
        logger.warning("delivery failed", extra={"payload": LEAD, "delivery_id": 42})

    # then
    record = json.loads(buffer.getvalue())
    assert record["message"] == "delivery failed"
    assert record["level"] == "WARNING"
    assert record["delivery_id"] == 42
    assert record["payload"]["lead"] == {"id": "lead_123", "name": "[masked]", "email": "[masked]",
                                         "phone": "[masked]", "source": "website", "score": 85,
                                         "created_at": "2025-08-05T17:30:00Z"}
    assert not any(value in buffer.getvalue() for value in PERSONAL)


def test_mask_filter_masks_fields_written_into_message_text():
    # given
    body = json.dumps({"data": LEAD}, separators=(",", ":"))
    with logged(PlainFormatter("%(message)s"), fields=("name", "first_name")) as (logger, buffer):
        # when
        logger.debug("body=%s dict=%r query=?first_name=Ann&email=a%%40b.co", body, {"name": "Bob Stone"})

    # then
    line = buffer.getvalue()
    assert '"name":"[masked]"' in line
    assert "'name': '[masked]'" in line
    assert "first_name=[masked]" in line
    assert not any(value in line for value in (*PERSONAL, "Bob Stone", "Ann", "a%40b.co"))


def test_mask_filter_never_logs_credentials():
    # given
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    api_key = "vwk_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
    with logged(JsonFormatter(), fields=()) as (logger, buffer):
        # when
        logger.info("rotated secret=%s for client_secret: 'abc123xyz'", secret,
                    extra={"headers": {"Authorization": f"Bearer {api_key}", "X-Api-Key": "k-123456",
                                       "Content-Type": "application/json"},
                           "token": "opaque-token-value", "note": f"called with Bearer {api_key}"})

    # then
    output = buffer.getvalue()
    record = json.loads(output)
    assert record["headers"] == {"Authorization": "[secret]", "X-Api-Key": "[secret]",
                                 "Content-Type": "application/json"}
    assert record["token"] == "[secret]"
    assert record["note"] == "called with Bearer [secret]"
    assert not any(value in output for value in (secret, api_key, "k-123456", "abc123xyz", "opaque-token-value"))


def test_mask_filter_masks_exception_tracebacks():
    # given
    for formatter in (PlainFormatter("%(message)s"), JsonFormatter()):
        with logged(formatter) as (logger, buffer):
            # when
            try:
                raise ValueError(f"receiver rejected {EMAIL} / {PHONE}")
            except ValueError:
                logger.exception("send failed")

        # then
        output = buffer.getvalue()
        assert "ValueError: receiver rejected [email] / [phone]" in output.replace("\\n", "\n")
        assert EMAIL not in output and PHONE not in output


@pytest.mark.parametrize("text", [
    "+1-555-0123", "+14155552671", "+44 20 7946 0958", "(415) 555-2671", "415-555-2671", "415.555.2671",
    "555-0123", "+1 (415) 555-2671", "1-555-0123", "%2B1-555-0123",
])
def test_mask_patterns_masks_phone_spellings(text):
    # given / when
    masked = mask_patterns(f"call {text} now")

    # then
    assert masked == "call [phone] now"


@pytest.mark.parametrize("text", [
    "delivery 12345 took 234 ms", "2025-08-05T17:30:00+00:00", "127.0.0.1:8019", "id 1700000000000",
    "task 3c1c7a47-0d66-4d8c-9a62-7f0a2a3d5a0b succeeded in 0.0123s", "HTTP/1.1 200 11", "version 2.10.1",
])
def test_mask_patterns_keeps_ids_times_and_addresses(text):
    # given / when
    masked = mask_patterns(text)

    # then
    assert masked == text


def test_json_formatter_writes_one_object_per_line():
    # given
    with logged(JsonFormatter()) as (logger, buffer):
        # when
        logger.info("first")
        logger.error("second")

    # then
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [(r["level"], r["message"]) for r in records] == [("INFO", "first"), ("ERROR", "second")]
    assert all(r["timestamp"].endswith("+00:00") and r["logger"].startswith("tests.logs.") for r in records)


def test_logging_settings_send_django_loggers_once_through_the_masking_root_handler():
    # given
    with root_handler_output() as output:
        # when
        logging.getLogger("django.request").warning("Bad Request: /events/publish?email=%s", EMAIL)
        logging.getLogger("django.server").info('"POST /privacy/erase?phone=%s HTTP/1.1" 200', PHONE)

    # then
    lines = output.getvalue().splitlines()
    assert len(lines) == 2
    assert EMAIL not in output.getvalue() and PHONE not in output.getvalue()
    assert "email=[masked]" in lines[0]


@pytest.mark.parametrize(("env", "expected"), [
    ({"DJANGO_DEBUG": "false"}, "json"),
    ({"DJANGO_DEBUG": "true"}, "plain"),
    ({"DJANGO_DEBUG": "false", "WEBHOOK_LOG_FORMAT": "plain"}, "plain"),
])
def test_settings_log_format_defaults_to_json_outside_debug(env, expected):
    # given
    environment = {k: v for k, v in os.environ.items() if k not in ("WEBHOOK_LOG_FORMAT", "DJANGO_SETTINGS_MODULE")}
    environment.update(env, SECRET_KEY="test-only", DJANGO_SETTINGS_MODULE="vocelio_webhooks.settings")

    # when
    result = subprocess.run(
        [sys.executable, "-c",
         "from django.conf import settings; print(settings.LOGGING['handlers']['console']['formatter'])"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )

    # then
    assert result.stdout.strip() == expected, result.stderr


def test_settings_log_format_refuses_unknown_value():
    # given
    environment = {**os.environ, "SECRET_KEY": "test-only", "WEBHOOK_LOG_FORMAT": "xml",
                   "DJANGO_SETTINGS_MODULE": "vocelio_webhooks.settings"}

    # when
    result = subprocess.run([sys.executable, "-c", "from django.conf import settings; settings.LOGGING"],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False)

    # then
    assert result.returncode != 0
    assert "WEBHOOK_LOG_FORMAT must be 'json' or 'plain'" in result.stderr


# --- a full delivery, logged at DEBUG -----------------------------------------------------------
@pytest.fixture
def debug_worker(celery_worker_process, transactional_db):
    """A worker started like production with LOG_LEVEL=DEBUG, DJANGO_DEBUG=true (every SQL
    statement and its parameters logged) and JSON logs, in place of the session's."""
    env = {"LOG_LEVEL": "DEBUG", "DJANGO_DEBUG": "true", "WEBHOOK_LOG_FORMAT": "json"}
    with own_worker_process(celery_worker_process, log_name="test-worker-debug.log", env=env) as worker:
        yield worker


def test_delivery_of_seed_lead_logs_no_email_or_phone(api, receiver, debug_worker, caplog):
    # given
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")
    endpoint = api.post("/endpoints", {"name": "CRM", "url": receiver.url("/hook"), "events": ["lead.*"]},
                        format="json")
    assert endpoint.status_code == 201, endpoint.content
    connection.force_debug_cursor = True  # log every SQL statement with its parameters, as DEBUG does
    try:
        with root_handler_output() as output:
            # when
            published = api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt_pii_1",
                                                     "data": LEAD}, format="json")
            request = receiver.wait_for(1)[0]
            delivery_id = published.json()["deliveries"][0]["id"]
            wait_until(lambda: api.get(f"/deliveries/{delivery_id}").json()["status"] == "succeeded")
    finally:
        connection.force_debug_cursor = False
    # the task's "succeeded" line is written once the task returns, after the delivery's commit
    wait_until(lambda: any('"celery.app.trace"' in line and " succeeded in " in line
                           for line in debug_worker.log_path.read_text().splitlines()), timeout=10)

    # then
    assert published.status_code == 202, published.content
    assert request.json()["data"] == LEAD  # the receiver gets the real data; only logs are masked
    api_side = output.getvalue()
    api_lines = [json.loads(line) for line in api_side.splitlines()]
    assert any('INSERT INTO "events_event"' in line["message"] and re.search(r'"name": ?"\[masked\]"', line["message"])
               for line in api_lines)  # the event's INSERT, with its data, was logged
    assert not any(value in api_side for value in PERSONAL)
    assert not any(value in caplog.text for value in PERSONAL)  # later handlers get the masked record
    worker_side = debug_worker.log_path.read_text()
    worker_lines = [json.loads(line) for line in worker_side.splitlines() if line.startswith("{")]
    inserts = [line["message"] for line in worker_lines
               if 'INSERT INTO "deliveries_deliveryattempt"' in line["message"]]
    copies = [line["message"] for line in worker_lines if 'COPY "deliveries_deliveryattempt"' in line["message"]]
    assert inserts or copies  # the attempt's write was logged
    # an INSERT logs its values, request body included, masked; the batch engine's COPY (PostgreSQL)
    # logs no values at all
    assert all("[masked]" in message for message in inserts)
    assert any(line["logger"] == "celery.app.trace" and "succeeded" in line["message"] for line in worker_lines)
    assert not any(value in worker_side for value in PERSONAL)
