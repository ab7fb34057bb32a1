"""API keys (the credentials services use for ``Authorization: Bearer <key>``) and the audit log."""
import hashlib

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .validators import reject_control_characters


def hash_api_key(raw_key: str) -> str:
    """Return the hex SHA-256 of ``raw_key``; keys are stored only as this hash."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


class Scope(models.TextChoices):
    """What an API key may do. Safe methods (GET, HEAD, OPTIONS) need ``read``; each view
    declares the scope its writes need (``required_scopes``). ``*`` grants everything."""

    ALL = "*", "everything (admin)"
    READ = "read", "read every resource"
    EVENTS_PUBLISH = "events:publish", "publish events, add event types"
    ENDPOINTS_MANAGE = "endpoints:manage", "write endpoints and templates, status, secret rotation, test sends"
    DELIVERIES_RETRY = "deliveries:retry", "retry deliveries, replay events"


# Accepted on input as another name for ``*``.
SCOPE_ALIASES = {"admin": Scope.ALL.value}

# Where each environment-bound model keeps its environment (an ORM lookup path): API keys
# limited to environments see only these rows, and audit entries record the environment.
ENVIRONMENT_PATHS = {
    "endpoints.webhookendpoint": "environment",
    "events.event": "environment",
    "deliveries.delivery": "event__environment",
    "deliveries.deliveryattempt": "delivery__event__environment",
    "vocelio_webhooks.auditlogentry": "environment",
}


def validate_scopes(value) -> None:
    """A list of known scopes (``Scope`` values; ``admin`` is accepted as ``*``)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("scopes must be a list of scope names.")
    unknown = sorted(set(value) - set(Scope.values) - set(SCOPE_ALIASES))
    if unknown:
        raise ValidationError(f"Unknown scopes: {', '.join(unknown)}. Use {', '.join(Scope.values)}.")


def validate_environments(value) -> None:
    """A list of environment names (``events.models.Environment``); empty means every environment."""
    from events.models import Environment

    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("environments must be a list of environment names.")
    unknown = sorted(set(value) - set(Environment.values))
    if unknown:
        raise ValidationError(f"Unknown environments: {', '.join(unknown)}. Use {', '.join(Environment.values)}.")


class ApiKey(models.Model):
    """One API credential. The raw key is shown once at creation; only ``prefix`` (to recognise
    it) and ``key_hash`` are stored.

    ``scopes`` lists what the key may do (``Scope``; ``["*"]`` is everything, ``[]`` nothing);
    ``environments`` limits it to events and endpoints of those environments (empty: all). A key
    is usable while ``is_active``, not revoked (``revoked_at``) and not expired (``expires_at``).
    """

    name = models.CharField(max_length=200, validators=[reject_control_characters])
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list, blank=True, validators=[validate_scopes])
    environments = models.JSONField(default=list, blank=True, validators=[validate_environments])
    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        """Active, not revoked and not expired: what authentication checks."""
        return self.is_active and self.revoked_at is None and not self.is_expired


class AuditLogEntry(models.Model):
    """Who changed what, when, from where. Append-only: written by
    ``vocelio_webhooks.services.record_audit`` from the API views, the admin and management
    commands; never edited. ``changes`` is ``{field: {"old": …, "new": …}}`` with secrets masked
    (``vocelio_webhooks.crypto.mask``)."""

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        STATUS_CHANGE = "status_change"
        ROTATE_SECRET = "rotate_secret"
        REPLAY = "replay"
        RETRY = "retry"
        DISCARD = "discard"
        REVOKE = "revoke"

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    # "api-key:<name>", "user:<username>" or "command:<name>"
    actor = models.CharField(max_length=255, db_index=True)
    action = models.CharField(max_length=32, db_index=True)
    # The model's label, e.g. "endpoints.webhookendpoint"
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    # Environment of the object, when it has one; environment-limited keys see only theirs.
    environment = models.CharField(max_length=20, blank=True, db_index=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_type} {self.object_id}"


class Heartbeat(models.Model):
    """Last sign of life of one background process, written by ``vocelio_webhooks.heartbeats``
    and read by ``GET /health/ready``. In the database because it is the one thing web, worker
    and beat share in every deployment (the default cache may be per process)."""

    class Component(models.TextChoices):
        WORKER = "worker"
        BEAT = "beat"

    component = models.CharField(max_length=10, choices=Component.choices)
    # The Celery node name of a worker (``celery@host``) or ``host:pid`` of a beat process.
    instance = models.CharField(max_length=255)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["component", "instance"], name="heartbeat_component_instance")]

    def __str__(self) -> str:
        return f"{self.component} {self.instance} {self.seen_at:%Y-%m-%d %H:%M:%S}"
