"""Every user-supplied string that becomes an outgoing header value follows one rule at save
(``endpoints.models.header_value_problem``): visible ASCII, spaces/tabs only inside, no CR, LF,
NUL or other control character. Before, an ``api_key`` of ``" supersecretkey123"`` was stored
(201) and every send then failed with requests' ``InvalidHeader`` message quoting the whole key
into ``last_error``; ``"supersecrét🚀key"`` failed as ``internal_error``. Now each is a 400 in the
seed's error format, nothing is written, and the error never quotes the value."""
import pytest

from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error

BAD_HEADER_VALUES = [
    pytest.param(" supersecretkey123", id="leading-space"),
    pytest.param("supersecretkey123 ", id="trailing-space"),
    pytest.param("\tsupersecretkey123", id="leading-tab"),
    pytest.param("k\r\nX-Injected: yes", id="crlf-injection"),
    pytest.param("supersecretkey\n123", id="lf"),
    pytest.param("supersecret\x00key123", id="nul"),
    pytest.param("supersecret\x1bkey123", id="escape"),
    pytest.param("supersecret\x7fkey123", id="del"),
    pytest.param("supersecrét🚀key", id="non-ascii"),
]


def _api_key_endpoint(**fields) -> dict:
    return {"name": "Key", "url": "http://127.0.0.1:9010/k", "events": ["agent.offline"],
            "signature_method": "api_key", "environment": "development", **fields}


@pytest.mark.django_db
@pytest.mark.parametrize("value", BAD_HEADER_VALUES)
def test_create_endpoint_refuses_api_key_that_is_no_header_value(api, value):
    # given
    body = _api_key_endpoint(api_key=value)

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "api_key" in error["details"]["fields"]
    assert "supersecret" not in response.content.decode()  # the key is never quoted back
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_update_endpoint_refuses_bad_api_key_and_keeps_the_stored_one(api):
    # given
    created = api.post("/endpoints", _api_key_endpoint(api_key="goodkey-123456"), format="json")
    assert created.status_code == 201, created.content

    # when
    response = api.patch(f"/endpoints/{created.json()['id']}", {"api_key": " supersecretkey123"}, format="json")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert WebhookEndpoint.objects.get().api_key == "goodkey-123456"


@pytest.mark.django_db
def test_create_endpoint_accepts_api_key_with_inner_space(api):
    # given: visible ASCII with a space inside is a valid header value ("Token abc")
    body = _api_key_endpoint(api_key="Token abc-123!~")

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    assert response.status_code == 201, response.content
    assert WebhookEndpoint.objects.get().api_key == "Token abc-123!~"


@pytest.mark.django_db
@pytest.mark.parametrize("value", [" Bearer abc", "Bearer abc ", "Bearer\x7fabc"])
def test_create_endpoint_refuses_custom_header_value_with_surrounding_space_or_del(api, value):
    # given: requests refuses a leading space at send time ("Invalid leading whitespace ... in header value")
    body = _api_key_endpoint(signature_method="hmac_sha256", custom_headers={"Authorization": value})

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "custom_headers" in error["details"]["fields"]
    assert "Bearer" not in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["text/plain; charset=é", " text/plain", "text/plain\x7f", "hello world",
                                          "text"])
def test_create_endpoint_refuses_inline_content_type_that_is_no_header_value(api, content_type):
    # given: the content type is sent as the Content-Type header
    body = _api_key_endpoint(signature_method="hmac_sha256",
                             transformation={"body": "{{ event_type }}", "content_type": content_type})

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "transformation" in error["details"]["fields"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_create_endpoint_refuses_secret_with_del_character(api):
    # given
    body = _api_key_endpoint(signature_method="hmac_sha256", secret="abcdefghijklmnop\x7f")

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "secret" in error["details"]["fields"]
    assert not WebhookEndpoint.objects.exists()
