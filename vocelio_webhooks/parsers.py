"""Request body parsing for the API."""
import codecs
import io
import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, ignoring a leading UTF-8 byte order mark and refusing strings that are
    not valid Unicode text.

    RFC 8259 section 8.1: implementations must not add a BOM but "MAY ignore the presence of a
    byte order mark rather than treating it as an error"; some Windows tools (PowerShell 5's
    ``Out-File``, Notepad) write one, and Python's ``json`` refuses it. It is dropped before
    parsing, so such a body is published like the same body without it.

    JSON's ``\\ud800`` escapes can smuggle lone UTF-16 surrogates into Python strings; they cannot
    be encoded as UTF-8, so storing, signing or listing them later fails. Refusing them here
    (400 ``INVALID_REQUEST_BODY``) keeps every stored value sendable.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        # Django has already bounded the body (DATA_UPLOAD_MAX_MEMORY_SIZE), so reading it whole is safe.
        body = stream.read()
        body = body.removeprefix(codecs.BOM_UTF8)
        data = super().parse(io.BytesIO(body), media_type, parser_context)
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ParseError("JSON parse error - the body contains a lone UTF-16 surrogate (invalid Unicode).") from exc
        return data
