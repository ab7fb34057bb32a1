"""A request body with a ``Content-Encoding`` other than ``identity`` is answered 415
``UNSUPPORTED_CONTENT_ENCODING`` (RFC 9110 section 15.5.16), on every API write, instead of a
400 about UTF-8 (gzip body) or being accepted as if the header meant nothing (plain body)."""
import gzip
import http.client
import json

import pytest
from rest_framework.test import APIClient

from events.models import Event
from tests.conftest import assert_seed_error
from tests.vocelio_webhooks.test_api_walk_fixes import serve_gunicorn

PUBLISH = {"event_type": "lead.created", "event_id": "evt_gzip_1", "data": {"lead": {"id": "l1"}}}


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", True), ("gzip", False), ("br", False),
                                                    ("identity, gzip", False)])
def test_publish_with_a_content_encoding_is_415_and_nothing_is_published(api, encoding, compress):
    # given
    body = json.dumps(PUBLISH).encode()
    body = gzip.compress(body) if compress else body

    # when
    response = api.generic("POST", "/events/publish", body, content_type="application/json",
                           HTTP_CONTENT_ENCODING=encoding)

    # then
    error = assert_seed_error(response, 415, "UNSUPPORTED_CONTENT_ENCODING")
    assert error["details"]["content_encoding"] == encoding
    assert response["Accept-Encoding"] == "identity"
    assert not Event.objects.filter(event_id="evt_gzip_1").exists()


def test_publish_with_identity_content_encoding_is_published(api):
    # given / when
    response = api.generic("POST", "/events/publish", json.dumps(PUBLISH), content_type="application/json",
                           HTTP_CONTENT_ENCODING="Identity")

    # then
    assert response.status_code in (200, 201, 202), response.content
    assert Event.objects.filter(event_id="evt_gzip_1").exists()


def test_endpoint_update_with_gzip_body_is_415(api):
    # given
    created = api.post("/endpoints", {"name": "e", "url": "https://example.com/h", "events": ["*"]}, format="json")

    # when
    response = api.generic("PATCH", f"/endpoints/{created.json()['id']}", gzip.compress(b'{"name": "renamed"}'),
                           content_type="application/json", HTTP_CONTENT_ENCODING="gzip")

    # then
    assert_seed_error(response, 415, "UNSUPPORTED_CONTENT_ENCODING")
    assert api.get(f"/endpoints/{created.json()['id']}").json()["name"] == "e"


def test_gzip_body_without_a_key_is_still_401(db):
    # given / when
    response = APIClient().generic("POST", "/events/publish", gzip.compress(json.dumps(PUBLISH).encode()),
                                   content_type="application/json", HTTP_CONTENT_ENCODING="gzip")

    # then
    assert_seed_error(response, 401, "UNAUTHENTICATED")


def test_gunicorn_chunked_gzip_publish_is_415(transactional_db, api_key, event_types):
    # given the project's WSGI stack (the chunked middleware first) under gunicorn
    body = gzip.compress(json.dumps(PUBLISH).encode())
    with serve_gunicorn() as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            # when a chunked body is sent with Content-Encoding: gzip
            connection.request("POST", "/events/publish", body=iter([body[:10], body[10:]]), encode_chunked=True,
                               headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}",
                                        "Transfer-Encoding": "chunked", "Content-Encoding": "gzip"})
            response = connection.getresponse()
            status, document = response.status, json.loads(response.read())
        finally:
            connection.close()

    # then
    assert (status, document["error"]["code"]) == (415, "UNSUPPORTED_CONTENT_ENCODING")
    assert not Event.objects.filter(event_id="evt_gzip_1").exists()
