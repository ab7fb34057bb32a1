"""API defects found by the README walks: chunked request bodies (WSGI level, and once through a
real gunicorn), a UTF-8 byte order mark, non-string ids, a duplicate event type, ``Accept:
text/html``, and event-type patterns on ``GET /deliveries``."""
import codecs
import contextlib
import gzip
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import signals
from django.db import close_old_connections

from deliveries.models import Delivery
from events.models import Event, EventType
from tests.conftest import assert_seed_error

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


# --- chunked request bodies -------------------------------------------------------------------
def _chunked(body: bytes, size: int = 7) -> bytes:
    """``body`` in HTTP/1.1 chunked framing, ``size`` bytes a chunk (several chunks on purpose)."""
    framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return framed + b"0\r\n\r\n"


class _DechunkingInput:
    """A ``wsgi.input`` as gunicorn gives it for a chunked request: the de-chunked body, ending
    at the end of the body (``wsgi.input_terminated``), returned a few bytes per ``read``."""

    def __init__(self, body: bytes):
        self._stream = io.BytesIO(body)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(min(size, 5) if size and size > 0 else 5)


def _call_wsgi(body: bytes, *, api_key: str, input_terminated: bool, path: str = "/events/publish",
               transfer_encoding: str = "chunked", extra_environ: dict | None = None):
    """Call ``vocelio_webhooks.wsgi.application`` (what gunicorn serves) with a chunked POST
    (``extra_environ`` added to its environ); returns ``(status line, headers, body bytes)``."""
    from vocelio_webhooks.wsgi import application

    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json", "HTTP_TRANSFER_ENCODING": transfer_encoding,
        "HTTP_AUTHORIZATION": f"Bearer {api_key}", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": _DechunkingInput(body), "wsgi.errors": sys.stderr, "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if input_terminated:
        environ["wsgi.input_terminated"] = True
    environ.update(extra_environ or {})
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, dict(headers)

    # As Django's test client does: the end of this request must not close the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        result = application(environ, start_response)
        content = b"".join(result)
        getattr(result, "close", lambda: None)()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return answer["status"], answer["headers"], content


def test_wsgi_chunked_publish_is_read_when_the_server_terminates_the_input(api_key, event_types):
    # given
    body = json.dumps({"event_type": "lead.created", "event_id": "evt_chunked_wsgi", "data": {"lead": {"id": "l1"}}})

    # when
    status, _, content = _call_wsgi(body.encode(), api_key=api_key, input_terminated=True)

    # then
    assert status.startswith("202"), content
    assert json.loads(content)["event_id"] == "evt_chunked_wsgi"
    assert Event.objects.get(event_id="evt_chunked_wsgi").data == {"lead": {"id": "l1"}}


def test_wsgi_chunked_publish_over_the_size_limit_answers_413(api_key, event_types, settings):
    # given
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200
    body = json.dumps({"event_type": "lead.created", "event_id": "evt_big", "data": {"note": "x" * 300}}).encode()

    # when
    status, headers, content = _call_wsgi(body, api_key=api_key, input_terminated=True)

    # then
    assert status.startswith("413"), content
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Connection" not in headers  # hop-by-hop: not the application's to send (PEP 3333)
    assert json.loads(content) == {"error": {"code": "PAYLOAD_TOO_LARGE", "message": (
        "The request body is larger than the service accepts."), "details": {"max_bytes": 200}}}
    assert not Event.objects.filter(event_id="evt_big").exists()


def test_wsgi_chunked_publish_at_exactly_the_size_limit_is_published(api_key, event_types, settings):
    # given
    body = json.dumps({"event_type": "lead.created", "event_id": "evt_exact", "data": {"note": "x" * 300}}).encode()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body)

    # when
    status, _, content = _call_wsgi(body, api_key=api_key, input_terminated=True)

    # then
    assert status.startswith("202"), content
    assert Event.objects.filter(event_id="evt_exact").exists()


