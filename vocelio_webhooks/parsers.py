"""Request body parsing for the API."""
import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, refusing strings that are not valid Unicode text.

    JSON's ``\\ud800`` escapes can smuggle lone UTF-16 surrogates into Python strings; they cannot
    be encoded as UTF-8, so storing, signing or listing them later fails. Refusing them here
    (400 ``INVALID_REQUEST_BODY``) keeps every stored value sendable.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ParseError("JSON parse error - the body contains a lone UTF-16 surrogate (invalid Unicode).") from exc
        return data
