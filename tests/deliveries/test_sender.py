"""Sending through the SSRF guard, TLS trust, the response body cap and the per-attempt deadline
(issue 5, "Outbound requests"), against real servers on 127.0.0.1. The guard stays on: the test
settings open only 127.0.0.1/32, tests narrow that further and replace name resolution
(``fake_dns``) to point public-looking names inward."""
import contextlib
import ssl
import threading
import time
import tracemalloc
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deliveries import sender
from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from endpoints import network
from endpoints import services as endpoint_services
from endpoints.models import WebhookEndpoint
from events import services as event_services
from tests.endpoints.test_network import PUBLIC_V4, FakeDNS, close_guard, install_fake_dns, self_signed_certificate


@pytest.fixture
def fake_dns(monkeypatch) -> FakeDNS:
    return install_fake_dns(monkeypatch)


@pytest.fixture
def guard_closed(settings) -> None:
    close_guard(settings)


# --- local servers ------------------------------------------------------------------------------
@dataclass
class LocalServer:
    url: str
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    server_names: list[str] = field(default_factory=list)  # TLS SNI names seen


@contextlib.contextmanager
def serve(answer, *, certificate: tuple[str, str] | None = None, tmp_path=None):
    """Serve on 127.0.0.1; ``answer(handler)`` writes each response. With ``certificate``
    (``(cert_pem, key_pem)``) the server speaks TLS with it."""
    state = LocalServer(url="", port=0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            state.requests.append((self.path, self.headers.get("Host", "")))
            with contextlib.suppress(OSError):
                answer(self)

        do_GET = do_POST = _handle

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scheme = "http"
    if certificate is not None:
        (tmp_path / "cert.pem").write_text(certificate[0])
        (tmp_path / "key.pem").write_text(certificate[1])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
        context.sni_callback = lambda sock, name, ctx: state.server_names.append(name)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    state.port = server.server_address[1]
    state.url = f"{scheme}://127.0.0.1:{state.port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def answer_with(status: int = 200, headers: dict | None = None, body: bytes = b'{"ok":true}'):
    def answer(handler):
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def _endpoint(url: str, **fields) -> WebhookEndpoint:
    """An unsaved endpoint: ``send_request`` takes those too (``POST /endpoints/test``)."""
    return WebhookEndpoint(name="x", url=url, events=["*"], **fields)


def _send(url: str, **kwargs) -> sender.SendResult:
    return sender.send(method="POST", url=url, headers={"Content-Type": "application/json"}, body=b"{}",
                       timeout_seconds=kwargs.pop("timeout_seconds", 5), **kwargs)


# --- SSRF guard at connect time ----------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0x7f000001"])
def test_send_refuses_every_spelling_of_loopback_when_it_is_not_opened(guard_closed, host):
    # given a receiver on 127.0.0.1 and the production default
    with serve(answer_with()) as receiver:

        # when
        result = _send(f"http://{host}:{receiver.port}/hook")

    # then
    assert (result.status_code, result.error_class) == (None, "blocked_destination")
    assert "127.0.0.1" not in result.error_message
    assert receiver.requests == []


def test_send_integer_spelling_reaches_an_opened_receiver(settings):
    # given the test receiver's address opened (the test settings' default)
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = ["127.0.0.1/32"]
    with serve(answer_with()) as receiver:

        # when
        result = _send(f"http://2130706433:{receiver.port}/hook")

    # then
    assert (result.status_code, result.error_class) == (200, "")
    assert receiver.requests[0][0] == "/hook"


def test_send_refuses_a_name_resolving_to_a_private_address(guard_closed, fake_dns):
    # given a public-looking name that resolves to the receiver's loopback address
    fake_dns.set("hooks.partner.test", ["127.0.0.1"])
    with serve(answer_with()) as receiver:

        # when
        result = _send(f"http://hooks.partner.test:{receiver.port}/hook")

    # then
    assert result.error_class == "blocked_destination"
    assert "127.0.0.1" not in result.error_message
    assert receiver.requests == []


def test_send_refuses_dns_rebinding_at_connect_time(guard_closed, fake_dns):
    # given a name that answers a public address first and the receiver's loopback address later
    fake_dns.set("rebind.partner.test", [PUBLIC_V4], ["127.0.0.1"])
    with serve(answer_with()) as receiver:
        url = f"http://rebind.partner.test:{receiver.port}/hook"
        network.check_destination(url, resolve=True)  # a pre-flight check sees the public answer

        # when
        result = _send(url)

    # then
    assert result.error_class == "blocked_destination"
    assert fake_dns.lookups["rebind.partner.test"] == 2
    assert receiver.requests == []


def test_send_refuses_an_answer_mixing_public_and_private_addresses(guard_closed, fake_dns):
    # given
    fake_dns.set("mixed.partner.test", [PUBLIC_V4, "127.0.0.1"])
    with serve(answer_with()) as receiver:

        # when
        result = _send(f"http://mixed.partner.test:{receiver.port}/hook")

    # then
    assert result.error_class == "blocked_destination"
    assert receiver.requests == []


@pytest.mark.parametrize(
    "address",
    ["::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
     "fe80::1", "fd00::1", "fec0::1", "::1", "169.254.169.254", "100.64.0.1"],
)
def test_send_refuses_resolved_ipv6_and_special_addresses_even_with_loopback_opened(settings, fake_dns, address):
    # given the test settings (127.0.0.1/32 opened) and a name resolving to a special address
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = ["127.0.0.1/32"]
    fake_dns.set("hooks.partner.test", [address])

    # when
    result = _send("http://hooks.partner.test:9/hook")

    # then
    assert result.error_class == "blocked_destination"
    assert address not in result.error_message


def test_send_request_enforces_allowed_ip_ranges_on_the_connected_address(fake_dns):
    # given a receiver the deployment opened (127.0.0.1/32), reached through a name
    fake_dns.set("crm.partner.test", ["127.0.0.1"])
    with serve(answer_with()) as receiver:
        url = f"http://crm.partner.test:{receiver.port}/hook"
        request = delivery_services.WebhookRequest(method="POST", url=url, headers={}, body=b"{}")
        outside = _endpoint(url, environment="staging", allowed_ip_ranges=["10.0.0.0/8"])
        inside = _endpoint(url, environment="staging", allowed_ip_ranges=["127.0.0.0/8"])

        # when
        refused = delivery_services.send_request(request=request, endpoint=outside)
        accepted = delivery_services.send_request(request=request, endpoint=inside)

    # then
    assert (refused.error_class, "allowed_ip_ranges" in refused.error_message) == ("blocked_destination", True)
    assert (accepted.status_code, accepted.error_class) == (200, "")
    assert len(receiver.requests) == 1


def test_send_request_production_plain_http_to_a_public_address_is_refused(fake_dns, settings):
    # given a production endpoint with an http URL whose name resolves to a public address
    settings.WEBHOOK_ALLOW_HTTP_IN_PRODUCTION = False
    fake_dns.set("crm.partner.test", [PUBLIC_V4])
    endpoint = _endpoint("http://crm.partner.test/hook", environment="production")
    request = delivery_services.WebhookRequest(method="POST", url=endpoint.url, headers={}, body=b"{}")

    # when
    result = delivery_services.send_request(request=request, endpoint=endpoint)

    # then
    assert result.error_class == "blocked_destination"
    assert "https" in result.error_message and PUBLIC_V4 not in result.error_message


# --- stored attempts ------------------------------------------------------------------------------
@pytest.fixture
def make_delivery(event_types):
    def make(**endpoint_fields) -> Delivery:
        endpoint = endpoint_services.create_endpoint(
            data={"name": "partner", "events": ["lead.*"], "retry_policy": {"max_attempts": 3}, **endpoint_fields}
        )
        published = event_services.publish(event_type="lead.created", data={"lead": {"id": "lead_1"}},
                                           environment=endpoint.environment)
        return published.deliveries[0]

    return make


def test_attempt_to_a_blocked_destination_is_stored_as_blocked_and_fails(
    guard_closed, fake_dns, receiver, make_delivery
):
    # given an endpoint saved with a name that now resolves to the receiver's loopback address
    fake_dns.set("hooks.partner.test", ["127.0.0.1"])
    port = receiver.base_url.rsplit(":", 1)[1]
    delivery = make_delivery(url=f"http://hooks.partner.test:{port}/hook", environment="staging")

    # when
    outcome = delivery_services.attempt_delivery(delivery_id=delivery.pk)

    # then
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert outcome.status == Delivery.Status.FAILED
    assert (attempt.error_class, attempt.response_status_code) == ("blocked_destination", None)
    assert "127.0.0.1" not in attempt.error_message
    assert "127.0.0.1" not in Delivery.objects.get(pk=delivery.pk).last_error
    assert receiver.requests == []


def test_attempt_answered_by_a_redirect_to_a_private_address_fails_without_following(receiver, make_delivery):
    # given a receiver that redirects to an internal address
    receiver.script("/hook", [(302, {"Location": receiver.url("/internal")}, b"")])
    delivery = make_delivery(url=receiver.url("/hook"))

    # when
    outcome = delivery_services.attempt_delivery(delivery_id=delivery.pk)

    # then
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert outcome.status == Delivery.Status.FAILED
    assert (attempt.response_status_code, attempt.error_class) == (302, "http_302")
    assert receiver.for_path("/internal") == []


# --- TLS ------------------------------------------------------------------------------------------
@pytest.fixture
def tls_receiver(tmp_path):
    certificate = self_signed_certificate("receiver.partner.test")
    with serve(answer_with(), certificate=certificate, tmp_path=tmp_path) as server:
        server.certificate = certificate[0]
        yield server


def test_send_verifies_certificates_against_the_default_store(tls_receiver):
    # given a receiver with a self-signed certificate

    # when
    result = _send(f"{tls_receiver.url}/hook")

    # then
    assert (result.status_code, result.error_class) == (None, "ssl_error")
    assert tls_receiver.requests == []


def test_send_trusts_the_endpoints_ca_bundle_and_checks_the_name_on_the_pinned_address(tls_receiver, fake_dns):
    # given the receiver's name resolving to its address, and its certificate as the CA bundle
    fake_dns.set("receiver.partner.test", ["127.0.0.1"])
    url = f"https://receiver.partner.test:{tls_receiver.port}/hook"

    # when
    result = _send(url, ca_bundle=tls_receiver.certificate)

    # then
    assert (result.status_code, result.error_class) == (200, "")
    assert tls_receiver.server_names == ["receiver.partner.test"]
    assert tls_receiver.requests == [("/hook", f"receiver.partner.test:{tls_receiver.port}")]


def test_send_ca_bundle_does_not_accept_a_certificate_for_another_name(tls_receiver, fake_dns):
    # given another name resolving to the same receiver
    fake_dns.set("other.partner.test", ["127.0.0.1"])

    # when
    result = _send(f"https://other.partner.test:{tls_receiver.port}/hook", ca_bundle=tls_receiver.certificate)

    # then
    assert result.error_class == "ssl_error"
    assert tls_receiver.requests == []


def test_send_request_honours_verify_ssl_false_only_outside_production(tls_receiver):
    # given two unsaved endpoints that turn verification off (production ones cannot be saved so)
    url = f"{tls_receiver.url}/hook"
    request = delivery_services.WebhookRequest(method="POST", url=url, headers={}, body=b"{}")
    staging = _endpoint(url, environment="staging", verify_ssl=False)
    production = _endpoint(url, environment="production", verify_ssl=False)

    # when
    staging_result = delivery_services.send_request(request=request, endpoint=staging)
    production_result = delivery_services.send_request(request=request, endpoint=production)

    # then
    assert (staging_result.status_code, staging_result.error_class) == (200, "")
    assert (production_result.status_code, production_result.error_class) == (None, "ssl_error")


# --- response body cap ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """64 MiB of zeros, gzip-compressed to about 64 KiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    return b"".join(compressor.compress(block) for _ in range(64)) + compressor.flush()


def test_send_caps_a_gzip_bomb_after_decompression_without_inflating_it(settings, gzip_bomb):
    # given
    settings.WEBHOOK_RESPONSE_BODY_LIMIT_BYTES = 1000
    with serve(answer_with(headers={"Content-Encoding": "gzip"}, body=gzip_bomb)) as receiver:

        # when
        tracemalloc.start()
        try:
            result = _send(f"{receiver.url}/hook")
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    # then
    assert (result.status_code, result.error_class) == (200, "")
    assert result.body == "\ufffd" * 1000  # the bomb's NUL bytes, stored as U+FFFD (PostgreSQL text refuses NUL)
    assert peak < 8 * 1024 * 1024


@pytest.mark.parametrize(("encoding", "wbits"), [("gzip", 16 + zlib.MAX_WBITS), ("deflate", zlib.MAX_WBITS),
                                                 ("deflate", -zlib.MAX_WBITS)])
def test_send_decodes_compressed_bodies(encoding, wbits):
    # given
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    body = compressor.compress(b'{"received":true}') + compressor.flush()
    with serve(answer_with(headers={"Content-Encoding": encoding}, body=body)) as receiver:

        # when
        result = _send(f"{receiver.url}/hook")

    # then
    assert (result.status_code, result.body) == (200, '{"received":true}')


def test_send_keeps_only_the_first_bytes_of_a_long_body(settings):
    # given
    settings.WEBHOOK_RESPONSE_BODY_LIMIT_BYTES = 1000
    with serve(answer_with(body=b"a" * 2_000_000)) as receiver:

        # when
        result = _send(f"{receiver.url}/hook")

    # then
    assert (result.status_code, result.body) == (200, "a" * 1000)


# --- total deadline ----------------------------------------------------------------------------------
def _drip_body(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    for _ in range(1000):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.2)


def _drip_headers(handler):
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 1000:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


@pytest.mark.parametrize("answer", [_drip_body, _drip_headers], ids=["body", "headers"])
def test_send_cuts_a_dripping_receiver_at_the_total_deadline(answer):
    # given a receiver that sends one byte every 0.2 s: no single read ever waits long
    with serve(answer) as receiver:

        # when
        started = time.monotonic()
        result = _send(f"{receiver.url}/hook", timeout_seconds=1)
        elapsed = time.monotonic() - started

    # then
    assert (result.status_code, result.error_class) == (None, "timeout")
    assert 0.9 <= elapsed < 2.0
    assert 900 <= result.duration_ms < 2000
