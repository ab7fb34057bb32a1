"""API keys: the credentials services use for ``Authorization: Bearer <key>``."""
import hashlib

from django.db import models


def hash_api_key(raw_key: str) -> str:
    """Return the hex SHA-256 of ``raw_key``; keys are stored only as this hash."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


class ApiKey(models.Model):
    """One API credential. The raw key is shown once at creation; only ``prefix`` (to recognise
    it) and ``key_hash`` are stored. ``scopes`` is reserved for per-scope access (issue 5);
    today every active key may use the whole API."""

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
