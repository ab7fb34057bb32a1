"""The OpenAPI schema (``GET /schema``) lists each operation's error answers with the seed's
envelope as the shared ``Error`` component (``vocelio_webhooks.schema``), and what it lists is
what the API answers: the sweeps below call every operation the way that status needs."""
import json
import re

import jsonschema
import pytest
from rest_framework.test import APIClient

from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error, due_deliveries
from vocelio_webhooks import services as key_services
from vocelio_webhooks.schema import OPERATION_ERRORS

ERROR_REF = {"$ref": "#/components/schemas/Error"}
METHODS = ("get", "post", "put", "patch", "delete")
# A path parameter value no object has, valid for every path converter and lookup regex.
MISSING = {"id": "987654321", "event_id": "evt_no_such_event", "name": "no.such.type"}
# Bodies that pass the serializers which run before the object lookup (the rest look up first).
BODY_BEFORE_LOOKUP = {"/endpoints/{id}/status": {"status": "paused"}, "/templates/{id}/rollback": {"version": 1}}


@pytest.fixture
def schema(api) -> dict:
    response = api.get("/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict):
    """Every ``(path, method, operation)`` of ``schema``."""
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def client_with(*scopes: str, environments: list[str] | None = None) -> APIClient:
    created = key_services.create_api_key(name="oa", scopes=list(scopes), environments=environments)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.raw_key}")
    return client


def call(client: APIClient, method: str, path: str, **kwargs):
    url = re.sub(r"\{(\w+)\}", lambda match: MISSING[match.group(1)], path)
    return getattr(client, method)(url, **kwargs)


def assert_envelope(response, status_code: int, code: str, schema: dict) -> None:
    """``response`` is the seed's error document with this status and code, and valid against
    the schema's ``Error`` component."""
    assert_seed_error(response, status_code, code)
    jsonschema.validate(response.json(), schema["components"]["schemas"]["Error"])


# --- what the schema says ------------------------------------------------------------------------
def test_openapi_errors_envelope_is_one_shared_component(schema):
    # given / when
    error = schema["components"]["schemas"]["Error"]

    # then
    assert error["required"] == ["error"]
    inner = error["properties"]["error"]
    assert set(inner["required"]) == {"code", "message", "details"}
    assert inner["properties"]["code"]["type"] == "string"
    assert inner["properties"]["message"]["type"] == "string"
    assert inner["properties"]["details"]["type"] == "object"
    for path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                assert response["content"] == {"application/json": {"schema": ERROR_REF}}, (method, path, status)


