"""The HTTP sender: one request, one ``SendResult``; it never raises for network trouble
(Saleor's ``WebhookResponse`` pattern).

Connections are pooled per worker thread in a ``requests.Session`` whose adapter is
``endpoints.network.GuardedHTTPAdapter``: every connection is made to an address the SSRF guard
checked after resolving the name. Every call has an explicit ``(connect, read)`` timeout and a
total deadline (``timeout_seconds`` covers connect, send, response headers and body), never
follows redirects (a 3xx is an answer, classified as a failure unless the retry policy lists it)
and keeps at most ``WEBHOOK_RESPONSE_BODY_LIMIT_BYTES`` of the response body — counted after
decompression, which is done here with a bounded output so a gzip bomb cannot fill memory.
"""
import re
import threading
import time
import zlib
from dataclasses import dataclass, field

import requests
import urllib3
from django.conf import settings

from endpoints import network
from templates_app.rendering import HEADER_NAME_RE

_local = threading.local()
_CHUNK_BYTES = 8192
# Only encodings decoded below with a bounded output are offered to receivers.
ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True)
class SendResult:
    """What happened to one request. ``status_code`` is ``None`` when no complete response
    arrived; ``error_class`` then names the failure (``timeout``, ``connection_error``,
    ``ssl_error``, ``dns_error``, ``blocked_destination``, ``invalid_request``). ``duration_ms``
    is wall time in milliseconds."""

    status_code: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    duration_ms: int = 0
    error_class: str = ""
    error_message: str = ""


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # never send webhooks through an ambient HTTP(S)_PROXY
        session.headers["Accept-Encoding"] = ACCEPT_ENCODING
        # WEBHOOK_CONNECTION_POOL_SIZE: receiver hosts whose connections are kept, and connections kept per host.
        size = settings.WEBHOOK_CONNECTION_POOL_SIZE
        adapter = network.GuardedHTTPAdapter(pool_connections=size, pool_maxsize=size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _local.session = session
    return session


class _Decoder:
    """Incremental ``Content-Encoding`` decoder whose output per call is bounded. ``gzip`` and
    ``deflate`` (zlib-wrapped or raw) are decoded; ``identity`` and encodings we did not offer
    are passed through as received."""

    def __init__(self, content_encoding: str):
        encoding = content_encoding.strip().lower()
        gzip_wbits = 16 + zlib.MAX_WBITS
        self._wbits = {"gzip": gzip_wbits, "x-gzip": gzip_wbits, "deflate": zlib.MAX_WBITS}.get(encoding)
        self._inflater = zlib.decompressobj(self._wbits) if self._wbits else None
        self._started = False

    def decode(self, data: bytes, max_length: int) -> bytes:
        if self._inflater is None:
            return data[:max_length]
        try:
            out = self._inflater.decompress(data, max_length)
        except zlib.error:
            if self._started or self._wbits != zlib.MAX_WBITS:
                raise
            # "deflate" sent as a raw stream, without the zlib wrapper (seen in the wild).
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._inflater.decompress(data, max_length)
        self._started = True
        if self._inflater.eof and self._inflater.unused_data and len(out) < max_length:
            # A multi-member gzip body: decode the next member with what is left of the room.
            rest = self._inflater.unused_data
            self._inflater = zlib.decompressobj(self._wbits)
            out += self.decode(rest, max_length - len(out))
        return out


def _read_body(response: requests.Response, limit: int) -> tuple[bytes, bool]:
    """Read and decode at most ``limit`` bytes of body. Returns ``(body, complete)``; complete is
    ``False`` when the body was longer than the limit (the rest is never read)."""
    decoder = _Decoder(response.headers.get("Content-Encoding", ""))
    body = bytearray()
    while True:
        chunk = response.raw.read(_CHUNK_BYTES, decode_content=False)
        if not chunk:
            return bytes(body), True
        try:
            body += decoder.decode(chunk, limit + 1 - len(body))
        except zlib.error:
            return bytes(body), False  # undecodable: keep what was decoded, stop reading
        if len(body) > limit:
            return bytes(body[:limit]), False


def _storable(text: str) -> str:
    """``text`` with NUL (U+0000) replaced by U+FFFD: PostgreSQL ``text`` columns refuse NUL, and
    one NUL in a receiver's answer must not fail the storing of a whole batch of attempts."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _text(raw: bytes, encoding: str | None) -> str:
    try:
        return _storable(raw.decode(encoding or "utf-8", errors="replace"))
    except LookupError:  # an unknown charset name in Content-Type
        return _storable(raw.decode("utf-8", errors="replace"))


# RFC 9110 section 5.1: a field name is a token (templates_app.rendering.HEADER_NAME_RE, the rule
# every header name is saved under). A value is visible ASCII with spaces or tabs
# inside (section 5.5), and no leading whitespace (``requests`` refuses it: the value would be read
# as a continuation line). Non-ASCII (obs-text) is refused too: ``http.client`` can only send
# Latin-1, and fails with ``UnicodeEncodeError`` past it.
_HEADER_VALUE_RE = re.compile(r"(?:[\x21-\x7e][\x20-\x7e\t]*)?")


def invalid_header(headers: dict[str, str]) -> str:
    """The message for the first header of ``headers`` that cannot be sent, or ``""``.

    The message names the header (its name, ``repr``-quoted and cut at 100 characters) but never
    shows its value: the value can be a credential (``X-API-Key`` with signature method
    ``api_key``, a custom ``Authorization``), and the message is stored as the attempt's
    ``error_message`` and the delivery's ``last_error``, readable with a read-only API key."""
    for name, value in headers.items():
        if value is None:  # requests leaves such a header out
            continue
        text_name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        if not HEADER_NAME_RE.match(text_name):
            return f"Header name {text_name[:100]!r} is not a valid HTTP field name; fix the endpoint's configuration."
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if not isinstance(text, str) or not _HEADER_VALUE_RE.fullmatch(text):
            return (f"Header {text_name!r} has an invalid value (leading whitespace, control or non-ASCII "
                    "characters); fix the endpoint's configuration.")
    return ""


def _failure(error_class: str, exc: BaseException | str, started: float) -> SendResult:
    return SendResult(
        status_code=None, duration_ms=int((time.monotonic() - started) * 1000), error_class=error_class,
        error_message=_storable(str(exc)[:1000]),
    )


def send(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout_seconds: float,
    verify: bool = True,
    ca_bundle: str = "",
    policy: network.DestinationPolicy | None = None,
) -> SendResult:
    """Send one request and return a ``SendResult``.

    ``timeout_seconds`` is the total deadline of the attempt (connect + send + response headers
    + body); the connect step alone is also capped by ``WEBHOOK_CONNECT_TIMEOUT_SECONDS``.
    ``body`` ``None`` sends no body. ``verify`` checks the TLS certificate against ``ca_bundle``
    (PEM text) when given, else the default store. ``policy`` is the SSRF rule for this request
    (``endpoints.network.destination_policy``; default: the settings' rule without an IP
    allow-list). A refused address is ``error_class="blocked_destination"`` and nothing is sent.
    A header that cannot be sent (``invalid_header``: e.g. an API key saved with a leading space
    or a non-ASCII character, before endpoints were validated at save) is
    ``error_class="invalid_request"`` with a message naming the header, not its value; nothing is sent.
    """
    total = float(timeout_seconds)
    connect_timeout = min(total, settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS)
    started = time.monotonic()
    session = _session()
    refused = invalid_header(headers)
    if refused:
        return _failure("invalid_request", refused, started)
    try:
        prepared = session.prepare_request(requests.Request(method, url, headers=headers, data=body))
    except requests.exceptions.InvalidHeader:
        # Its message quotes the value (possibly a credential): never store it (invalid_header).
        return _failure("invalid_request", "A header has an invalid name or value; fix the endpoint's "
                                           "configuration.", started)
    except requests.exceptions.RequestException as exc:
        return _failure("invalid_request", exc, started)
    prepared.vocelio_options = network.OutboundOptions(policy=policy, ca_bundle=ca_bundle if verify else "")

    with network.attempt_deadline(total) as deadline:
        try:
            response = session.send(
                prepared, stream=True, timeout=(connect_timeout, total), verify=verify, allow_redirects=False,
                proxies={},
            )
        except network.UnresolvableHost as exc:
            return _failure("dns_error", exc, started)
        except network.BlockedDestination as exc:
            return _failure("blocked_destination", exc, started)
        except requests.exceptions.RequestException as exc:
            if deadline.expired or isinstance(exc, requests.exceptions.Timeout):
                return _failure("timeout", exc, started)
            if isinstance(exc, requests.exceptions.SSLError):
                return _failure("ssl_error", exc, started)
            if isinstance(exc, requests.exceptions.ConnectionError):
                return _failure("connection_error", exc, started)
            if isinstance(exc, requests.exceptions.InvalidHeader):
                return _failure("invalid_request", "A header has an invalid name or value; fix the endpoint's "
                                                   "configuration.", started)
            return _failure("invalid_request", exc, started)

        with response:
            try:
                raw, complete = _read_body(response, settings.WEBHOOK_RESPONSE_BODY_LIMIT_BYTES)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if deadline.expired or isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)):
                    return _failure("timeout", f"HTTP {response.status_code} answered, but the body did not "
                                               f"arrive within {total:g} s.", started)
                return _failure("connection_error", exc, started)
            if not complete:
                response.raw.close()  # do not drain (or pool) a connection with unread body left
            if deadline.expired:
                return _failure("timeout", f"HTTP {response.status_code} answered, but the body did not arrive "
                                           f"within {total:g} s.", started)
            return SendResult(
                status_code=response.status_code, body=_text(raw, response.encoding),
                headers={_storable(name): _storable(value) for name, value in response.headers.items()},
                duration_ms=int((time.monotonic() - started) * 1000),
            )
