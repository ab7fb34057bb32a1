"""Webhook signatures: pure functions from (secret, exact body bytes, ids, time) to headers.

Schemes (``WebhookEndpoint.signature_method``):

* ``hmac_sha256`` / ``hmac_sha1`` — ``X-Vocelio-Signature: sha256=<hex>`` (or ``sha1=<hex>``), the
  HMAC of the raw body bytes keyed with the secret's UTF-8 bytes: exactly what the seed's
  ``verify_signature(payload, signature, secret)`` recomputes (GitHub's ``X-Hub-Signature-256`` form).
* ``standard_webhooks`` — Standard Webhooks v1, section "Signature scheme": ``webhook-id``,
  ``webhook-timestamp`` (Unix seconds), ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
  ``"{id}.{timestamp}.{body}"`` keyed with the base64-decoded part of ``whsec_<base64>``; several
  signatures are space-separated (secret rotation).
* ``jwt`` — ``Authorization: Bearer <HS256 JWT>`` keyed with the secret's UTF-8 bytes, accepted by
  the seed's ``verify_jwt_token``; claims ``iss``, ``iat``, ``exp`` (short), ``jti`` (= delivery
  id), ``event_id``, ``event_type`` and ``body_sha256`` (hex SHA-256 of the body, binding the token
  to these bytes).
* ``api_key`` — ``X-API-Key: <endpoint api_key>``, as in the seed's example.
* ``none`` — no signature.
"""
import base64
import hashlib
import hmac
import secrets

import jwt

SIGNATURE_HEADER = "X-Vocelio-Signature"
# During a secret rotation's overlap: the signature (or JWT) made with the previous secret.
PREVIOUS_SIGNATURE_HEADER = "X-Vocelio-Signature-Previous"
PREVIOUS_JWT_HEADER = "X-Vocelio-Jwt-Previous"
STANDARD_SECRET_PREFIX = "whsec_"
JWT_ISSUER = "vocelio-webhooks"


def generate_secret() -> str:
    """A new endpoint secret: ``whsec_`` + base64 of 32 random bytes (Standard Webhooks,
    "Symmetric" keys: 24–64 bytes). Works for every scheme above."""
    return STANDARD_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_standard_secret(secret: str) -> bytes:
    """Return the key bytes of a ``whsec_<base64>`` secret. Raises ``ValueError`` with a
    user-facing message when the secret is not in that form or decodes to fewer than 24 bytes."""
    body = secret.removeprefix(STANDARD_SECRET_PREFIX)
    try:
        key = base64.b64decode(body, validate=True)
    except (ValueError, TypeError) as exc:
        raise ValueError("standard_webhooks secrets must be 'whsec_' followed by base64; "
                         "omit the secret to get one generated.") from exc
    if len(key) < 24:
        raise ValueError("standard_webhooks secrets must decode to at least 24 bytes.")
    return key


def sign_hmac(*, secret: str, body: bytes, algorithm: str) -> str:
    """``"sha256=<hex>"`` or ``"sha1=<hex>"``: HMAC of ``body`` keyed with ``secret`` (UTF-8).
    ``algorithm`` is ``"sha256"`` or ``"sha1"``; anything else raises ``ValueError``."""
    if algorithm not in ("sha256", "sha1"):
        raise ValueError(f"unsupported HMAC algorithm {algorithm!r}")
    digest = hmac.new(secret.encode("utf-8"), body, getattr(hashlib, algorithm)).hexdigest()
    return f"{algorithm}={digest}"


def sign_standard(*, secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature`` value: ``"v1,<b64> v1,<b64>"``, one per secret
    (newest first). ``timestamp`` is Unix seconds."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    signatures = []
    for secret in secrets_:
        mac = hmac.new(parse_standard_secret(secret), to_sign, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(mac).decode("ascii"))
    return " ".join(signatures)


def make_jwt(
    *, secret: str, delivery_id: str, event_id: str, event_type: str, body: bytes, issued_at: int, ttl_seconds: int
) -> str:
    """An HS256 JWT for ``Authorization: Bearer``; ``issued_at`` in Unix seconds, valid for
    ``ttl_seconds``. See the module docstring for the claims."""
    claims = {
        "iss": JWT_ISSUER,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
        "jti": delivery_id,
        "event_id": event_id,
        "event_type": event_type,
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    return jwt.encode(claims, secret.encode("utf-8"), algorithm="HS256")


def signature_headers(
    *,
    method: str,
    secrets_: list[str],
    api_key: str,
    msg_id: str,
    delivery_id: str,
    event_id: str,
    event_type: str,
    timestamp: int,
    body: bytes,
    jwt_ttl_seconds: int = 300,
) -> dict[str, str]:
    """The authentication headers for one request.

    ``method`` is a ``WebhookEndpoint.SignatureMethod`` value; ``secrets_`` the valid secrets,
    newest first (only the first is used by the HMAC and JWT schemes); ``timestamp`` Unix seconds;
    ``body`` the exact bytes sent. Returns a dict of header name → value (empty for ``none``).
    Raises ``ValueError`` when the method needs a secret or key that is missing.
    """
    if method == "none":
        return {}
    if method == "api_key":
        if not api_key:
            raise ValueError("signature_method 'api_key' needs an api_key")
        return {"X-API-Key": api_key}
    if not secrets_ or not secrets_[0]:
        raise ValueError(f"signature_method {method!r} needs a secret")
    if method in ("hmac_sha256", "hmac_sha1"):
        algorithm = "sha256" if method == "hmac_sha256" else "sha1"
        headers = {SIGNATURE_HEADER: sign_hmac(secret=secrets_[0], body=body, algorithm=algorithm)}
        if len(secrets_) > 1:
            headers[PREVIOUS_SIGNATURE_HEADER] = sign_hmac(secret=secrets_[1], body=body, algorithm=algorithm)
        return headers
    if method == "standard_webhooks":
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_standard(secrets_=secrets_, msg_id=msg_id, timestamp=timestamp, body=body),
        }
    if method == "jwt":
        tokens = [
            make_jwt(secret=secret, delivery_id=delivery_id, event_id=event_id, event_type=event_type,
                     body=body, issued_at=timestamp, ttl_seconds=jwt_ttl_seconds)
            for secret in secrets_[:2]
        ]
        headers = {"Authorization": f"Bearer {tokens[0]}"}
        if len(tokens) > 1:
            headers[PREVIOUS_JWT_HEADER] = tokens[1]
        return headers
    raise ValueError(f"unknown signature_method {method!r}")
