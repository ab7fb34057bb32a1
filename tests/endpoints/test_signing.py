"""Signatures as a receiver checks them: with the seed's own verify functions (copied verbatim from
the spec), with the ``standardwebhooks`` reference library, and with published test vectors."""
import base64
import hashlib
import hmac
import json
import secrets
import time

import jwt
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from endpoints import signing

BODY = json.dumps(
    {"event_type": "lead.created", "event_id": "evt_1", "data": {"lead": {"name": "Zoë Müller"}}},
    separators=(",", ":"), ensure_ascii=False,
)


# --- the seed's receiver code, verbatim from "Authentication Methods" -----------------------
def verify_signature(payload, signature, secret):
    expected = hmac.new(
        secret.encode('utf-8'),
        payload.encode('utf-8'),
        hashlib.sha256
    ).hexdigest()
    return f"sha256={expected}" == signature


def verify_jwt_token(token, secret):
    try:
        payload = jwt.decode(token, secret, algorithms=['HS256'])
        return payload
    except jwt.InvalidTokenError:
        return None


# The seed promises "SHA-256 and SHA-1 signature verification" but prints only the SHA-256
# function; a SHA-1 receiver writes the same function with ``hashlib.sha1`` and the ``sha1=`` prefix.
def verify_signature_sha1(payload, signature, secret):
    expected = hmac.new(
        secret.encode('utf-8'),
        payload.encode('utf-8'),
        hashlib.sha1
    ).hexdigest()
    return f"sha1={expected}" == signature


def _headers(method: str, *, secrets_: list[str] | None = None, api_key: str = "", body: str = BODY,
             timestamp: int | None = None, jwt_ttl_seconds: int = 300) -> dict[str, str]:
    return signing.signature_headers(
        method=method, secrets_=secrets_ if secrets_ is not None else [], api_key=api_key, msg_id="evt_1",
        delivery_id="dlv_1", event_id="evt_1", event_type="lead.created",
        timestamp=int(time.time()) if timestamp is None else timestamp, body=body.encode("utf-8"),
        jwt_ttl_seconds=jwt_ttl_seconds,
    )


# --- HMAC (seed format) -----------------------------------------------------------------------
def test_sign_hmac_matches_github_sha256_test_vector():
    # given GitHub's documented example ("Validating webhook deliveries")
    secret, payload = "It's a Secret to Everybody", b"Hello, World!"

    # when
    signature = signing.sign_hmac(secret=secret, body=payload, algorithm="sha256")

    # then
    assert signature == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_signature_headers_hmac_sha256_verified_by_seed_function():
    # given
    secret = signing.generate_secret()

    # when
    headers = _headers("hmac_sha256", secrets_=[secret])

    # then
    assert set(headers) == {"X-Vocelio-Signature"}
    assert verify_signature(BODY, headers["X-Vocelio-Signature"], secret) is True


def test_signature_headers_hmac_sha256_rejected_by_seed_function_for_tampered_body_or_wrong_secret():
    # given
    secret = signing.generate_secret()
    signature = _headers("hmac_sha256", secrets_=[secret])["X-Vocelio-Signature"]

    # when
    tampered = verify_signature(BODY.replace("Zoë", "Zoe"), signature, secret)
    wrong_secret = verify_signature(BODY, signature, signing.generate_secret())

    # then
    assert tampered is False
    assert wrong_secret is False


def test_signature_headers_hmac_sha1_verified_by_seed_style_function():
    # given
    secret = "salesforce_webhook_secret"

    # when
    signature = _headers("hmac_sha1", secrets_=[secret])["X-Vocelio-Signature"]

    # then
    assert signature.startswith("sha1=")
    assert verify_signature_sha1(BODY, signature, secret) is True
    assert verify_signature_sha1(BODY + " ", signature, secret) is False
    assert verify_signature(BODY, signature, secret) is False  # not a sha256 signature


def test_signature_headers_hmac_uses_only_the_newest_secret():
    # given
    new, old = signing.generate_secret(), signing.generate_secret()

    # when
    signature = _headers("hmac_sha256", secrets_=[new, old])["X-Vocelio-Signature"]

    # then
    assert verify_signature(BODY, signature, new) is True
    assert verify_signature(BODY, signature, old) is False


def test_sign_hmac_rejects_unknown_algorithm():
    # given / when / then
    with pytest.raises(ValueError):
        signing.sign_hmac(secret="s", body=b"x", algorithm="md5")


# --- Standard Webhooks ----------------------------------------------------------------------
def test_signature_headers_standard_webhooks_verified_by_reference_library():
    # given
    secret = signing.generate_secret()

    # when
    headers = _headers("standard_webhooks", secrets_=[secret])

    # then
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY.encode("utf-8"), headers) == json.loads(BODY)


