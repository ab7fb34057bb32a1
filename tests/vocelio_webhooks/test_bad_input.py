"""Bad input found by trying to break the service: each case answers in the seed's error format
with the right status and writes nothing, or is recorded as a failed attempt instead of a crash."""
import json

import pytest

from deliveries import services as delivery_services
from endpoints.models import WebhookEndpoint
from events.models import Event
from tests.conftest import assert_seed_error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("custom_headers", {"X-A": "😀"}),
        ("url", "http://" + "a" * 64 + ".example.com/hook"),
        ("url", "http://127.0.0.1:0/hook"),
    ],
)
def test_endpoint_create_refuses_unsendable_configuration(api, field, value):
    # given
    body = {"name": "bad", "url": "https://example.com/hook", "events": ["lead.*"], field: value}

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert field in error["details"]["fields"]
    assert WebhookEndpoint.objects.count() == 0


def test_publish_body_over_the_limit_is_413(api, settings):
    # given
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {"event_type": "lead.created", "data": {"blob": "x" * 20_000}}

    # when
    response = api.post("/events/publish", body, format="json")

    # then
    assert_seed_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert Event.objects.count() == 0


@pytest.mark.parametrize("depth", [65, 1000])
def test_publish_deeply_nested_data_is_400(api, depth):
    # given
    raw = '{"event_type": "lead.created", "data": {"a": ' + "[" * depth + "]" * depth + "}}"

    # when
    response = api.post("/events/publish", raw, content_type="application/json")

    # then
    assert response.status_code == 400, response.content
    assert Event.objects.count() == 0


def test_publish_form_encoded_body_is_415(api):
    # given / when
    response = api.post("/events/publish", "event_type=lead.created", content_type="application/x-www-form-urlencoded")

    # then
    assert_seed_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert Event.objects.count() == 0


def test_publish_invalid_event_id_names_the_field(api):
    # given / when
    response = api.post("/events/publish", {"event_type": "lead.created", "event_id": "evt 1"}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "event_id" in error["details"]["fields"]


@pytest.mark.parametrize("query", ["limit=99999999999999999999999", "offset=99999999999999999999999", "limit=-5"])
def test_list_with_out_of_range_pagination_is_400_not_a_crash(api, query):
    # given / when
    response = api.get(f"/deliveries?{query}")

    # then (a number the database cannot hold never reaches it; tests/vocelio_webhooks/test_strict_query_params.py)
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == [query.split("=")[0]]


def test_list_limit_above_the_maximum_is_400(api):
    # given
    for n in range(3):
        api.post("/endpoints", {"name": f"e{n}", "url": "https://example.com/h", "events": ["*"]}, format="json")

    # when
    response = api.get("/endpoints?limit=1000000")
    at_maximum = api.get("/endpoints?limit=500")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert at_maximum.status_code == 200
    assert len(at_maximum.json()["results"]) == 3


def test_health_wrong_method_is_json_405(client):
    # given / when
    response = client.post("/health")

    # then
    assert_seed_error(response, 405, "METHOD_NOT_ALLOWED")


def test_disallowed_host_is_json_400(client):
    # given / when
    response = client.get("/health", HTTP_HOST="evil.example")

    # then
    assert response.status_code == 400
    assert json.loads(response.content)["error"]["code"] == "BAD_REQUEST"


def test_send_request_to_unresolvable_host_is_a_retryable_dns_error(db):
    # given
    endpoint = WebhookEndpoint(name="x", url="http://no-such-host.invalid/hook", events=["*"])
    request = delivery_services.WebhookRequest(method="POST", url=endpoint.url, headers={}, body=b"{}")

    # when
    result = delivery_services.send_request(request=request, endpoint=endpoint)

    # then
    from deliveries import retry

    assert result.error_class == "dns_error"
    policy = endpoint.effective_retry_policy
    assert retry.classify(status_code=None, error_class=result.error_class, policy=policy) == "retry"


@pytest.mark.parametrize(
    "query", ["created_after=0001-01-01T00:00:00%2B05:00", "created_before=9999-12-31T23:59:59-05:00"]
)
def test_out_of_range_date_filters_are_never_a_500(api, query):
    # given / when
    response = api.get(f"/deliveries?{query}")

    # then: PostgreSQL compares such dates (200, nothing matches); SQLite cannot convert them (400)
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert_seed_error(response, 400, "VALIDATION_ERROR")
    else:
        assert response.json()["results"] == []


@pytest.mark.parametrize("path", ["/deliveries/retry", "/deliveries/discard"])
def test_bulk_operations_refuse_misspelled_filters(api, path):
    # given: a typo that would otherwise select every dead letter
    body = {"endpont": 7, "dry_run": True}

    # when
    response = api.post(path, body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "endpont" in error["details"]["fields"]
