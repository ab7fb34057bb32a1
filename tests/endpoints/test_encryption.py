"""Secrets at rest: Fernet-encrypted columns, readable after a key rotation and re-encryption."""
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from endpoints.models import WebhookEndpoint


def _raw(endpoint_id: int) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret, custom_headers FROM endpoints_webhookendpoint WHERE id = %s", [endpoint_id])
        return cursor.fetchone()


def test_custom_headers_are_encrypted_at_rest(api):
    # given / when
    created = api.post("/endpoints", {"name": "x", "url": "https://example.com/h", "events": ["*"],
                                      "custom_headers": {"Authorization": "Bearer sf_token_123"}}, format="json").json()

    # then
    secret_column, headers_column = _raw(created["id"])
    assert "sf_token_123" not in headers_column and headers_column.startswith("fernet:")
    assert created["secret"] not in secret_column
    assert WebhookEndpoint.objects.get(pk=created["id"]).custom_headers == {"Authorization": "Bearer sf_token_123"}


def test_rotate_encryption_keys_reencrypts_with_the_new_key(api, settings):
    # given: data written under the old key
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.WEBHOOK_ENCRYPTION_KEYS = [old_key]
    created = api.post("/endpoints", {"name": "x", "url": "https://example.com/h", "events": ["*"],
                                      "custom_headers": {"X-Token": "tok-123"}}, format="json").json()

    # when: the new key goes first, the command runs, the old key is removed
    settings.WEBHOOK_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_keys")
    settings.WEBHOOK_ENCRYPTION_KEYS = [new_key]

    # then
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert endpoint.secret == created["secret"]
    assert endpoint.custom_headers == {"X-Token": "tok-123"}
    secret_column, _ = _raw(created["id"])
    token = secret_column.removeprefix("fernet:").encode()
    assert Fernet(new_key.encode()).decrypt(token).decode() == created["secret"]