@pytest.mark.parametrize(
    ("path", "method", "listed", "not_listed"),
    [
        ("/events/publish", "post",
         {"400": ["VALIDATION_ERROR", "INVALID_REQUEST_BODY", "UNKNOWN_EVENT_TYPE"], "401": ["UNAUTHENTICATED"],
          "403": ["INSUFFICIENT_SCOPE", "ENVIRONMENT_FORBIDDEN"], "409": ["EVENT_ID_CONFLICT"],
          "411": ["LENGTH_REQUIRED"], "413": ["PAYLOAD_TOO_LARGE"],
          "415": ["UNSUPPORTED_MEDIA_TYPE", "UNSUPPORTED_CONTENT_ENCODING"], "429": ["RATE_LIMITED"],
          "503": ["QUEUE_FULL"]},
         ["404"]),
        ("/endpoints/{id}", "get",
         {"401": ["UNAUTHENTICATED"], "403": ["INSUFFICIENT_SCOPE"], "404": ["NOT_FOUND"], "429": ["RATE_LIMITED"]},
         ["400", "409", "413", "415"]),
        ("/endpoints/{id}", "patch",
         {"400": ["VALIDATION_ERROR", "UNKNOWN_EVENT_TYPE", "INVALID_FILTER", "URL_NOT_ALLOWED"],
          "403": ["INSUFFICIENT_SCOPE", "ENVIRONMENT_FORBIDDEN"], "404": ["NOT_FOUND"], "413": ["PAYLOAD_TOO_LARGE"]},
         ["409"]),
        ("/deliveries/retry/{id}", "post",
         {"401": ["UNAUTHENTICATED"], "403": ["INSUFFICIENT_SCOPE"], "404": ["NOT_FOUND"],
          "409": ["DELIVERY_NOT_RETRYABLE", "ENDPOINT_DELETED"], "429": ["RATE_LIMITED"]},
         ["400", "413", "415"]),  # no request body
        ("/endpoints/{id}/test", "post",
         {"400": ["VALIDATION_ERROR", "UNKNOWN_EVENT_TYPE"], "404": ["NOT_FOUND"],
          "429": ["RATE_LIMITED", "TEST_SEND_BUSY"], "415": ["UNSUPPORTED_MEDIA_TYPE"]},
         ["409"]),
        ("/deliveries", "get",
         {"400": ["VALIDATION_ERROR"], "401": ["UNAUTHENTICATED"], "403": ["INSUFFICIENT_SCOPE"],
          "429": ["RATE_LIMITED"]},
         ["404", "413", "415"]),
        ("/metrics", "get", {"401": ["UNAUTHENTICATED"], "403": ["INSUFFICIENT_SCOPE", "ENVIRONMENT_FORBIDDEN"]},
         ["429"]),  # not throttled
        ("/health", "get", {}, ["400", "401", "403", "429"]),
    ],
)
def test_openapi_errors_representative_operations_list_their_statuses(schema, path, method, listed, not_listed):
    # given
    responses = schema["paths"][path][method]["responses"]

    # when
    statuses = set(responses)

    # then
    for status, codes in listed.items():
        assert status in statuses, (method, path, status)
        assert responses[status]["content"]["application/json"]["schema"] == ERROR_REF
        for code in codes:
            assert code in responses[status]["description"], (method, path, status, code)
    assert not statuses & set(not_listed), (method, path)
    if "429" in listed:
        assert "Retry-After" in responses["429"]["headers"]


