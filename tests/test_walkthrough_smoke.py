"""Smoke test of the whole path on whatever database and broker are configured (CI runs it on
the embedded default: SQLite + filesystem broker): publish through the API, a real worker
delivers, the receiver verifies the seed's signature."""
import hashlib
import hmac

import pytest

from tests.conftest import wait_until


@pytest.mark.smoke
def test_publish_delivers_signed_event_end_to_end(api, receiver, worker):
    # given
    created = api.post("/endpoints", {"name": "CRM", "url": receiver.url(), "events": ["lead.*"]}, format="json")
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]

    # when
    published = api.post("/events/publish", {"event_type": "lead.created", "payload": {"lead": {"id": "l1"}}},
                         format="json")

    # then
    assert published.status_code == 202, published.content
    request = receiver.wait_for(1)[0]
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.header("X-Vocelio-Signature"), expected)
    assert request.json()["data"] == {"lead": {"id": "l1"}}
    delivery_id = published.json()["deliveries"][0]["id"]
    detail = wait_until(lambda: (d := api.get(f"/deliveries/{delivery_id}").json())["status"] == "succeeded" and d)
    assert detail["attempts"][0]["response_status_code"] == 200