def test_wsgi_gzip_chunked_request_answers_501_and_publishes_nothing(api_key, event_types):
    # given: the server takes the chunking off, not the gzip: the body would reach the parser compressed
    body = gzip.compress(json.dumps({"event_type": "lead.created", "event_id": "evt_gz", "data": {}}).encode())

    # when
    status, headers, content = _call_wsgi(body, api_key=api_key, input_terminated=True,
                                          transfer_encoding="gzip, chunked")

    # then
    assert status.startswith("501"), content
    assert json.loads(content)["error"]["code"] == "NOT_IMPLEMENTED"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert not Event.objects.filter(event_id="evt_gz").exists()


def test_wsgi_chunked_error_answers_carry_the_security_headers_of_every_other_answer(api_key, event_types, client):
    # given: the headers Django's security middlewares put on an ordinary API error answer
    ordinary = client.get("/events", HTTP_AUTHORIZATION="Bearer not-a-key")
    names = ["X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy", "X-Frame-Options"]
    assert all(ordinary.has_header(name) for name in names), dict(ordinary.items())

    # when: a chunked request is refused before Django runs
    status, headers, content = _call_wsgi(b"{}", api_key=api_key, input_terminated=True,
                                          transfer_encoding="gzip, chunked")

    # then: the same headers, with the same values
    assert status.startswith("501"), content
    assert {name: headers.get(name) for name in names} == {name: ordinary[name] for name in names}
    assert "Connection" not in headers
    assert int(headers["Content-Length"]) == len(content)


def test_wsgi_chunked_error_answers_follow_the_middleware_setting(api_key, event_types):
    # given: XFrameOptionsMiddleware taken out of the settings
    from django.test import override_settings

    without = [path for path in django_settings.MIDDLEWARE if not path.endswith(".XFrameOptionsMiddleware")]
    assert len(without) == len(django_settings.MIDDLEWARE) - 1

    # when: a chunked request is refused before Django runs (411: the server cannot delimit the body)
    with override_settings(MIDDLEWARE=without):
        status, headers, content = _call_wsgi(b"{}", api_key=api_key, input_terminated=False)

    # then: no X-Frame-Options; SecurityMiddleware, still in the settings, still adds its headers
    assert status.startswith("411"), content
    assert "X-Frame-Options" not in headers
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_wsgi_chunked_error_answers_place_every_configured_middleware():
    # given: the middlewares whose response phase early answers get, and those left out with a reason
    from vocelio_webhooks.chunked import FOR_EARLY_ANSWERS, NOT_FOR_EARLY_ANSWERS

    # when
    placed = FOR_EARLY_ANSWERS | set(NOT_FOR_EARLY_ANSWERS)
    unplaced = [path for path in django_settings.MIDDLEWARE if path not in placed]

    # then: a middleware added to the settings is placed on purpose (it may set headers the early
    # answers should carry, or need its process_request, which never runs for them)
    assert unplaced == []
    assert not FOR_EARLY_ANSWERS & set(NOT_FOR_EARLY_ANSWERS)


