"""A header value the sender cannot send (an endpoint row saved before header values were
validated) is stored as ``invalid_request`` naming the header, never with its value: with
signature method ``api_key`` the value is the endpoint's API key, and attempts are readable with
a read-only key. Through the real sender, against the ``receiver`` fixture."""
import logging

import pytest

from deliveries import sender
from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from endpoints import services as endpoint_services
from endpoints.models import WebhookEndpoint
from events import services as event_services


def _delivery_with_stored_api_key(receiver, api_key: str) -> Delivery:
    endpoint = endpoint_services.create_endpoint(data={
        "name": "partner", "url": receiver.url("/hook"), "events": ["lead.*"], "signature_method": "api_key",
        "api_key": "placeholder-key", "retry_policy": {"max_attempts": 3},
    })
    # As a row saved before validation existed: written straight to the table, past the model's checks.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(api_key=api_key)
    published = event_services.publish(event_type="lead.created", data={"lead": {"id": "lead_1"}},
                                       environment=endpoint.environment)
    return published.deliveries[0]


@pytest.mark.parametrize("secret", [" supersecretkey123", "supersecret\rkey123", "supersecrét-key123",
                                    "supersecret\u2019key123"])
def test_attempt_with_an_unsendable_api_key_is_invalid_request_without_the_value(
    receiver, event_types, caplog, secret
):
    # given an endpoint whose stored API key cannot go in a header
    delivery = _delivery_with_stored_api_key(receiver, secret)
    caplog.set_level(logging.DEBUG)

    # when
    delivery_services.attempt_delivery(delivery_id=delivery.pk)

    # then the attempt names the header, not its value, and nothing was sent
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    delivery.refresh_from_db()
    assert attempt.error_class == "invalid_request"
    assert "X-API-Key" in attempt.error_message
    assert "supersec" not in attempt.error_message
    assert "supersec" not in delivery.last_error
    assert "X-API-Key" in delivery.last_error
    assert not any("supersec" in record.getMessage() or "supersec" in str(record.exc_info)
                   for record in caplog.records)
    assert receiver.requests == []


def test_attempt_with_a_valid_api_key_still_sends_it(receiver, event_types):
    # given an endpoint with a key that has a space inside (visible ASCII and spaces are valid)
    delivery = _delivery_with_stored_api_key(receiver, "key with-inner space")

    # when
    delivery_services.attempt_delivery(delivery_id=delivery.pk)

    # then
    (request,) = receiver.wait_for(1)
    assert request.header("X-API-Key") == "key with-inner space"
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SUCCEEDED


def test_send_refuses_a_bad_custom_header_value_without_echoing_it(receiver):
    # given / when
    result = sender.send(method="POST", url=receiver.url("/hook"), body=b"{}", timeout_seconds=5,
                         headers={"Authorization": "Bearer tok\nX-Injected: 1"})

    # then
    assert (result.status_code, result.error_class) == (None, "invalid_request")
    assert result.error_message == ("Header 'Authorization' has an invalid value (leading whitespace, control or "
                                    "non-ASCII characters); fix the endpoint's configuration.")
    assert receiver.requests == []
