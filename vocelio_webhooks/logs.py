"""Log masking and formatting: no secret, email address or phone number reaches a log line.

``MaskPersonalDataFilter`` sits on the root handler (``settings.LOGGING``; the Celery worker and
beat use the same configuration through ``vocelio_webhooks.celery``) and rewrites every record
before any formatter sees it:

* in the message (after ``%`` formatting), in ``extra`` fields, in dict/list arguments and in
  tracebacks: email addresses → ``[email]``, phone numbers → ``[phone]``, bearer tokens and our
  own key formats (``whsec_…``, ``vwk_…``) → ``[secret]``;
* values of configured personal-data fields (``WEBHOOK_LOG_MASK_FIELDS``: ``"name": "John Doe"``,
  ``email=…``) → ``[masked]``, matched by exact key, case-insensitively — except Celery's own
  ``name``: the task name in the ``data`` extra of ``celery.*`` records (``"Task … received"`` /
  ``"succeeded"``), which is code, not a person (kept only when it looks like a dotted task name);
* values of any key that names a credential (``secret``, ``password``, ``token``, ``api_key``,
  ``authorization``, ``cookie``, ``credential``, ``private_key`` anywhere in the key) → ``[secret]``.

The formatters (plain text and JSON through python-json-logger) run the pattern masks once more
over the finished line, so text that reached the output by another way (``str()`` of an object,
a traceback the JSON formatter renders itself) is masked too.

Phone numbers are recognised in three spellings, chosen so timestamps, ids and durations survive:
``+`` (or URL-encoded ``%2B``) followed by 7–15 digits with optional separators (E.164
``+14155552671`` and ``+1-555-0123``), North-American ``(415) 555-2671`` / ``415-555-2671`` /
``415.555.2671``, and local ``555-0123`` / ``1-555-0123``. A bare run of digits is never masked: it is
more often an id than a phone.

This module is pure (no Django imports) so ``logging.config.dictConfig`` can load it anywhere.
"""
import logging
import re
from collections.abc import Iterable
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"
FIELD_MASK = "[masked]"
SECRET_MASK = "[secret]"

DEFAULT_MASK_FIELDS = ("email", "phone", "phone_number", "mobile", "name", "first_name", "last_name", "full_name")

# Every pattern that starts with a repeated class is anchored by a lookbehind to the start of a
# run, so a long run without a match costs linear, not quadratic, time (a 20 kB token in a body).
# ``%40`` is ``@`` in a URL-encoded query string (``?email=john%40example.com``).
EMAIL_RE = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}\b")
_INTERNATIONAL_PHONE_RE = re.compile(r"(?<![\w+])(?:\+|%2[Bb])\d[\d\s().-]{5,22}\d(?![\d])")
_NANP_PHONE_RE = re.compile(r"(?<![\w.+-])(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-])")
_LOCAL_PHONE_RE = re.compile(r"(?<![\w.+-])(?:1[\s.-])?\d{3}-\d{4}(?![\w-])")
_BEARER_RE = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_OWN_KEY_RE = re.compile(r"\b(?:whsec|vwk)_[A-Za-z0-9+/=_-]{8,}")

_SECRET_WORDS = r"secret|passw(?:or)?d|token|api[_-]?key|authori[sz]ation|cookie|credential|private[_-]?key"
SECRET_KEY_RE = re.compile(_SECRET_WORDS, re.IGNORECASE)
# A key/value pair written into text: JSON (``"email": "x"``), Python repr (``'email': 'x'``),
# ``key=value`` (query strings, log conventions) and ``Header: value``. Keys are found first; a
# value is read (and masked) only after a key that asks for it, so ``Bad Request: /x?email=…``
# still masks the email. The key run is possessive (``++``): a long word costs linear time.
_KEY_RE = re.compile(r"""(?<![\w-])["']?(?P<name>[\w-]++)["']?\s*[:=]\s*""")
_VALUE_RE = re.compile(
    r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|(?:Bearer|Basic|Token)\s+[^\s,;&"']+|[^\s,;&"'()\[\]{}]+""",
    re.IGNORECASE)

# Celery's worker and tracer log ``extra={"data": {"id", "name", "args", "kwargs", ...}}`` where
# ``name`` is the task's dotted name (celery.app.trace.info, celery.worker.strategy).
_CELERY_LOGGER_PREFIX = "celery."
_TASK_NAME_RE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\Z")  # dotted: "deliveries.tasks.deliver"

# LogRecord attributes that are not ``extra`` fields (plus the ones formatters add).
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def _international_phone(match: re.Match) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0)) - (1 if match.group(0)[:3].upper() == "%2B" else 0)
    return PHONE_MASK if 7 <= digits <= 15 else match.group(0)