def test_openapi_errors_success_answers_are_kept(schema):
    # given / when
    publish = schema["paths"]["/events/publish"]["post"]["responses"]
    ready = schema["paths"]["/health/ready"]["get"]["responses"]

    # then
    for status in ("200", "202"):
        assert publish[status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/PublishOutput"}
    assert ready["503"]["description"] == "NOT_READY, details = the checks"  # the view's own words stay


def test_openapi_errors_operation_table_names_real_operations(schema):
    # given
    operation_ids = {operation["operationId"] for _, _, operation in operations(schema)}

    # when
    stale = set(OPERATION_ERRORS) - operation_ids

    # then
    assert not stale, f"OPERATION_ERRORS names operations the schema does not have: {sorted(stale)}"


# --- what the API answers ------------------------------------------------------------------------
def test_openapi_errors_401_is_listed_exactly_where_the_api_answers_it(schema):
    # given
    anonymous = APIClient()

    for path, method, operation in operations(schema):
        # when
        response = call(anonymous, method, path)

        # then
        if "401" in operation["responses"]:
            assert_envelope(response, 401, "UNAUTHENTICATED", schema)
        else:
            assert response.status_code != 401, (method, path)


def test_openapi_errors_403_listed_operations_refuse_a_key_without_their_scope(schema):
    # given: a key that may only publish (refused every read) and one that may only read (every write)
    clients = {"safe": client_with("events:publish"), "write": client_with("read")}

    for path, method, operation in operations(schema):
        if "403" not in operation["responses"]:
            continue

        # when
        response = call(clients["safe" if method == "get" else "write"], method, path)

        # then
        assert_envelope(response, 403, "INSUFFICIENT_SCOPE", schema)


def test_openapi_errors_environment_forbidden_is_listed_exactly_where_the_api_answers_it(schema):
    # given: an admin key limited to staging, writing (or reading metrics) for production
    staging = client_with("*", environments=["staging"])
    body = {"environment": "production"}
    checked = 0

    for path, method, operation in operations(schema):
        listed = "ENVIRONMENT_FORBIDDEN" in operation["responses"].get("403", {}).get("description", "")

        # when
        response = call(staging, method, path, **({"data": body, "format": "json"} if method != "get" else {}))

        # then
        if listed:
            assert_envelope(response, 403, "ENVIRONMENT_FORBIDDEN", schema)
            checked += 1
        elif response.status_code == 403:
            assert response.json()["error"]["code"] != "ENVIRONMENT_FORBIDDEN", (method, path)
    assert checked >= 10


def test_openapi_errors_404_listed_operations_answer_404_for_a_missing_object(api, schema):
    # given
    checked = 0

    for path, method, operation in operations(schema):
        if "404" not in operation["responses"]:
            continue
        body = BODY_BEFORE_LOOKUP.get(path, {}) if "requestBody" in operation else None

        # when
        response = call(api, method, path, **({"data": body, "format": "json"} if body is not None else {}))

        # then
        assert_envelope(response, 404, "NOT_FOUND", schema)
        checked += 1
    assert checked >= 20  # every {id}-like path, not a handful


def test_openapi_errors_body_errors_are_answered_by_every_operation_with_a_body(api, schema, settings):
    # given: operations without a path parameter (those look their object up first)
    bodies = [(path, method) for path, method, operation in operations(schema)
              if "requestBody" in operation and "{" not in path]
    assert len(bodies) >= 8
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    for path, method in bodies:
        # when
        not_json = call(api, method, path, data="event_type=lead.created", content_type="text/plain")
        gzipped = call(api, method, path, data=b"\x1f\x8b", content_type="application/json",
                       HTTP_CONTENT_ENCODING="gzip")
        malformed = call(api, method, path, data="{", content_type="application/json")
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
        too_large = call(api, method, path, data=json.dumps({"blob": "x" * 200}), content_type="application/json")
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = limit

        # then
        assert_envelope(not_json, 415, "UNSUPPORTED_MEDIA_TYPE", schema)
        assert_envelope(gzipped, 415, "UNSUPPORTED_CONTENT_ENCODING", schema)
        assert_envelope(malformed, 400, "INVALID_REQUEST_BODY", schema)
        assert_envelope(too_large, 413, "PAYLOAD_TOO_LARGE", schema)
    assert WebhookEndpoint.objects.count() == 0


def test_openapi_errors_400_listed_for_query_parameters_is_answered(api, schema):
    # given: GET operations whose 400 comes from their documented query parameters alone (those
    # with a path parameter too answer 404 first for the missing object)
    checked = 0

    for path, method, operation in operations(schema):
        query = [p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"]
        if method != "get" or not query or "{" in path:
            continue
        assert "400" in operation["responses"], path
        bad = {"limit": "abc"} if "limit" in query else {query[0]: "\x00"}

        # when
        response = call(api, method, path, data=bad)

        # then
        assert_envelope(response, 400, "VALIDATION_ERROR", schema)
        checked += 1
    assert checked >= 10


def test_openapi_errors_delivery_retry_409_is_answered_as_listed(api, schema):
    # given
    endpoint = WebhookEndpoint.objects.create(name="crm", url="https://example.com/hook", events=["*"])
    [delivery] = due_deliveries([endpoint], 1, status=Delivery.Status.SUCCEEDED)
    listed = schema["paths"]["/deliveries/retry/{id}"]["post"]["responses"]["409"]

    # when
    response = api.post(f"/deliveries/retry/{delivery.pk}")

    # then
    assert_envelope(response, 409, "DELIVERY_NOT_RETRYABLE", schema)
    assert "DELIVERY_NOT_RETRYABLE" in listed["description"]