def test_wsgi_chunked_request_without_input_terminated_answers_411(api_key, event_types):
    # given: a server that does not promise wsgi.input ends with the body
    body = json.dumps({"event_type": "lead.created", "event_id": "evt_411", "data": {}}).encode()

    # when
    status, _, content = _call_wsgi(body, api_key=api_key, input_terminated=False)

    # then
    assert status.startswith("411"), content
    error = json.loads(content)["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "LENGTH_REQUIRED"
    assert not Event.objects.filter(event_id="evt_411").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_server(transactional_db):
    """The README's web command (``gunicorn vocelio_webhooks.wsgi --config gunicorn.conf.py``) on
    127.0.0.1, one worker, on the test database, with a 4,096-byte body limit. Yields the port."""
    with serve_gunicorn() as port:
        yield port


@contextlib.contextmanager
def serve_gunicorn(**extra_env: str):
    """``gunicorn_server``'s server, with ``extra_env`` added to its environment (e.g.
    ``DJANGO_HTTPS="true"``); needs ``transactional_db``. Yields the port."""
    port = _free_port()
    log_path = Path(django_settings.VAR_DIR) / "test-gunicorn.log"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "1",
           "VOCELIO_TEST_DB_NAME": str(django_settings.DATABASES["default"]["NAME"]),
           "WEBHOOK_MAX_REQUEST_BODY_BYTES": "4096", **extra_env}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([GUNICORN, "vocelio_webhooks.wsgi", "--config", "gunicorn.conf.py",
                                 "--bind", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 30
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.time() < deadline, "gunicorn did not listen in 30 s:\n" + log_path.read_text()[-3000:]
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _post_chunked(port: int, body: bytes, api_key: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        # An iterable body without Content-Length: http.client frames it as chunks.
        connection.request("POST", "/events/publish", body=iter([body[:10], body[10:]]), encode_chunked=True,
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}",
                                    "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_gunicorn_chunked_publish_is_published_and_an_oversized_one_answers_413(gunicorn_server, api_key,
                                                                               event_types):
    # given
    small = json.dumps({"event_type": "lead.created", "event_id": "evt_chunked", "data": {"lead": {"id": "l1"}}})
    big = json.dumps({"event_type": "lead.created", "event_id": "evt_chunked_big", "data": {"note": "x" * 5000}})

    # when
    published = _post_chunked(gunicorn_server, small.encode(), api_key)
    refused = _post_chunked(gunicorn_server, big.encode(), api_key)

    # then
    assert published[0] == 202, published
    assert Event.objects.get(event_id="evt_chunked").data == {"lead": {"id": "l1"}}
    assert refused == (413, {"error": {"code": "PAYLOAD_TOO_LARGE", "message": (
        "The request body is larger than the service accepts."), "details": {"max_bytes": 4096}}})
    assert not Event.objects.filter(event_id="evt_chunked_big").exists()


# --- byte order mark --------------------------------------------------------------------------
def test_publish_body_starting_with_a_utf8_bom_is_published(api):
    # given
    body = codecs.BOM_UTF8 + json.dumps({"event_type": "lead.created", "event_id": "evt_bom",
                                         "data": {"name": "Zoë"}}, ensure_ascii=False).encode()

    # when
    response = api.generic("POST", "/events/publish", body, content_type="application/json")

    # then
    assert response.status_code == 202, response.content
    assert Event.objects.get(event_id="evt_bom").data == {"name": "Zoë"}


def test_publish_body_with_a_bom_in_the_middle_still_answers_400(api):
    # given: only a leading BOM is a byte order mark
    body = b'{"event_type": ' + codecs.BOM_UTF8 + b'"lead.created", "data": {}}'

    # when
    response = api.generic("POST", "/events/publish", body, content_type="application/json")

    # then
    assert_seed_error(response, 400, "INVALID_REQUEST_BODY")


# --- string fields of the publish body ---------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [
    ("event_id", 123), ("event_id", 1.5), ("event_id", ["evt_1"]), ("event_id", {"id": "evt_1"}),
    ("event_type", 5), ("event_type", ["lead.created"]),
])
def test_publish_with_a_non_string_id_or_type_answers_400_naming_the_field(api, field, value):
    # given
    body = {"event_type": "lead.created", "data": {}, field: value}

    # when
    response = api.post("/events/publish", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == [field]
    assert "string" in error["details"]["fields"][field][0]
    assert not Event.objects.exists()


@pytest.mark.parametrize(("field", "value", "code"), [
    ("event_id", " evt_ws_1 ", "VALIDATION_ERROR"), ("event_id", "evt_ws_1\n", "VALIDATION_ERROR"),
    ("event_type", " lead.created ", "UNKNOWN_EVENT_TYPE"),
])
def test_publish_with_whitespace_around_an_id_answers_400_instead_of_trimming_it(api, field, value, code):
    # given: an id padded with whitespace (trimmed, it would be another publication's id)
    body = {"event_type": "lead.created", "data": {}, "event_id": "evt_ws_1", field: value}

    # when
    response = api.post("/events/publish", body, format="json")

    # then
    assert_seed_error(response, 400, code)
    assert not Event.objects.exists()


def test_publish_with_a_string_event_id_of_digits_is_published(api):
    # given / when
    response = api.post("/events/publish", {"event_type": "lead.created", "data": {}, "event_id": "123"},
                        format="json")

    # then
    assert response.status_code == 202, response.content
    assert response.json()["event_id"] == "123"


# --- Accept headers ---------------------------------------------------------------------------
@pytest.mark.parametrize("accept", ["text/html", "text/html,application/xhtml+xml,*/*;q=0.8", "application/xml"])
def test_publish_answers_json_whatever_the_accept_header(api, accept):
    # given / when
    response = api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt_accept", "data": {}},
                        format="json", HTTP_ACCEPT=accept)

    # then
    assert response.status_code == 202, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["event_id"] == "evt_accept"


