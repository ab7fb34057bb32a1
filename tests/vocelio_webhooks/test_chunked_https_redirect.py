"""With ``SECURE_SSL_REDIRECT`` (``DJANGO_HTTPS=true``), a plain-http chunked request is
redirected to https, as Django's ``SecurityMiddleware`` redirects every other plain-http request,
before ``vocelio_webhooks.chunked`` would answer it early (411, 413, 501); only a secure (or
redirect-exempt) request gets the early answer."""
import http.client
import json

import pytest

from events.models import Event
from tests.vocelio_webhooks.test_api_walk_fixes import _call_wsgi, serve_gunicorn

# (transfer coding, wsgi.input_terminated, body size): the three early answers of chunked.py
EARLY_ANSWERS = {
    "411": ("chunked", False, 10),
    "413": ("chunked", True, 500),
    "501": ("gzip, chunked", True, 10),
}


def _publish_body(size: int, event_id: str = "evt_https") -> bytes:
    body = json.dumps({"event_type": "lead.created", "event_id": event_id, "data": {"note": ""}}).encode()
    return body.replace(b'"note": ""', b'"note": "' + b"x" * max(0, size - len(body)) + b'"')


class _CountingInput:
    """A terminated ``wsgi.input`` that counts the bytes read from it."""

    def __init__(self, body: bytes):
        self.body, self.read_bytes = body, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.body[self.read_bytes:self.read_bytes + (size if size and size > 0 else len(self.body))]
        self.read_bytes += len(chunk)
        return chunk


@pytest.fixture
def https_on(settings):
    """``DJANGO_HTTPS=true``'s redirect and HSTS, and a 200-byte body limit."""
    # Django's WSGIHandler builds its middleware chain once, when vocelio_webhooks.wsgi is first
    # imported, reading SECURE_SSL_REDIRECT then: imported before the override, which then leaves
    # no redirecting chain behind for the next tests.
    import vocelio_webhooks.wsgi  # noqa: F401

    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200
    return settings


@pytest.mark.parametrize("early", EARLY_ANSWERS)
def test_wsgi_plain_http_chunked_request_is_redirected_to_https_instead_of_the_early_answer(
        https_on, api_key, event_types, client, early):
    # given: what Django answers an ordinary plain-http POST, and a chunked one that would get `early`
    ordinary = client.post("/events/publish", b"{}", content_type="application/json", HTTP_HOST="127.0.0.1")
    assert ordinary.status_code == 301, ordinary.status_code
    coding, terminated, size = EARLY_ANSWERS[early]
    stream = _CountingInput(_publish_body(size))

    # when
    status, headers, content = _call_wsgi(b"", api_key=api_key, input_terminated=terminated,
                                          transfer_encoding=coding, extra_environ={"wsgi.input": stream})

    # then: the same 301 to the same place, with the same headers; the body was not read
    assert status == "301 Moved Permanently", (status, content)
    assert headers["Location"] == "https://127.0.0.1/events/publish" == ordinary["Location"]
    assert {name: value for name, value in headers.items() if name != "Content-Length"} == dict(ordinary.items())
    assert int(headers["Content-Length"]) == len(content)
    assert stream.read_bytes == 0
    assert not Event.objects.filter(event_id="evt_https").exists()


@pytest.mark.parametrize("early", EARLY_ANSWERS)
def test_wsgi_secure_chunked_request_still_gets_the_early_answer(https_on, api_key, event_types, early):
    # given: a TLS-terminating proxy that says so (DJANGO_TRUST_X_FORWARDED_PROTO=true)
    https_on.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    coding, terminated, size = EARLY_ANSWERS[early]

    # when
    status, headers, content = _call_wsgi(_publish_body(size), api_key=api_key, input_terminated=terminated,
                                          transfer_encoding=coding, extra_environ={"HTTP_X_FORWARDED_PROTO": "https"})

    # then: the early answer, with HSTS as every https answer
    assert status.startswith(early), (status, content)
    assert set(json.loads(content)["error"]) == {"code", "message", "details"}
    assert headers["Strict-Transport-Security"].startswith("max-age=3600")


def test_wsgi_chunked_request_to_a_redirect_exempt_path_gets_the_early_answer(https_on, api_key, event_types):
    # given: SECURE_REDIRECT_EXEMPT (load balancers probe /health over plain http)
    assert any(pattern == r"^health$" for pattern in https_on.SECURE_REDIRECT_EXEMPT)

    # when
    status, _, content = _call_wsgi(b"{}", api_key=api_key, input_terminated=False, path="/health")

    # then
    assert status.startswith("411"), (status, content)
    assert json.loads(content)["error"]["code"] == "LENGTH_REQUIRED"


def test_wsgi_chunked_request_to_a_host_not_allowed_is_answered_as_django_answers_it(
        https_on, api_key, event_types, client):
    # given: what Django answers an ordinary plain-http request to a Host not in ALLOWED_HOSTS
    # (the redirect needs the host, so SecurityMiddleware's get_host() refuses it)
    ordinary = client.post("/events/publish", b"{}", content_type="application/json", HTTP_HOST="evil.example")

    # when
    status, headers, content = _call_wsgi(b"{}", api_key=api_key, input_terminated=False,
                                          extra_environ={"HTTP_HOST": "evil.example"})

    # then: the same 400 document, not a redirect to that host and not the 411
    assert ordinary.status_code == 400
    assert status.startswith("400"), (status, content)
    assert "Location" not in headers
    assert json.loads(content) == json.loads(ordinary.content)


def test_with_setting_off_plain_http_chunked_request_gets_the_early_answer(settings, api_key, event_types):
    # given: DJANGO_HTTPS=false (make run, the tests' default)
    settings.SECURE_SSL_REDIRECT = False

    # when
    status, _, content = _call_wsgi(b"{}", api_key=api_key, input_terminated=False)

    # then
    assert status.startswith("411"), (status, content)


def _post_chunked(port: int, body: bytes, api_key: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/events/publish", body=iter([body[:10], body[10:]]), encode_chunked=True,
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}",
                                    "Transfer-Encoding": "chunked", **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_gunicorn_with_django_https_redirects_a_plain_http_oversized_chunked_publish(
        transactional_db, api_key, event_types):
    # given: the web command with DJANGO_HTTPS=true behind a proxy that sets X-Forwarded-Proto,
    # and a chunked body over its 4,096-byte limit
    big = _publish_body(5000, event_id="evt_https_big")
    with serve_gunicorn(DJANGO_HTTPS="true", DJANGO_TRUST_X_FORWARDED_PROTO="true") as port:
        # when: once over plain http, once as the proxy forwards an https request
        plain = _post_chunked(port, big, api_key)
        secure = _post_chunked(port, big, api_key, headers={"X-Forwarded-Proto": "https"})

    # then: plain http is redirected to https (no 413); over https the size limit answers
    assert plain[0] == 301, plain
    assert plain[1]["Location"] == f"https://127.0.0.1:{port}/events/publish"
    assert secure[0] == 413, secure
    assert json.loads(secure[2])["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "Strict-Transport-Security" in secure[1]
    assert not Event.objects.filter(event_id="evt_https_big").exists()
