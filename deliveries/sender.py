"""The HTTP sender: one request, one ``SendResult``; it never raises for network trouble
(Saleor's ``WebhookResponse`` pattern).

Connections are pooled per worker thread in a ``requests.Session``. Every call has an explicit
``(connect, read)`` timeout, never follows redirects (a 3xx is an answer, classified as a failure
unless the retry policy lists it) and reads at most ``WEBHOOK_RESPONSE_BODY_LIMIT_BYTES`` of the
response body.
"""
import threading
import time
from dataclasses import dataclass, field

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

_local = threading.local()


@dataclass(frozen=True)
class SendResult:
    """What happened to one request. ``status_code`` is ``None`` when no response arrived;
    ``error_class`` then names the failure (``timeout``, ``connection_error``, ``ssl_error``,
    ``blocked_destination``, ``invalid_request``). ``duration_ms`` is wall time in milliseconds."""

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
        adapter = HTTPAdapter(pool_connections=20, pool_maxsize=20, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _local.session = session
    return session


def _read_capped(response: requests.Response, limit: int) -> str:
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=8192, decode_unicode=False):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    raw = b"".join(chunks)[:limit]
    return raw.decode(response.encoding or "utf-8", errors="replace")


def send(
    *, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_seconds: float, verify: bool
) -> SendResult:
    """Send one request and return a ``SendResult``.

    ``timeout_seconds`` is the endpoint's timeout (read timeout; the connect timeout is the smaller
    of it and ``WEBHOOK_CONNECT_TIMEOUT_SECONDS``). ``body`` ``None`` sends no body.
    """
    connect_timeout = min(float(timeout_seconds), settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS)
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with _session().request(
            method, url, headers=headers, data=body, timeout=(connect_timeout, float(timeout_seconds)),
            allow_redirects=False, verify=verify, stream=True,
        ) as response:
            text = _read_capped(response, settings.WEBHOOK_RESPONSE_BODY_LIMIT_BYTES)
            return SendResult(
                status_code=response.status_code, headers=dict(response.headers), body=text, duration_ms=elapsed()
            )
    except requests.exceptions.SSLError as exc:
        return SendResult(status_code=None, duration_ms=elapsed(), error_class="ssl_error", error_message=str(exc)[:1000])
    except requests.exceptions.Timeout as exc:
        return SendResult(status_code=None, duration_ms=elapsed(), error_class="timeout", error_message=str(exc)[:1000])
    except requests.exceptions.ConnectionError as exc:
        return SendResult(
            status_code=None, duration_ms=elapsed(), error_class="connection_error", error_message=str(exc)[:1000]
        )
    except requests.exceptions.RequestException as exc:
        return SendResult(
            status_code=None, duration_ms=elapsed(), error_class="invalid_request", error_message=str(exc)[:1000]
        )
