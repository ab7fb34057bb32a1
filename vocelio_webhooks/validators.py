"""Validators shared by the apps' serializers and models."""
from typing import Any

from django.core.exceptions import ValidationError

NUL = "\x00"


def find_nul(value: Any, path: str = "") -> str | None:
    """The path (``a.b[2]``; ``""`` for ``value`` itself) of the first string or object key in the
    JSON ``value`` that contains a NUL character (U+0000), else ``None``."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and NUL in key:
                return where.replace(NUL, "\\u0000")
            found = find_nul(item, where)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_nul(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def reject_nul_characters(value: Any) -> None:
    """Refuse a JSON value with a NUL character (``\\u0000``) in any string or object key.

    PostgreSQL cannot store it: ``jsonb`` rejects the ``\\u0000`` escape and ``text`` the character
    itself, so such a value would be a 500 (or, after an earlier write, half a write) on PostgreSQL
    while SQLite accepts it. Used for every JSON field an API client can set that is stored as
    ``jsonb`` or copied into the audit log (``AuditLogEntry.changes`` is ``jsonb``). Raises
    Django's ``ValidationError`` (DRF turns it into a field error: 400 ``VALIDATION_ERROR``).
    """
    path = find_nul(value)
    if path is not None:
        where = f" at {path}" if path else ""
        raise ValidationError(f"Contains a NUL character (\\u0000){where}; it cannot be stored.")


# C0 controls (U+0000-U+001F), DEL (U+007F) and C1 controls (U+0080-U+009F): an ESC or BEL in a
# name reaches an operator's terminal raw (``manage.py endpoint_health`` prints names) and the
# log files. Bidi embeddings/overrides (U+202A-U+202E) and isolates (U+2066-U+2069) make text
# display in another order than it is stored ("Trojan Source", CVE-2021-42574), so a name could
# look like another one in the admin or a terminal.
_BIDI_CONTROLS = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))
_MULTILINE_ALLOWED = frozenset("\t\n\r")


def _first_unsafe_character(value: str, *, multiline: bool) -> tuple[int, str] | None:
    for index, ch in enumerate(value):
        if _is_unsafe(ch) and not (multiline and ch in _MULTILINE_ALLOWED):
            return index, ch
    return None


def _is_unsafe(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or code in _BIDI_CONTROLS


def printable(text: str) -> str:
    """``text`` for a terminal: every character ``reject_control_characters`` refuses (C0/C1
    controls, bidi controls) written as ``\\uXXXX`` instead, the rest unchanged. For values stored
    before that rule existed, shown by management commands."""
    return "".join(f"\\u{ord(ch):04x}" if _is_unsafe(ch) else ch for ch in text)


def reject_control_characters(value: Any, *, multiline: bool = False) -> None:
    """Refuse free text (names, descriptions, notes) holding a control character or a bidi control.

    ``value``: the text (anything else is left to the field's own type check). Refused: C0 and C1
    control characters (U+0000-U+001F, U+007F-U+009F) and the bidi embedding, override and
    isolate characters (U+202A-U+202E, U+2066-U+2069). With ``multiline`` (descriptions), tab,
    LF and CR stay allowed (browsers send a textarea's newlines as CR LF). Emoji, accents and every
    other printable character are allowed. Raises Django's ``ValidationError`` naming the
    character by code point and its position (0-based), never echoing it raw."""
    if not isinstance(value, str):
        return
    found = _first_unsafe_character(value, multiline=multiline)
    if found is not None:
        index, ch = found
        allowed = " (tab and newlines are allowed)" if multiline else ""
        raise ValidationError(
            f"Contains the character U+{ord(ch):04X} at position {index}: control characters and "
            f"bidirectional override/isolate characters are not allowed{allowed}.",
            code="control_character",
        )


def reject_control_characters_multiline(value: Any) -> None:
    """``reject_control_characters`` for multi-line text: tab, LF and CR allowed."""
    reject_control_characters(value, multiline=True)
