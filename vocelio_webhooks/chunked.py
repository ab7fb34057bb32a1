"""WSGI middleware: give Django the body of a request sent with ``Transfer-Encoding: chunked``.

Django's ``WSGIRequest`` reads at most ``CONTENT_LENGTH`` bytes and ignores the
``wsgi.input_terminated`` flag (mod_wsgi's and gunicorn's promise that ``wsgi.input`` ends at the
end of the body), so a chunked request, which has no ``Content-Length``, reaches the views with an
empty body: a chunked ``POST /events/publish`` got a confusing 400 about missing fields. curl
sends chunked when told to (``-H 'Transfer-Encoding: chunked'``), and so do HTTP clients streaming
a body of unknown length (Node's ``http`` with ``write()``, Python ``requests`` with a generator).
"""
import io
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from django.conf import settings

READ_CHUNK_BYTES = 64 * 1024


class ChunkedBodyMiddleware:
    """Wraps a WSGI application. For a request whose ``Transfer-Encoding`` ends in ``chunked``
    and that has no ``Content-Length``:

    - when the server sets ``wsgi.input_terminated`` (gunicorn does), reads the body, at most
      ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (``WEBHOOK_MAX_REQUEST_BODY_BYTES``) + 1 bytes, and hands
      the application a ``BytesIO`` with ``CONTENT_LENGTH`` set, as if the client had sent a
      ``Content-Length``; a longer body is answered 413 ``PAYLOAD_TOO_LARGE`` without reading the
      rest, with the document the API gives a ``Content-Length`` over the limit (but before
      authentication: the body is read before Django runs);
    - otherwise the body cannot be told from the rest of the connection, and the answer is
      411 ``LENGTH_REQUIRED`` (RFC 9110 section 15.5.12);
    - a transfer coding besides ``chunked`` (``gzip, chunked``) is answered 501
      ``NOT_IMPLEMENTED`` (RFC 9112 section 6.1).

    Before any of that, a request that Django's ``SecurityMiddleware`` would redirect to https
    (``SECURE_SSL_REDIRECT``, i.e. ``DJANGO_HTTPS=true``; a plain-http request, as
    ``SECURE_PROXY_SSL_HEADER`` tells, to a path not in ``SECURE_REDIRECT_EXEMPT``) gets that
    redirect, made by the middleware's own ``process_request`` (``_https_redirect``), without its
    body being read: a plain-http request is redirected first whatever its framing, as any other
    is, and only a secure one gets the early answers.

    Reading a body holds one of gunicorn's threads for as long as the client takes to send it, as
    a slow ``Content-Length`` body or slow headers do: production runs behind a buffering proxy
    (README, "Deployment").

    Both errors have the seed's shape ``{"error": {"code", "message", "details"}}``. Other
    requests pass through untouched.
    """

    def __init__(self, application: Callable[..., Iterable[bytes]]):
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if not _is_chunked(environ):
            return self.application(environ, start_response)
        redirect = _https_redirect(_bodyless_request(environ))
        if redirect is not None:
            return _answer(environ, start_response, redirect, until=SECURITY_MIDDLEWARE)
        if _codings(environ) != ["chunked"]:
            # e.g. "gzip, chunked": the server takes the chunking off, not the gzip, and the body
            # would reach the parser compressed (RFC 9112 section 6.1: 501 for a coding not understood).
            return _error(environ, start_response, HTTPStatus.NOT_IMPLEMENTED, "NOT_IMPLEMENTED",
                          "Only 'Transfer-Encoding: chunked' is understood; send the body uncompressed.",
                          {"transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING", "")[:100]})
        if not environ.get("wsgi.input_terminated"):
            return _error(environ, start_response, HTTPStatus.LENGTH_REQUIRED, "LENGTH_REQUIRED",
                          "This server cannot read a chunked request body; send a Content-Length header.")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = _read(environ["wsgi.input"], None if limit is None else limit + 1)
        if limit is not None and len(body) > limit:
            # Same document as vocelio_webhooks.api.exception_handler's answer to RequestDataTooBig.
            return _error(environ, start_response, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "PAYLOAD_TOO_LARGE",
                          "The request body is larger than the service accepts.", {"max_bytes": limit})
        environ = {**environ, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
        environ.pop("HTTP_TRANSFER_ENCODING", None)  # the body is now delimited by CONTENT_LENGTH
        return self.application(environ, start_response)


def _codings(environ: dict[str, Any]) -> list[str]:
    return [coding.strip().lower() for coding in environ.get("HTTP_TRANSFER_ENCODING", "").split(",")]


def _is_chunked(environ: dict[str, Any]) -> bool:
    if environ.get("CONTENT_LENGTH"):
        return False
    return _codings(environ)[-1] == "chunked"  # RFC 9112 section 6.1: chunked is the final coding when present


def _read(stream: Any, limit: int | None) -> bytes:
    """Read ``stream`` to its end, or until more than ``limit - 1`` bytes were read (``limit``
    bytes at most are returned, so the caller can tell "over the limit" from "exactly at it")."""
    parts: list[bytes] = []
    total = 0
    while limit is None or total < limit:
        size = READ_CHUNK_BYTES if limit is None else min(READ_CHUNK_BYTES, limit - total)
        chunk = stream.read(size)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


# The middlewares whose response phase the early answers get, when settings.MIDDLEWARE has them
# (why a list: _early_answer_middlewares). A test fails for a middleware of settings.MIDDLEWARE
# in neither this list nor NOT_FOR_EARLY_ANSWERS, so a new one gets placed, with its reason.
SECURITY_MIDDLEWARE = "django.middleware.security.SecurityMiddleware"
FOR_EARLY_ANSWERS = frozenset({
    SECURITY_MIDDLEWARE,  # nosniff, referrer and opener policies, HSTS over HTTPS; its HTTPS redirect comes first
    "django.middleware.clickjacking.XFrameOptionsMiddleware",  # X-Frame-Options
})
NOT_FOR_EARLY_ANSWERS = {
    "whitenoise.middleware.WhiteNoiseMiddleware": "no response phase: it answers static files itself",
    "django.contrib.sessions.middleware.SessionMiddleware": "reads request.session, set by its process_request",
    "django.middleware.common.CommonMiddleware": "sets no security header; its 404 slash redirect needs a route",
    "django.middleware.csrf.CsrfViewMiddleware": "sets the CSRF cookie its process_request/view decided on",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "no response phase",
    "django.contrib.messages.middleware.MessageMiddleware": "stores request._messages, set by its process_request",
}


def _no_view(request: Any) -> Any:
    raise AssertionError("only process_response is used: the answer is made here")  # pragma: no cover


def _early_answer_middlewares(until: str | None = None) -> list[Any]:
    """The ``FOR_EARLY_ANSWERS`` middlewares present in ``settings.MIDDLEWARE`` (up to and
    including ``until``, when given), instantiated, in the order Django runs their
    ``process_response`` (the reverse of the setting's). Read per answer (a handful of attribute
    reads; early answers are rare), so the settings stay the one source and ``override_settings`` applies.
    ``until``: a middleware that answers in its ``process_request`` (the HTTPS redirect) short-cuts
    the middlewares after it, so Django gives that answer only its own and the earlier ones' response phase.

    An allow-list filtered by the settings, not "every middleware with a ``process_response``":
    the answer is made before Django ran, so no ``process_request`` ran either, and most response
    phases expect it to have (sessions read ``request.session``, messages ``request._messages``,
    CSRF the cookie decision of its ``process_request`` and the view; a logging or API-key
    middleware would record a request that never reached the API). Those allowed only set headers
    from the settings and the request's scheme. ``NOT_FOR_EARLY_ANSWERS`` says why each other middleware is left out."""
    from django.utils.module_loading import import_string

    paths = list(settings.MIDDLEWARE)
    if until is not None:
        paths = paths[:paths.index(until) + 1]
    return [import_string(path)(_no_view) for path in reversed(paths) if path in FOR_EARLY_ANSWERS]


def _bodyless_request(environ: dict[str, Any]) -> Any:
    """A Django request for ``environ`` whose body is not read (an empty one stands in)."""
    # Imported late, as all of Django's request machinery here: wsgi.py imports this module first.
    from django.core.handlers.wsgi import WSGIRequest

    return WSGIRequest({**environ, "CONTENT_LENGTH": "0", "wsgi.input": io.BytesIO()})


def _https_redirect(request: Any) -> Any:
    """The answer ``SecurityMiddleware`` gives ``request`` before any view runs, or ``None``:
    its own ``process_request`` (Django's rules: ``SECURE_SSL_REDIRECT``, ``request.is_secure()``
    with ``SECURE_PROXY_SSL_HEADER``, ``SECURE_REDIRECT_EXEMPT``, ``SECURE_SSL_HOST``), not a copy
    of them, and ``None`` when ``settings.MIDDLEWARE`` lacks it (Django would not redirect either).
    An exception there is answered as Django answers it (``convert_exception_to_response``): a
    ``Host`` not in ``ALLOWED_HOSTS`` (the redirect's target) is ``400`` from ``handler400``, logged
    to ``django.security.DisallowedHost``, instead of an early answer or a redirect to that host."""
    from django.core.handlers.exception import convert_exception_to_response
    from django.middleware.security import SecurityMiddleware

    if SECURITY_MIDDLEWARE not in settings.MIDDLEWARE:
        return None
    return convert_exception_to_response(SecurityMiddleware(_no_view).process_request)(request)


def _error(environ: dict[str, Any], start_response: Callable, status: HTTPStatus, code: str, message: str,
           details: dict[str, Any] | None = None) -> list[bytes]:
    """Answer ``status`` with the seed's error document, before Django runs, with the headers
    the security middlewares of ``settings.MIDDLEWARE`` give every other answer (nosniff,
    referrer and opener policies, frame denial, HSTS over HTTPS): their own ``process_response``
    is applied, for those in ``FOR_EARLY_ANSWERS`` (see there why not every middleware's), so a
    middleware taken out of the settings leaves these answers too."""
    # Imported late: vocelio_webhooks.api imports models, which need django.setup().
    from django.http import HttpResponse

    from .api import error_body

    response = HttpResponse(json.dumps(error_body(code, message, details)).encode(), status=status.value,
                            content_type="application/json")
    return _answer(environ, start_response, response)


def _answer(environ: dict[str, Any], start_response: Callable, response: Any, until: str | None = None) -> list[bytes]:
    """Send ``response`` (a Django ``HttpResponse``) for ``environ`` through WSGI, after the
    response phase of ``_early_answer_middlewares(until)``."""
    request = _bodyless_request(environ)
    for middleware in _early_answer_middlewares(until):
        response = middleware.process_response(request, response)
    # No "Connection: close": PEP 3333 forbids hop-by-hop headers from the application (wsgiref
    # asserts on it); gunicorn discards an unread body and closes the connection itself.
    headers = [("Content-Length", str(len(response.content))), *response.items()]
    start_response(f"{response.status_code} {response.reason_phrase}", headers)
    return [response.content]
