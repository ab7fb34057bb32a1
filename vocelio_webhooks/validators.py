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
