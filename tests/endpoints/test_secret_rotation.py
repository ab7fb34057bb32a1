"""Secret rotation: a new secret shown once, the old one still signing during the overlap
(Standard Webhooks: space-separated signatures; sha256=: a documented second header), then gone."""
import hashlib
import hmac
from datetime import timedelta

import jwt
import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from deliveries import services as delivery_services
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType


def _create(api, **fields):
    response = api.post("/endpoints", {"name": "x", "url": "https://example.com/h", "events": ["*"], **fields},
                        format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _request_for(endpoint_id):
    event = Event(event_id="evt_rot", event_type=EventType.objects.get(name="lead.created"), timestamp=timezone.now(),
                  data={"lead": {"id": "l1"}}, metadata={})
    return delivery_services.build_request(endpoint=WebhookEndpoint.objects.get(pk=endpoint_id), event=event,
                                           delivery_public_id="dlv_1", attempt_number=1)


def test_rotate_secret_returns_new_secret_once_and_signs_with_both(api):
    # given
    created = _create(api)
    old = created["secret"]

    # when
    rotated = api.post(f"/endpoints/{created['id']}/rotate-secret", {}, format="json")

    # then
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert old not in rotated.content.decode()
    assert new not in api.get(f"/endpoints/{created['id']}").content.decode()
    request = _request_for(created["id"])
    def expected(secret: str) -> str:
        return "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()

    assert request.headers["X-Vocelio-Signature"] == expected(new)
    assert request.headers["X-Vocelio-Signature-Previous"] == expected(old)
    expires = WebhookEndpoint.objects.get(pk=created["id"]).previous_secret_expires_at
    assert timedelta(hours=23, minutes=59) < expires - timezone.now() <= timedelta(hours=24)


def test_rotate_secret_standard_webhooks_both_secrets_verify(api):
    # given
    created = _create(api, signature_method="standard_webhooks")
    old = created["secret"]

    # when
    new = api.post(f"/endpoints/{created['id']}/rotate-secret", {}, format="json").json()["secret"]

    # then
    request = _request_for(created["id"])
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(request.body, headers)["event_id"] == "evt_rot"
    assert Webhook(old).verify(request.body, headers)["event_id"] == "evt_rot"


def test_rotate_secret_jwt_sends_a_previous_token(api):
    # given
    created = _create(api, signature_method="jwt")
    old = created["secret"]

    # when
    new = api.post(f"/endpoints/{created['id']}/rotate-secret", {}, format="json").json()["secret"]

    # then
    request = _request_for(created["id"])
    assert jwt.decode(request.headers["Authorization"][7:], new, algorithms=["HS256"])["jti"] == "dlv_1"
    assert jwt.decode(request.headers["X-Vocelio-Jwt-Previous"], old, algorithms=["HS256"])["jti"] == "dlv_1"


def test_rotate_secret_old_secret_stops_signing_after_overlap(api):
    # given
    created = _create(api)
    api.post(f"/endpoints/{created['id']}/rotate-secret", {"overlap_seconds": 60}, format="json")

    # when
    WebhookEndpoint.objects.filter(pk=created["id"]).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1))

    # then
    assert "X-Vocelio-Signature-Previous" not in _request_for(created["id"]).headers


def test_rotate_secret_with_zero_overlap_and_given_secret(api):
    # given
    created = _create(api)

    # when
    rotated = api.post(f"/endpoints/{created['id']}/rotate-secret",
                       {"secret": "my-own-rotated-secret-123", "overlap_seconds": 0}, format="json")

    # then
    assert rotated.json()["secret"] == "my-own-rotated-secret-123"
    assert "X-Vocelio-Signature-Previous" not in _request_for(created["id"]).headers


def test_rotate_secret_refused_for_bad_input_and_secretless_methods(api):
    # given
    plain = _create(api)
    keyed = _create(api, signature_method="api_key", api_key="receiver-api-key-123456")

    # when
    too_long = api.post(f"/endpoints/{plain['id']}/rotate-secret", {"overlap_seconds": 8 * 86400}, format="json")
    too_short = api.post(f"/endpoints/{plain['id']}/rotate-secret", {"secret": "short"}, format="json")
    nothing = api.post(f"/endpoints/{keyed['id']}/rotate-secret", {}, format="json")

    # then
    assert too_long.status_code == 400
    assert too_short.status_code == 400
    assert nothing.status_code == 400 and nothing.json()["error"]["code"] == "NOTHING_TO_ROTATE"
    assert WebhookEndpoint.objects.get(pk=plain["id"]).secret == plain["secret"]


@pytest.mark.parametrize("fields", [
    pytest.param({"custom_headers": {"X-Tenant": "acme "}}, id="trailing-space-header"),
    pytest.param({"retry_policy": {"enabled": True, "max_attempts": 5, "initial_delay_seconds": 1,
                                   "max_delay_seconds": 300, "backoff_multiplier": 2.0,
                                   "retry_on_status_codes": [200, 500]}}, id="2xx-retry-code"),
    pytest.param({"rate_limit_per_minute": 500_000}, id="rate-limit-over-the-range"),
    pytest.param({"events": ["lead.created", "lead.created"]}, id="duplicate-events"),
])
def test_rotate_secret_works_on_an_endpoint_saved_before_a_later_rule(api, event_types, fields):
    # given: a row as stored before today's rules (save() does not validate)
    endpoint = WebhookEndpoint.objects.create(name="legacy", url="https://crm.example.com/hooks",
                                              events=fields.pop("events", ["lead.*"]),
                                              secret="whsec_legacy_secret_0123456789", **fields)

    # when: a leaked secret is rotated
    response = api.post(f"/endpoints/{endpoint.pk}/rotate-secret", {}, format="json")

    # then
    assert response.status_code == 200, response.json()
    endpoint.refresh_from_db()
    assert endpoint.previous_secret == "whsec_legacy_secret_0123456789"
    assert endpoint.secret != endpoint.previous_secret
