"""Writes for API keys and the audit log."""
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from . import audit
from .errors import ValidationFailed
from .models import ENVIRONMENT_PATHS, SCOPE_ALIASES, ApiKey, AuditLogEntry, hash_api_key

API_KEY_PREFIX = "vwk_"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,64}\Z")


@dataclass(frozen=True)
class CreatedApiKey:
    """A new key: ``raw_key`` is the only time the full key exists outside the caller."""

    api_key: ApiKey
    raw_key: str


def normalize_scopes(scopes: list[str]) -> list[str]:
    """``scopes`` with aliases resolved (``admin`` → ``*``) and duplicates removed, in order."""
    resolved = [SCOPE_ALIASES.get(scope, scope) for scope in scopes]
    return list(dict.fromkeys(resolved))


def create_api_key(
    *,
    name: str,
    scopes: list[str] | None = None,
    environments: list[str] | None = None,
    expires_at: datetime | None = None,
    actor: str | None = None,
) -> CreatedApiKey:
    """Create an API key named ``name``; returns the row and the raw key (shown once).

    ``scopes`` defaults to ``["*"]`` (everything); ``environments`` to none (every environment);
    ``expires_at`` to never. The raw key is ``vwk_`` + 43 URL-safe characters (256 bits); only
    its SHA-256 is stored. With ``actor`` the creation is written to the audit log. Raises
    ``ValidationFailed`` for an empty name, unknown scopes or environments, or a past expiry.
    """
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name, prefix=raw[:12], key_hash=hash_api_key(raw),
        scopes=normalize_scopes(["*"] if scopes is None else scopes), environments=list(environments or []),
        expires_at=expires_at,
    )
    try:
        key.full_clean()
    except ValidationError as exc:
        raise ValidationFailed("The API key is invalid: " + "; ".join(exc.messages),
                               details={"fields": exc.message_dict}) from exc
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future.",
                               details={"fields": {"expires_at": ["In the past."]}})
    with transaction.atomic():
        key.save()
        if actor:
            record_audit(actor=actor, action=AuditLogEntry.Action.CREATE, obj=key)
    return CreatedApiKey(api_key=key, raw_key=raw)


def revoke_api_key(*, api_key: ApiKey, actor: str, request=None) -> ApiKey:
    """Revoke ``api_key`` for good: it stops authenticating at once (``is_active`` false,
    ``revoked_at`` now). Revoking a revoked key changes nothing and records nothing."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if key.revoked_at is not None:
            return key
        before = audit.snapshot(key)
        key.is_active = False
        key.revoked_at = timezone.now()
        key.save(update_fields=["is_active", "revoked_at"])
        record_audit(actor=actor, action=AuditLogEntry.Action.REVOKE, obj=key, before=before, request=request)
    return key


# --- audit log ---------------------------------------------------------------------------------
def command_actor(name: str) -> str:
    """The audit actor of a management command: ``command:<name>``."""
    return f"command:{name}"


def actor_for_request(request) -> str:
    """``api-key:<name>`` for an API request, ``user:<username>`` for an admin request,
    ``anonymous`` otherwise."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return "anonymous"
    if getattr(user, "api_key_id", None) is not None:
        return str(user)
    return f"user:{user.get_username()}"


def _client_ip(request) -> str | None:
    value = (getattr(request, "META", None) or {}).get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _request_id(request) -> str:
    value = (getattr(request, "META", None) or {}).get("HTTP_X_REQUEST_ID") or ""
    return value if REQUEST_ID_RE.match(value) else ""


def environment_of(obj: models.Model) -> str:
    """The environment of an environment-bound object (``ENVIRONMENT_PATHS``), else ``""``."""
    path = ENVIRONMENT_PATHS.get(obj._meta.label_lower)
    value: Any = obj
    for part in (path.split("__") if path else []):
        value = getattr(value, part, None)
        if value is None:
            return ""
    return value if path and isinstance(value, str) else ""


def record_audit(
    *,
    action: str,
    obj: models.Model | None = None,
    request=None,
    actor: str | None = None,
    before: models.Model | dict | None = None,
    changes: dict | None = None,
    object_type: str = "",
    object_id: Any = None,
    object_repr: str = "",
) -> AuditLogEntry:
    """Append one audit entry and return it.

    * ``actor``: ``api-key:<name>``, ``user:<username>`` or ``command:<name>``; taken from
      ``request`` (``actor_for_request``) when not given. ``request`` also gives the client IP
      (``REMOTE_ADDR``) and an ``X-Request-ID`` header (letters, digits, ``._:-``, ≤ 64).
    * ``action``: ``AuditLogEntry.Action`` values (``create``, ``update``, ``delete``,
      ``status_change``, ``rotate_secret``, ``replay``, ``retry``, ``revoke``) or another verb.
    * ``obj``: the object after the change (for ``delete``: the deleted instance; pass
      ``object_id`` then, as Django clears the pk). Type, id, repr and environment come from it.
    * ``changes``: the diff. When omitted: every field for ``create``/``delete``, else the
      difference between ``before`` (an instance or an ``audit.snapshot``) and ``obj``. Secrets
      are masked either way (``vocelio_webhooks.audit``).
    """
    if changes is None and obj is not None:
        if action == AuditLogEntry.Action.CREATE:
            changes = audit.diff(None, audit.snapshot(obj))
        elif action == AuditLogEntry.Action.DELETE:
            changes = audit.diff(audit.snapshot(obj, with_many_to_many=False), None)
        elif before is not None:
            before_values = before if isinstance(before, dict) else audit.snapshot(before)
            changes = audit.diff(before_values, audit.snapshot(obj))
    changes = audit.mask_changes(changes or {})
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id if object_id is not None else obj.pk
        object_repr = object_repr or str(obj)
    return AuditLogEntry.objects.create(
        actor=(actor or actor_for_request(request))[:255],
        action=str(action)[:32],
        object_type=object_type[:100],
        object_id="" if object_id is None else str(object_id)[:64],
        object_repr=audit.without_nul(object_repr[:200]),  # text: PostgreSQL rejects NUL there too
        changes=changes,
        environment=environment_of(obj) if obj is not None else "",
        request_id=_request_id(request) if request is not None else "",
        ip_address=_client_ip(request) if request is not None else None,
    )
