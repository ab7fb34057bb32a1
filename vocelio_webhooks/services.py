"""Writes for API keys."""
import secrets
from dataclasses import dataclass

from .models import ApiKey, hash_api_key

API_KEY_PREFIX = "vwk_"


@dataclass(frozen=True)
class CreatedApiKey:
    """A new key: ``raw_key`` is the only time the full key exists outside the caller."""

    api_key: ApiKey
    raw_key: str


def create_api_key(*, name: str, scopes: list[str] | None = None) -> CreatedApiKey:
    """Create an API key named ``name``; returns the row and the raw key (shown once).

    The raw key is ``vwk_`` + 43 URL-safe characters (256 bits); only its SHA-256 is stored.
    """
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(name=name, prefix=raw[:12], key_hash=hash_api_key(raw), scopes=scopes or [])
    return CreatedApiKey(api_key=key, raw_key=raw)
