"""``GET /analytics/overview`` and ``GET /analytics/trends`` over HTTP: authentication, query
parameters, the seed's error format and API keys limited to environments."""
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from tests.analytics.analytics_data import T0, known_dataset
from tests.conftest import assert_seed_error
from vocelio_webhooks import services as key_services

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)
RANGE = {"start": T0.isoformat(), "end": (T0 + HOUR).isoformat()}


def _client(**key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_services.create_api_key(name='k', **key).raw_key}")
    return client


def test_overview_answers_the_numbers_of_the_range(api):
    # given
    data = known_dataset()

    # when
    response = api.get("/analytics/overview", RANGE)

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["attempts"]["total"] == 7
    assert body["success_rate"] == 42.86
    assert body["response_time_ms"] == {"avg": 901.43, "p50": 260, "p95": 5000, "p99": 5000}
    assert body["endpoints"][0]["endpoint_id"] == data["crm"].pk
    assert body["errors"]["by_status_code"][0]["status_code"] == 500
    assert body["queue"]["pending"] == 1 and body["dead_letters"] == 1 and body["open_circuits"] == 1


def test_overview_filters_by_query_parameters(api):
    # given
    data = known_dataset()

    # when
    by_endpoint = api.get("/analytics/overview", {**RANGE, "endpoint_id": data["erp"].pk}).json()
    by_type = api.get("/analytics/overview", {**RANGE, "event_type": "lead.created"}).json()
    by_environment = api.get("/analytics/overview", {**RANGE, "environment": "staging"}).json()

    # then
    assert by_endpoint["attempts"]["total"] == 2
    assert by_type["attempts"]["total"] == 5
    assert by_environment["attempts"]["total"] == 2
    assert by_environment["open_circuits"] == 1


def test_overview_defaults_to_the_last_24_hours(api):
    # given — the dataset is long past
    known_dataset()

    # when
    body = api.get("/analytics/overview").json()

    # then
    assert body["attempts"]["total"] == 0
    assert body["queue"]["pending"] == 1  # current state ignores the range


def test_trends_answers_buckets_and_a_forecast(api):
    # given
    known_dataset()

    # when
    response = api.get("/analytics/trends", {"start": (T0 - HOUR).isoformat(), "end": (T0 + 2 * HOUR).isoformat(),
                                             "bucket": "hour", "forecast": 3})

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["bucket"] == "hour"
    assert [row["attempts"] for row in body["series"]] == [1, 7, 0]
    assert len(body["forecast"]["buckets"]) == 3
    assert body["forecast"]["method"] in ("linear", "seasonal_naive", "last_value")
    assert "backtest" in body["forecast"]


def test_analytics_needs_an_api_key(db):
    # when
    response = APIClient().get("/analytics/overview")

    # then
    assert_seed_error(response, 401, "UNAUTHENTICATED")
    assert_seed_error(APIClient().get("/analytics/trends"), 401, "UNAUTHENTICATED")


def test_analytics_accepts_a_read_only_key(event_types):
    # given
    client = _client(scopes=["read"])

    # then
    assert client.get("/analytics/overview").status_code == 200
    assert client.get("/analytics/trends").status_code == 200


def test_analytics_key_without_read_scope_is_refused(event_types):
    # given
    client = _client(scopes=["events:publish"])

    # then
    assert_seed_error(client.get("/analytics/overview"), 403, "INSUFFICIENT_SCOPE")


def test_environment_limited_key_sees_only_its_environment(event_types):
    # given — erp is staging, crm production
    known_dataset()
    client = _client(scopes=["read"], environments=["staging"])

    # when
    own = client.get("/analytics/overview", RANGE).json()
    other = client.get("/analytics/overview", {**RANGE, "environment": "production"}).json()
    trend = client.get("/analytics/trends", {**RANGE, "bucket": "hour"}).json()

    # then
    assert own["attempts"]["total"] == 2
    assert [row["name"] for row in own["endpoints"]] == ["erp"]
    assert own["queue"]["pending"] == 1 and own["dead_letters"] == 0
    assert other["attempts"]["total"] == 0
    assert trend["series"][0]["attempts"] == 2


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/analytics/overview", {"start": "yesterday"}, "start"),
    ("/analytics/overview", {"end": "2026-13-01T00:00:00Z"}, "end"),
    ("/analytics/overview", {"start": "2026-03-02T10:00:00Z", "end": "2026-03-02T10:00:00Z"}, "start"),
    ("/analytics/overview", {"start": "2026-03-03T00:00:00Z", "end": "2026-03-02T00:00:00Z"}, "start"),
    ("/analytics/overview", {"endpoint_id": "abc"}, "endpoint_id"),
    ("/analytics/overview", {"environment": "moon"}, "environment"),
    ("/analytics/trends", {"bucket": "week"}, "bucket"),
    ("/analytics/trends", {"forecast": "-1"}, "forecast"),
    ("/analytics/trends", {"forecast": "100000"}, "forecast"),
])
def test_invalid_parameters_answer_400_in_the_seed_format(api, path, params, field):
    # when
    response = api.get(path, params)

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert field in error["details"]["fields"]


def test_trends_refuse_too_many_buckets(api):
    # when — 8 days of minutes is 11,520 buckets (limit 10,000)
    response = api.get("/analytics/trends", {"start": "2026-03-01T00:00:00Z", "end": "2026-03-09T00:00:00Z",
                                             "bucket": "minute"})

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"buckets": 11520, "max_buckets": 10000, "bucket": "minute"}


def test_analytics_routes_are_in_the_openapi_schema(api):
    # when
    schema = api.get("/schema", HTTP_ACCEPT="application/json").json()

    # then
    parameters = {p["name"] for p in schema["paths"]["/analytics/trends"]["get"]["parameters"]}
    assert {"start", "end", "endpoint_id", "event_type", "environment", "bucket", "forecast"} <= parameters
    assert "/analytics/overview" in schema["paths"]
