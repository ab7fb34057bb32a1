"""Endpoint API as a client sees it: authentication, the seed's error format, secrets shown once,
validation, filters, status changes and deletion. No worker and no outbound HTTP."""
import pytest
from rest_framework.test import APIClient

from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error
from vocelio_webhooks.models import ApiKey

# The seed's "Exponential Backoff Policy", literally.
SEED_RETRY_POLICY = {
    "enabled": True,
    "max_attempts": 5,
    "initial_delay_seconds": 1,
    "max_delay_seconds": 300,
    "backoff_multiplier": 2.0,
    "retry_on_status_codes": [408, 429, 500, 502, 503, 504],
}

# Every API route, with a method it answers to. Ids need not exist: authentication comes first.
API_ROUTES = [
    ("get", "/endpoints"),
    ("post", "/endpoints"),
    ("get", "/endpoints/1"),
    ("put", "/endpoints/1"),
    ("patch", "/endpoints/1"),
    ("delete", "/endpoints/1"),
    ("put", "/endpoints/1/status"),
    ("post", "/endpoints/1/test"),
    ("post", "/endpoints/test"),
    ("get", "/deliveries"),
    ("get", "/deliveries/1"),
    ("post", "/deliveries/retry/1"),
    ("post", "/events/publish"),
    ("get", "/events"),
    ("get", "/events/evt_1"),
    ("get", "/event-types"),
    ("get", "/event-types/lead.created"),
    ("post", "/event-types"),
]


