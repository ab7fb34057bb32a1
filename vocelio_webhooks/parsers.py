"""Request body parsing for the API."""
import codecs
import io
import json
import sys

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .errors import ServiceError


class UnsupportedContentEncoding(ServiceError):
    """415 for a request body sent with a ``Content-Encoding`` other than ``identity``; the
    answer carries ``Accept-Encoding: identity`` (``response_headers``), as RFC 9110 section
    12.5.3 asks of a server refusing a content coding."""

    code = "UNSUPPORTED_CONTENT_ENCODING"
    http_status = 415
    response_headers = {"Accept-Encoding": "identity"}


def check_content_encoding(meta: dict) -> None:
    """Raise ``UnsupportedContentEncoding`` unless the request's ``Content-Encoding`` (``meta``:
    Django's ``request.META``) is absent or only ``identity``.

    RFC 9110 section 15.5.16: 415 when "the content is in a content coding the server does not
    accept". The API does not decode request bodies (a gzip body of a few kilobytes can inflate
    to gigabytes past ``WEBHOOK_MAX_REQUEST_BODY_BYTES``, and our callers send small JSON): before
    this, a gzip body failed as a confusing 400 about UTF-8, and a plain body labelled gzip was
    accepted as if the label meant nothing."""
    value = meta.get("HTTP_CONTENT_ENCODING", "")
    codings = [coding.strip().lower() for coding in value.split(",") if coding.strip()]
    if any(coding != "identity" for coding in codings):
        raise UnsupportedContentEncoding(
            "Request bodies with a Content-Encoding are not accepted; send the body uncompressed.",
            details={"content_encoding": value[:100], "accepted": ["identity"]},
        )


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, ignoring a leading UTF-8 byte order mark and refusing strings that are
    not valid Unicode text.

    RFC 8259 section 8.1: implementations must not add a BOM but "MAY ignore the presence of a
    byte order mark rather than treating it as an error"; some Windows tools (PowerShell 5's
    ``Out-File``, Notepad) write one, and Python's ``json`` refuses it. It is dropped before
    parsing, so such a body is published like the same body without it.

    JSON's ``\\ud800`` escapes can smuggle lone UTF-16 surrogates into Python strings; they cannot
    be encoded as UTF-8, so storing, signing or listing them later fails. Refusing them here
    (400 ``INVALID_REQUEST_BODY``) keeps every stored value sendable. An integer longer than
    Python's limit (``sys.get_int_max_str_digits()``, 4,300 digits) is refused with a message
    saying so, not Python's hint about raising an interpreter setting.

    A body with a ``Content-Encoding`` other than ``identity`` is refused with 415
    ``UNSUPPORTED_CONTENT_ENCODING`` (``check_content_encoding``). Here rather than in the WSGI
    middleware of ``vocelio_webhooks.chunked``: that one answers before Django because it has
    to read the body to frame it; this check needs no body, so it runs after authentication and
    throttling, as every other body error does (an unknown caller gets 401, not 415).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        if request is not None:
            check_content_encoding(request.META)
        # Django has already bounded the body (DATA_UPLOAD_MAX_MEMORY_SIZE), so reading it whole is safe.
        body = stream.read()
        body = body.removeprefix(codecs.BOM_UTF8)
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except ParseError as exc:
            if "int_max_str_digits" in str(exc.detail):  # Python's own hint about an interpreter setting
                raise ParseError(f"JSON parse error - a number has more than {sys.get_int_max_str_digits()} "
                                 "digits.") from exc
            raise
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ParseError("JSON parse error - the body contains a lone UTF-16 surrogate (invalid Unicode).") from exc
        return data
