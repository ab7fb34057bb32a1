"""Audit diffs: what a model instance looks like to the audit log, and what changed between two
such snapshots, with every secret masked. Pure functions: no writes (``services.record_audit``
stores the entries).

A field is secret when it is encrypted at rest (``Encrypted*Field`` from
``vocelio_webhooks.crypto``) or its name is in ``SECRET_FIELD_NAMES``; its value is shown as
``vocelio_webhooks.crypto.mask`` shows it (``whsec_***Xk9=``), and a JSON object in such a
field (credential headers) keeps its keys with each value masked. In any other JSON object, a
key that names a credential (``SENSITIVE_KEY_RE``) has its value masked too.
"""
import datetime
import decimal
import hashlib
import re
import uuid
from typing import Any

from django.db import models

from .crypto import mask
from .logs import SECRET_KEY_RE

SECRET_FIELD_NAMES = frozenset({"secret", "previous_secret", "api_key", "key_hash", "password", "token"})
# The log filter's credential words (``SECRET_KEY_RE``, also the rule for credential headers), and
# "signature": a stored signature of a known body could be replayed.
SENSITIVE_KEY_RE = re.compile(f"{SECRET_KEY_RE.pattern}|signature", re.IGNORECASE)
# Fields that change on every save and say nothing about who changed what.
IGNORED_FIELD_NAMES = frozenset({"updated_at", "last_used_at", "last_login"})


def is_secret_field(field: models.Field) -> bool:
    """Whether ``field``'s values must never appear in the audit log unmasked."""
    return field.name in SECRET_FIELD_NAMES or type(field).__name__.startswith("Encrypted")


class MaskedSecret(str):
    """A secret's masked text (what is stored and shown) that compares equal to another only when
    the secrets themselves are equal, so a diff sees a change even when both masks read the
    same (``***``). The digest lives in memory only; JSON gets the masked text."""

    def __new__(cls, raw: str):
        masked = super().__new__(cls, mask(raw))
        masked.digest = hashlib.sha256(raw.encode("utf-8")).digest()
        return masked

    def __eq__(self, other) -> bool:
        if isinstance(other, MaskedSecret):
            return self.digest == other.digest
        return str.__eq__(self, other)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


def mask_value(value: Any) -> Any:
    """A secret value as the audit log shows it: strings masked, objects keep their keys with
    masked values, lists masked item by item, ``None``/empty kept (so "no secret" stays visible)."""
    if isinstance(value, MaskedSecret) or value in (None, "", {}, []):
        return value
    if isinstance(value, dict):
        return {str(key): mask_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(item) for item in value]
    return MaskedSecret(str(value))


def mask_sensitive_keys(value: Any) -> Any:
    """``value`` with the values of credential-like keys (``Authorization``, ``X-Api-Key``,
    ``token``, …) masked at any depth; everything else unchanged."""
    if isinstance(value, dict):
        return {
            key: mask_value(item) if SENSITIVE_KEY_RE.search(str(key))
            else mask_sensitive_keys(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_sensitive_keys(item) for item in value]
    return value


def to_json(value: Any) -> Any:
    """A JSON-serialisable form of a field value (datetimes as ISO-8601, model instances as pks)."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item) for item in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def snapshot(instance: models.Model, *, with_many_to_many: bool = True) -> dict[str, Any]:
    """``instance``'s concrete fields (foreign keys as ids) and, when saved and
    ``with_many_to_many``, its many-to-many fields as sorted id lists; secrets masked.

    The primary key and ``IGNORED_FIELD_NAMES`` are left out. Reading many-to-many values
    queries the database.
    """
    values: dict[str, Any] = {}
    opts = instance._meta
    for field in opts.concrete_fields:
        if field.primary_key or field.name in IGNORED_FIELD_NAMES:
            continue
        raw = field.value_from_object(instance)
        if is_secret_field(field):
            values[field.name] = mask_value(raw)
        else:
            values[field.name] = mask_sensitive_keys(to_json(raw))
    if with_many_to_many and instance.pk is not None:
        for field in opts.many_to_many:
            values[field.name] = sorted(to_json(field.value_from_object(instance)) or [])
    return values


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{field: {"old": …, "new": …}}`` for every field whose (masked) value differs between two
    ``snapshot``s. A creation (``before`` is None) lists every field with ``new`` only; a
    deletion (``after`` is None) every field with ``old`` only.

    Secrets compare by their real value (``MaskedSecret``), so a rotated secret whose mask reads
    the same as the old one still shows as changed.
    """
    if before is None and after is None:
        return {}
    if before is None:
        return {name: {"new": value} for name, value in after.items()}
    if after is None:
        return {name: {"old": value} for name, value in before.items()}
    return {
        name: {"old": before.get(name), "new": after.get(name)}
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }


def mask_changes(changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A diff made by hand (``{field: {"old": …, "new": …}}``, or ``{field: value}`` meaning
    ``new``) made safe to store: fields named in ``SECRET_FIELD_NAMES`` masked whole, credential
    keys inside other values masked, values made JSON-serialisable. Idempotent, so a ``diff``
    of ``snapshot``s passes through unchanged."""
    safe: dict[str, dict[str, Any]] = {}
    for name, change in changes.items():
        sides = change if isinstance(change, dict) and set(change) <= {"old", "new"} and change else {"new": change}
        safe[str(name)] = {
            side: mask_value(value) if name in SECRET_FIELD_NAMES else mask_sensitive_keys(to_json(value))
            for side, value in sides.items()
        }
    return without_nul(safe)


def without_nul(value: Any) -> Any:
    """``value`` with every NUL character (U+0000) in its strings and keys replaced by U+FFFD.

    ``AuditLogEntry.changes`` is ``jsonb`` on PostgreSQL, which rejects ``\\u0000``: one NUL in a
    value the API does not validate (an old row, the admin, a template) must not make the audited
    write fail. Values without a NUL are returned as they are (a ``MaskedSecret`` stays one).
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value
