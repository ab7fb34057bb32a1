"""Encryption at rest for endpoint secrets and credentials (cryptography's Fernet / MultiFernet).

Keys come from ``WEBHOOK_ENCRYPTION_KEYS`` (comma-separated Fernet keys, newest first: the first
encrypts, all decrypt, which is how keys are rotated). When unset, one key is derived from
``SECRET_KEY`` with HKDF-SHA256 so development works without set-up.
"""
import base64
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from .logs import SECRET_KEY_RE

_PREFIX = "fernet:"


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if keys:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vocelio-webhooks-secrets").derive(
        secret_key.encode()
    )
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derived))])


def fernet() -> MultiFernet:
    """Return the MultiFernet built from the current settings."""
    return _fernet(tuple(settings.WEBHOOK_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    """Encrypt ``plaintext`` → ``"fernet:<token>"``."""
    return _PREFIX + fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(stored: str) -> str:
    """Decrypt a value made by :func:`encrypt`. Raises ``cryptography.fernet.InvalidToken`` when
    no configured key opens it."""
    if not stored.startswith(_PREFIX):
        raise InvalidToken("value is not encrypted")
    return fernet().decrypt(stored[len(_PREFIX):].encode("ascii")).decode("utf-8")


def mask(value: str | None) -> str:
    """Mask a secret for display, as Stripe shows keys: the well-known ``whsec_`` prefix if any,
    and the last 4 characters only for values of 20 characters or more (``whsec_***Xk9=``).
    Everything else is hidden, so a mask never gives away a useful part of a secret."""
    if not value:
        return ""
    prefix = "whsec_" if value.startswith("whsec_") else ""
    tail = value[-4:] if len(value) >= 20 else ""
    return f"{prefix}***{tail}"


@lru_cache(maxsize=1024)
def is_credential_header(name: str) -> bool:
    """Whether a header named ``name`` carries a credential (``Authorization``, ``X-Api-Key``,
    ``*token*``, ``Cookie``, ``X-Credential``, ``*private-key*``, …), so its value is masked wherever
    it is shown or stored. The words are the log filter's (``vocelio_webhooks.logs.SECRET_KEY_RE``),
    so a header masked in the logs is masked in stored attempts and the API too. Cached: the batch
    engine asks for every header of every attempt it stores (~10 per delivery)."""
    return SECRET_KEY_RE.search(name) is not None


class EncryptedTextField(models.TextField):
    """A text column whose value is Fernet-encrypted in the database and plain in Python."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)


class EncryptedJSONField(models.TextField):
    """A JSON value (e.g. custom headers holding credentials) stored Fernet-encrypted.

    Rows written before the column was encrypted hold plain JSON; they are read as such and
    encrypted on their next save (or by ``manage.py rotate_encryption_keys``).
    """

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        if value.startswith(_PREFIX):
            return json.loads(decrypt(value))
        return json.loads(value)

    def to_python(self, value):
        if isinstance(value, str) and value:
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValidationError("Enter valid JSON.") from exc
        return value

    def get_prep_value(self, value):
        if value is None:
            return value
        return encrypt(json.dumps(value, separators=(",", ":")))

    def value_to_string(self, obj):
        return json.dumps(self.value_from_object(obj))

    def formfield(self, **kwargs):
        from django import forms

        return super().formfield(**{"form_class": forms.JSONField, **kwargs})