def mask_patterns(text: str) -> str:
    """Mask emails, phone numbers, bearer tokens and our key formats in free text.

    Input: any string. Output: the string with each match replaced by ``[email]``, ``[phone]``
    or ``[secret]``. Idempotent (masking masked text changes nothing).
    """
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {SECRET_MASK}", text)
    text = _OWN_KEY_RE.sub(SECRET_MASK, text)
    text = EMAIL_RE.sub(EMAIL_MASK, text)
    text = _INTERNATIONAL_PHONE_RE.sub(_international_phone, text)
    text = _NANP_PHONE_RE.sub(PHONE_MASK, text)
    return _LOCAL_PHONE_RE.sub(PHONE_MASK, text)


class Masker:
    """Masks text and structured values for one list of personal-data field names."""

    def __init__(self, fields: Iterable[str] = DEFAULT_MASK_FIELDS):
        self.fields = frozenset(f.strip().lower() for f in fields if f and f.strip())

    def mask_text(self, text: str) -> str:
        """Free text: values written as ``key: value`` / ``key=value`` / ``"key": "value"`` under
        a credential key or a configured field, then the patterns of ``mask_patterns``."""
        parts, done = [], 0
        for key in _KEY_RE.finditer(text):
            if key.start() < done:
                continue  # inside a value already masked
            name = key.group("name")
            if SECRET_KEY_RE.search(name):
                mask = SECRET_MASK
            elif name.lower() in self.fields:
                mask = FIELD_MASK
            else:
                continue
            value = _VALUE_RE.match(text, key.end())
            if value is None:
                continue
            quote = value.group(0)[0] if value.group(0)[0] in "\"'" else ""
            parts += [text[done:key.end()], quote, mask, quote]
            done = value.end()
        parts.append(text[done:])
        return mask_patterns("".join(parts))

    def mask_value(self, value: Any, key: str | None = None) -> Any:
        """A value found under ``key`` (``None`` for list items and positional arguments):
        credential keys → ``[secret]``, configured fields → ``[masked]``, strings masked as text,
        dicts, lists and tuples recursively; other objects are returned unchanged (the
        formatters mask their text form)."""
        if key is not None and isinstance(key, str):
            if SECRET_KEY_RE.search(key):
                return SECRET_MASK if value not in (None, "") else value
            if key.lower() in self.fields and value not in (None, ""):
                return FIELD_MASK
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            return {k: self.mask_value(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mask_value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.mask_value(v) for v in value)
        return value


class MaskPersonalDataFilter(logging.Filter):
    """Rewrites each record in place so every handler after it sees masked data; never drops one.

    ``fields``: personal-data field names whose values are masked (``WEBHOOK_LOG_MASK_FIELDS``).
    """

    def __init__(self, name: str = "", fields: Iterable[str] = DEFAULT_MASK_FIELDS):
        super().__init__(name)
        self.masker = Masker(fields)

    def filter(self, record: logging.LogRecord) -> bool:
        masker = self.masker
        if isinstance(record.msg, dict) and not record.args:
            record.msg = masker.mask_value(record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 — a bad format string must still be logged, masked
                message = f"{record.msg} {record.args!r}"
            record.msg, record.args = masker.mask_text(message), None
        for key in [k for k in record.__dict__ if k not in _RECORD_ATTRS]:
            record.__dict__[key] = self._mask_extra(record, key, record.__dict__[key])
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = masker.mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = masker.mask_text(record.stack_info)
        return True

    def _mask_extra(self, record: logging.LogRecord, key: str, value: Any) -> Any:
        masked = self.masker.mask_value(value, key)
        if (key == "data" and isinstance(value, dict) and isinstance(masked, dict)
                and _is_celery_task_name(record, value)):
            # The task name is Celery's, not a person's; the rest of the context (args, kwargs,
            # return value) stays masked.
            masked["name"] = value["name"]
        return masked


def _is_celery_task_name(record: logging.LogRecord, data: dict) -> bool:
    name = data.get("name")
    return ((record.name == "celery" or record.name.startswith(_CELERY_LOGGER_PREFIX))
            and isinstance(name, str) and _TASK_NAME_RE.match(name) is not None)


class PlainFormatter(logging.Formatter):
    """``logging.Formatter`` whose finished line goes through ``mask_patterns`` once more."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_patterns(super().format(record))

    def formatException(self, ei) -> str:
        return mask_patterns(super().formatException(ei))


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line: ``timestamp`` (ISO-8601 UTC), ``level``, ``logger``, ``message``,
    the record's ``extra`` fields, and ``exc_info`` for exceptions; the finished line goes through
    ``mask_patterns`` once more."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", True)
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        return mask_patterns(super().format(record))

    def formatException(self, ei) -> str:
        return mask_patterns(super().formatException(ei))