def _create(api, **fields):
    body = {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"], **fields}
    return api.post("/endpoints", body, format="json")


# --- authentication -------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_api_without_key_answers_401_in_seed_format(method, path):
    # given
    client = APIClient()

    # when
    response = getattr(client, method)(path, {}, format="json")

    # then
    assert_seed_error(response, 401, "UNAUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_api_with_invalid_key_answers_401(method, path):
    # given
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer vwk_not-a-real-key")

    # when
    response = getattr(client, method)(path, {}, format="json")

    # then
    assert_seed_error(response, 401, "UNAUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_api_with_revoked_key_answers_401(api, api_key):
    # given a key that worked
    assert api.get("/endpoints").status_code == 200
    ApiKey.objects.update(is_active=False)

    # when
    response = api.get("/endpoints")

    # then
    assert_seed_error(response, 401, "UNAUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_api_with_other_auth_scheme_answers_401(api_key):
    # given the right key under the wrong scheme
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key}")

    # when
    response = client.get("/endpoints")

    # then
    assert_seed_error(response, 401, "UNAUTHENTICATED")


# --- create and secrets -----------------------------------------------------------------------
def test_endpoints_create_returns_201_with_full_generated_secret_once(api):
    # given / when
    created = _create(api)

    # then
    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert body["signature_method"] == "hmac_sha256"
    assert body["status"] == "active"
    assert WebhookEndpoint.objects.get(pk=body["id"]).secret == secret

    shown = api.get(f"/endpoints/{body['id']}")
    assert shown.status_code == 200
    assert shown.json()["secret"].startswith("whsec_")
    assert shown.json()["secret"] != secret
    assert secret not in shown.content.decode()
    assert secret[6:] not in api.get("/endpoints").content.decode()


def test_endpoints_create_keeps_a_given_secret(api):
    # given
    secret = "salesforce_webhook_secret"

    # when
    created = _create(api, secret=secret)

    # then
    assert created.status_code == 201, created.content
    assert created.json()["secret"] == secret
    assert WebhookEndpoint.objects.get(pk=created.json()["id"]).secret == secret
    assert secret not in api.get(f"/endpoints/{created.json()['id']}").content.decode()


def test_endpoints_put_with_masked_secret_keeps_real_secret(api):
    # given
    created = _create(api).json()
    shown = api.get(f"/endpoints/{created['id']}").json()

    # when the client sends back what it was shown, with one change
    response = api.put(f"/endpoints/{created['id']}", {**shown, "name": "CRM v2"}, format="json")

    # then
    assert response.status_code == 200, response.content
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert endpoint.name == "CRM v2"
    assert endpoint.secret == created["secret"]
    assert created["secret"] not in response.content.decode()


def test_endpoints_patch_with_masked_secret_keeps_real_secret(api):
    # given
    created = _create(api).json()
    masked = api.get(f"/endpoints/{created['id']}").json()["secret"]

    # when
    response = api.patch(f"/endpoints/{created['id']}", {"secret": masked, "description": "leads"}, format="json")

    # then
    assert response.status_code == 200, response.content
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert endpoint.secret == created["secret"]
    assert endpoint.description == "leads"


def test_endpoints_patch_with_new_secret_replaces_it(api):
    # given
    created = _create(api).json()

    # when
    response = api.patch(f"/endpoints/{created['id']}", {"secret": "a-brand-new-secret-value"}, format="json")

    # then
    assert response.status_code == 200, response.content
    assert WebhookEndpoint.objects.get(pk=created["id"]).secret == "a-brand-new-secret-value"
    assert "a-brand-new-secret-value" not in response.content.decode()


def test_endpoints_api_key_is_masked_even_in_the_create_response(api):
    # given
    key = "receiver-api-key-0123456789"

    # when
    created = _create(api, signature_method="api_key", api_key=key)

    # then
    assert created.status_code == 201, created.content
    assert created.json()["api_key"] == "***6789"
    assert key not in created.content.decode()
    shown = api.get(f"/endpoints/{created.json()['id']}")
    assert key not in shown.content.decode()
    assert WebhookEndpoint.objects.get(pk=created.json()["id"]).api_key == key


def test_endpoints_secret_is_encrypted_at_rest(api):
    # given
    from django.db import connection

    created = _create(api).json()

    # when
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM endpoints_webhookendpoint WHERE id = %s", [created["id"]])
        stored = cursor.fetchone()[0]

    # then
    assert stored and created["secret"] not in stored


# --- retry policy ---------------------------------------------------------------------------
def test_endpoints_create_defaults_retry_policy_to_seed_policy(api):
    # given / when
    created = _create(api)

    # then
    assert created.status_code == 201, created.content
    assert created.json()["retry_policy"] == SEED_RETRY_POLICY
    assert WebhookEndpoint.objects.get(pk=created.json()["id"]).retry_policy == SEED_RETRY_POLICY


def test_endpoints_create_fills_partial_retry_policy_with_seed_defaults(api):
    # given / when
    created = _create(api, retry_policy={"max_attempts": 3, "retry_on_status_codes": [503]})

    # then
    assert created.status_code == 201, created.content
    assert created.json()["retry_policy"] == {**SEED_RETRY_POLICY, "max_attempts": 3, "retry_on_status_codes": [503]}


# --- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"url": "ftp://crm.example.com/hooks"}, "url"),
        ({"url": "https://user:pw@crm.example.com/hooks"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["Lead.Created"]}, "events"),
        ({"custom_headers": {"X-Evil": "a\r\nSet-Cookie: x"}}, "custom_headers"),
        ({"custom_headers": {"Host": "evil.example"}}, "custom_headers"),
        ({"retry_policy": {"max_retries": 3}}, "retry_policy"),
        ({"retry_policy": {"max_attempts": 0}}, "retry_policy"),
        ({"http_method": "TRACE"}, "http_method"),
        ({"signature_method": "md5"}, "signature_method"),
        ({"environment": "qa"}, "environment"),
        ({"allowed_ip_ranges": ["not-a-cidr"]}, "allowed_ip_ranges"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": 3600}, "timeout_seconds"),
        ({"failover_url": "gopher://x.example.com"}, "failover_url"),
        ({"name": ""}, "name"),
    ],
)
def test_endpoints_create_invalid_input_answers_400_and_stores_nothing(api, fields, bad_field):
    # given
    before = WebhookEndpoint.objects.count()

    # when
    response = _create(api, **fields)

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert bad_field in error["details"]["fields"]
    assert WebhookEndpoint.objects.count() == before


def test_endpoints_create_without_required_fields_lists_them(api):
    # given / when
    response = api.post("/endpoints", {}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert {"name", "url"} <= set(error["details"]["fields"])
    assert WebhookEndpoint.objects.count() == 0


def test_endpoints_create_standard_webhooks_with_non_whsec_secret_answers_400(api):
    # given / when
    response = _create(api, signature_method="standard_webhooks", secret="salesforce_webhook_secret")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "secret" in error["details"]["fields"]
    assert WebhookEndpoint.objects.count() == 0


def test_endpoints_create_standard_webhooks_without_secret_generates_one(api):
    # given / when
    response = _create(api, signature_method="standard_webhooks")

    # then
    assert response.status_code == 201, response.content
    assert response.json()["secret"].startswith("whsec_")


def test_endpoints_create_jwt_with_custom_authorization_header_answers_400(api):
    # given / when
    response = _create(api, signature_method="jwt", custom_headers={"Authorization": "Bearer sf_token_123"})

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "custom_headers" in error["details"]["fields"]
    assert WebhookEndpoint.objects.count() == 0


def test_endpoints_create_api_key_method_without_api_key_answers_400(api):
    # given / when
    response = _create(api, signature_method="api_key")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "api_key" in error["details"]["fields"]
    assert WebhookEndpoint.objects.count() == 0


def test_endpoints_update_invalid_input_answers_400_and_changes_nothing(api):
    # given
    created = _create(api).json()

    # when
    response = api.patch(f"/endpoints/{created['id']}", {"url": "ftp://x.example.com", "name": "renamed"},
                         format="json")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert (endpoint.url, endpoint.name) == ("https://crm.example.com/hooks", "CRM")


def test_endpoints_create_private_address_answers_400_when_private_networks_disallowed(api, settings):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    # when
    response = _create(api, url="http://169.254.169.254/latest/meta-data/")

    # then
    error = assert_seed_error(response, 400, "URL_NOT_ALLOWED")
    assert "url" in error["details"]["fields"]
    assert "169.254" not in error["message"]
    assert WebhookEndpoint.objects.count() == 0


# --- custom headers -------------------------------------------------------------------------
def test_endpoints_custom_authorization_header_is_masked_in_responses(api):
    # given the seed's CRM example headers
    headers = {"Authorization": "Bearer sf_token_123", "X-Source": "Vocelio"}

    # when
    created = _create(api, custom_headers=headers)

    # then
    assert created.status_code == 201, created.content
    shown = api.get(f"/endpoints/{created.json()['id']}")
    listed = api.get("/endpoints")
    for response in (created, shown, listed):
        assert "sf_token_123" not in response.content.decode()
    assert shown.json()["custom_headers"]["X-Source"] == "Vocelio"
    assert shown.json()["custom_headers"]["Authorization"] != headers["Authorization"]
    assert WebhookEndpoint.objects.get(pk=created.json()["id"]).custom_headers == headers


@pytest.mark.parametrize("name", ["X-Credential", "X-Private-Key", "X-Passwd", "X-Api_Key"])
def test_endpoints_custom_headers_masked_as_the_logs_mask_them(api, name):
    # given: header names the log filter has always masked (vocelio_webhooks.logs.SECRET_KEY_RE)
    headers = {name: "cred-value-0123456789", "X-Source": "Vocelio"}

    # when
    created = _create(api, custom_headers=headers)

    # then
    assert created.status_code == 201, created.content
    shown = api.get(f"/endpoints/{created.json()['id']}")
    assert "cred-value-0123456789" not in shown.content.decode()
    assert shown.json()["custom_headers"][name] == "***6789"
    assert shown.json()["custom_headers"]["X-Source"] == "Vocelio"


def test_endpoints_masked_custom_header_sent_back_keeps_real_value(api):
    # given
    created = _create(api, custom_headers={"Authorization": "Bearer sf_token_123"}).json()
    shown = api.get(f"/endpoints/{created['id']}").json()

    # when
    response = api.put(f"/endpoints/{created['id']}", {**shown, "custom_headers": {**shown["custom_headers"],
                                                                                    "X-Source": "Vocelio"}},
                       format="json")

    # then
    assert response.status_code == 200, response.content
    assert WebhookEndpoint.objects.get(pk=created["id"]).custom_headers == {
        "Authorization": "Bearer sf_token_123", "X-Source": "Vocelio",
    }


# --- list filters ---------------------------------------------------------------------------
def _names(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {item["name"] for item in response.json()["results"]}


def test_endpoints_list_filters_by_status_environment_and_event_type(api):
    # given
    _create(api, name="leads-prod", events=["lead.*"])
    _create(api, name="calls-staging", events=["call.ended"], environment="staging")
    _create(api, name="all-dev", events=["*"], environment="development")
    paused = _create(api, name="leads-paused", events=["lead.created"]).json()
    api.put(f"/endpoints/{paused['id']}/status", {"status": "paused"}, format="json")

    # when / then
    assert _names(api.get("/endpoints")) == {"leads-prod", "calls-staging", "all-dev", "leads-paused"}
    assert _names(api.get("/endpoints", {"status": "paused"})) == {"leads-paused"}
    assert _names(api.get("/endpoints", {"status": "active", "environment": "production"})) == {"leads-prod"}
    assert _names(api.get("/endpoints", {"environment": "staging"})) == {"calls-staging"}
    assert _names(api.get("/endpoints", {"event_type": "lead.created"})) == {"leads-prod", "all-dev", "leads-paused"}
    assert _names(api.get("/endpoints", {"event_type": "call.ended"})) == {"calls-staging", "all-dev"}
    assert _names(api.get("/endpoints", {"event_type": "agent.online"})) == {"all-dev"}


def test_endpoints_list_with_bad_filter_value_answers_400(api):
    # given
    _create(api)

    # when
    response = api.get("/endpoints", {"status": "sleeping"})

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")


# --- status ---------------------------------------------------------------------------------
@pytest.mark.parametrize("new_status", ["paused", "disabled", "active"])
def test_endpoints_status_put_sets_status(api, new_status):
    # given
    created = _create(api).json()
    api.put(f"/endpoints/{created['id']}/status", {"status": "disabled"}, format="json")

    # when
    response = api.put(f"/endpoints/{created['id']}/status", {"status": new_status, "reason": "maintenance"},
                       format="json")

    # then
    assert response.status_code == 200, response.content
    assert response.json()["status"] == new_status
    assert response.json()["status_reason"] == "maintenance"
    assert WebhookEndpoint.objects.get(pk=created["id"]).status == new_status
    assert created["secret"] not in response.content.decode()


@pytest.mark.parametrize("body", [{"status": "sleeping"}, {}, {"status": ""}])
def test_endpoints_status_put_with_bad_status_answers_400(api, body):
    # given
    created = _create(api).json()

    # when
    response = api.put(f"/endpoints/{created['id']}/status", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "status" in error["details"]["fields"]
    assert WebhookEndpoint.objects.get(pk=created["id"]).status == "active"


# --- delete and 404 ---------------------------------------------------------------------------
def test_endpoints_delete_answers_204_and_removes_the_endpoint(api):
    # given
    created = _create(api).json()

    # when
    response = api.delete(f"/endpoints/{created['id']}")

    # then
    assert response.status_code == 204
    assert not WebhookEndpoint.objects.filter(pk=created["id"]).exists()
    assert_seed_error(api.get(f"/endpoints/{created['id']}"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/endpoints/999999"), ("put", "/endpoints/999999"), ("patch", "/endpoints/999999"),
     ("delete", "/endpoints/999999"), ("put", "/endpoints/999999/status")],
)
def test_endpoints_unknown_id_answers_404_in_seed_format(api, method, path):
    # given
    body = {"status": "paused"} if path.endswith("/status") else {}

    # when
    response = getattr(api, method)(path, body, format="json")

    # then
    assert_seed_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize("secret", ["Zq", "k3y", "0123456789abcde", "whsec_***a5g=", "***", "has spaces in it ok",
                                    "ünïcödé-secret-value"])
def test_endpoints_short_masked_or_odd_secret_is_refused(api, secret):
    # given / when
    response = _create(api, secret=secret)

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "secret" in response.json()["error"]["details"]["fields"]
    assert WebhookEndpoint.objects.count() == 0


def test_endpoints_mask_shows_only_prefix_and_last_four(api):
    # given
    secret = "salesforce_webhook_secret"
    created = _create(api, secret=secret).json()

    # when
    shown = api.get(f"/endpoints/{created['id']}").json()

    # then
    assert shown["secret"] == "***cret"
    assert WebhookEndpoint.objects.get(pk=created["id"]).secret == secret


def test_endpoints_list_reads_health_without_a_query_per_endpoint(api):
    # given
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _create(api, name="first")
    with CaptureQueriesContext(connection) as one:
        api.get("/endpoints")
    for n in range(5):
        _create(api, name=f"e{n}")

    # when
    with CaptureQueriesContext(connection) as six:
        response = api.get("/endpoints")

    # then: the same number of queries for six endpoints as for one
    assert response.status_code == 200
    assert len(response.json()["results"]) == 6
    assert all(item["health"]["circuit_state"] == "closed" for item in response.json()["results"])
    assert len(six.captured_queries) == len(one.captured_queries)