def test_errors_and_lists_answer_json_to_a_browser_accept_header(api):
    # given
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

    # when
    refused = api.post("/events/publish", {"data": {}}, format="json", HTTP_ACCEPT=accept)
    listed = api.get("/events", HTTP_ACCEPT=accept)

    # then
    assert refused["Content-Type"] == "application/json"
    assert_seed_error(refused, 400, "VALIDATION_ERROR")
    assert listed.status_code == 200
    assert listed["Content-Type"] == "application/json"
    assert listed.json()["results"] == []


def test_schema_and_docs_still_answer_the_format_asked_for(api):
    # given / when
    as_json = api.get("/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    as_yaml = api.get("/schema")
    docs = api.get("/docs", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")

    # then
    assert as_json.status_code == 200
    assert as_json.json()["info"]["title"] == "Vocelio Webhooks API"
    assert as_yaml.status_code == 200
    assert as_yaml.content.startswith(b"openapi:")
    assert docs.status_code == 200
    assert docs["Content-Type"].startswith("text/html")


# --- duplicate event type ---------------------------------------------------------------------
def test_event_types_create_duplicate_name_answers_409_conflict(api):
    # given
    created = api.post("/event-types", {"name": "billing.invoice_paid", "category": "billing"}, format="json")
    assert created.status_code == 201, created.content

    # when
    response = api.post("/event-types", {"name": "billing.invoice_paid", "category": "other"}, format="json")

    # then
    error = assert_seed_error(response, 409, "CONFLICT")
    assert error["details"] == {"fields": {"name": ["Already taken."]}}
    assert EventType.objects.get(name="billing.invoice_paid").category == "billing"


# --- GET /deliveries?event_type= patterns ------------------------------------------------------
@pytest.fixture
def deliveries_by_type(api):
    """One delivery for each of lead.created, lead.updated, call.ended and appointment.scheduled
    (no worker: the test's transaction never commits, so nothing is sent)."""
    created = api.post("/endpoints", {"name": "all", "url": "https://all.example.com/hook", "events": ["*"]},
                       format="json")
    assert created.status_code == 201, created.content
    for name in ("lead.created", "lead.updated", "call.ended", "appointment.scheduled"):
        published = api.post("/events/publish", {"event_type": name, "data": {}}, format="json")
        assert published.status_code == 202, published.content
    assert Delivery.objects.count() == 4


@pytest.mark.parametrize(("query", "expected"), [
    ("lead.created", {"lead.created"}),
    ("lead.*", {"lead.created", "lead.updated"}),
    ("lead.*,call.ended", {"lead.created", "lead.updated", "call.ended"}),
    ("*", {"lead.created", "lead.updated", "call.ended", "appointment.scheduled"}),
    ("lead", set()),
])
def test_deliveries_list_filters_event_type_by_pattern_as_events_do(api, deliveries_by_type, query, expected):
    # when
    deliveries = api.get("/deliveries", {"event_type": query})
    events = api.get("/events", {"event_type": query})

    # then
    assert deliveries.status_code == 200, deliveries.content
    assert {d["event_type"] for d in deliveries.json()["results"]} == expected
    assert {e["event_type"] for e in events.json()["results"]} == expected


def test_deliveries_list_with_a_malformed_event_type_pattern_answers_400(api, deliveries_by_type):
    # when
    response = api.get("/deliveries", {"event_type": "lead.%"})

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "event_type" in error["details"]["fields"]


# --- a trailing newline is not "the end of the string" ----------------------------------------
# Python's "$" also matches before a final "\n", so names checked with it let one through.
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/endpoints", {"name": "crm", "url": "https://crm.example.com/hook", "events": ["lead.created\n"]}, "events"),
    ("/endpoints", {"name": "crm", "url": "https://crm.example.com/hook", "events": ["lead.*"],
                    "custom_headers": {"X-Tenant\n": "acme"}}, "custom_headers"),
])
def test_names_ending_in_a_newline_answer_400(api, path, body, field):
    # when
    response = api.post(path, body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert field in error["details"]["fields"], error