def test_signature_headers_standard_webhooks_with_two_secrets_verifies_with_either():
    # given a rotation in progress: the new secret first, the old one still valid
    new, old = signing.generate_secret(), signing.generate_secret()

    # when
    headers = _headers("standard_webhooks", secrets_=[new, old])

    # then
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(BODY.encode("utf-8"), headers)
    assert Webhook(old).verify(BODY.encode("utf-8"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(BODY.encode("utf-8"), headers)


def test_signature_headers_standard_webhooks_tampered_body_fails_verification():
    # given
    secret = signing.generate_secret()
    headers = _headers("standard_webhooks", secrets_=[secret])

    # when / then
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("lead.created", "lead.deleted").encode("utf-8"), headers)


def test_signature_headers_standard_webhooks_timestamp_is_signed():
    # given
    secret = signing.generate_secret()
    headers = _headers("standard_webhooks", secrets_=[secret])

    # when
    headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)

    # then
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.encode("utf-8"), headers)


# --- JWT ------------------------------------------------------------------------------------
def test_signature_headers_jwt_verified_by_seed_function_with_claims():
    # given
    secret = signing.generate_secret()
    now = int(time.time())

    # when
    headers = _headers("jwt", secrets_=[secret], timestamp=now, jwt_ttl_seconds=120)

    # then
    scheme, token = headers["Authorization"].split(" ", 1)
    assert scheme == "Bearer"
    claims = verify_jwt_token(token, secret)
    assert claims is not None
    assert claims["jti"] == "dlv_1"
    assert claims["event_id"] == "evt_1"
    assert claims["event_type"] == "lead.created"
    assert hmac.compare_digest(claims["body_sha256"], hashlib.sha256(BODY.encode("utf-8")).hexdigest())
    assert claims["iat"] == now
    assert claims["exp"] - claims["iat"] == 120


def test_signature_headers_jwt_rejected_by_seed_function_with_wrong_secret_or_after_expiry():
    # given
    secret = signing.generate_secret()
    long_ago = int(time.time()) - 3600

    # when
    fresh = _headers("jwt", secrets_=[secret])["Authorization"].split(" ", 1)[1]
    expired = _headers("jwt", secrets_=[secret], timestamp=long_ago,
                       jwt_ttl_seconds=60)["Authorization"].split(" ", 1)[1]

    # then
    assert verify_jwt_token(fresh, signing.generate_secret()) is None
    assert verify_jwt_token(expired, secret) is None


# --- API key, none, missing secrets ----------------------------------------------------------
def test_signature_headers_api_key_sends_x_api_key():
    # given / when
    headers = _headers("api_key", api_key="your_api_key_here")

    # then
    assert headers == {"X-API-Key": "your_api_key_here"}


def test_signature_headers_none_sends_nothing():
    # given / when
    headers = _headers("none", secrets_=[signing.generate_secret()])

    # then
    assert headers == {}


@pytest.mark.parametrize("method", ["hmac_sha256", "hmac_sha1", "standard_webhooks", "jwt"])
@pytest.mark.parametrize("secrets_", [[], [""]])
def test_signature_headers_missing_secret_raises_value_error(method, secrets_):
    # given / when / then
    with pytest.raises(ValueError, match="secret"):
        _headers(method, secrets_=secrets_)


def test_signature_headers_api_key_method_without_key_raises_value_error():
    # given / when / then
    with pytest.raises(ValueError, match="api_key"):
        _headers("api_key", api_key="")


def test_signature_headers_unknown_method_raises_value_error():
    # given / when / then
    with pytest.raises(ValueError):
        _headers("rot13", secrets_=["s"])


# --- secrets ---------------------------------------------------------------------------------
def test_generate_secret_is_whsec_with_32_random_bytes():
    # given / when
    first, second = signing.generate_secret(), signing.generate_secret()

    # then
    assert first.startswith("whsec_")
    assert len(signing.parse_standard_secret(first)) == 32
    assert first != second


def test_parse_standard_secret_returns_key_bytes():
    # given
    key = secrets.token_bytes(24)

    # when
    parsed = signing.parse_standard_secret("whsec_" + base64.b64encode(key).decode())

    # then
    assert parsed == key


@pytest.mark.parametrize(
    "secret",
    [
        "salesforce_webhook_secret",  # the seed's example secret: not base64
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"x" * 23).decode(),  # below the 24-byte minimum
        "whsec_",
        "",
    ],
)
def test_parse_standard_secret_rejects_bad_secrets(secret):
    # given / when / then
    with pytest.raises(ValueError):
        signing.parse_standard_secret(secret)
