"""API key scopes, environment limits, revocation and expiry, as a client of the API sees them."""
from datetime import timedelta

import pytest
from django.urls import get_resolver
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from deliveries.models import Delivery
from endpoints import services as endpoint_services
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from vocelio_webhooks import services as key_services
from vocelio_webhooks.models import ApiKey, Scope
from vocelio_webhooks.permissions import HasScope, declared_scopes


def _client(*, scopes: list[str], environments: list[str] | None = None, **fields) -> APIClient:
    created = key_services.create_api_key(name="scoped", scopes=scopes, environments=environments)
    if fields:
        ApiKey.objects.filter(pk=created.api_key.pk).update(**fields)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.raw_key}")
    return client


def _endpoint(environment: str = "production", **fields) -> WebhookEndpoint:
    data = {"name": f"CRM {environment}", "url": "https://crm.example.com/hooks", "events": ["lead.*"],
            "environment": environment, **fields}
    return endpoint_services.create_endpoint(data=data)


def _delivery(endpoint: WebhookEndpoint, status: str = Delivery.Status.DEAD_LETTERED) -> Delivery:
    event = Event.objects.create(
        event_id=f"evt_{endpoint.environment}_{endpoint.pk}", event_type=EventType.objects.get(name="lead.created"),
        timestamp=timezone.now(), data={}, environment=endpoint.environment,
    )
    return Delivery.objects.create(event=event, endpoint=endpoint, status=status, attempt_count=5)


def _error_code(response) -> str:
    return response.json()["error"]["code"]


# --- scopes ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_has_scope_read_key_can_list_but_not_create_endpoints(event_types):
    # given
    client = _client(scopes=["read"])

    # when
    listed = client.get("/endpoints")
    created = client.post("/endpoints", {"name": "x", "url": "https://crm.example.com/h", "events": ["*"]},
                          format="json")

    # then
    assert listed.status_code == 200
    assert created.status_code == 403
    assert _error_code(created) == "INSUFFICIENT_SCOPE"
    assert created.json()["error"]["details"] == {"required_scopes": ["endpoints:manage"], "key_scopes": ["read"]}
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.django_db
def test_has_scope_publish_only_key_cannot_read(event_types):
    # given
    client = _client(scopes=["events:publish"])

    # when
    published = client.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")
    listed = client.get("/events")

    # then
    assert published.status_code == 202, published.content
    assert listed.status_code == 403
    assert _error_code(listed) == "INSUFFICIENT_SCOPE"


@pytest.mark.django_db
def test_has_scope_manage_key_writes_endpoints_and_templates(event_types):
    # given
    client = _client(scopes=["endpoints:manage"])

    # when
    endpoint = client.post("/endpoints", {"name": "x", "url": "https://crm.example.com/h", "events": ["*"]},
                           format="json")
    template = client.post("/templates", {"name": "lead_min", "form": "json", "body": {"id": "{{ event_id }}"}},
                           format="json")
    status = client.put(f"/endpoints/{endpoint.json()['id']}/status", {"status": "paused"}, format="json")
    published = client.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")

    # then
    assert endpoint.status_code == 201, endpoint.content
    assert template.status_code == 201, template.content
    assert status.status_code == 200, status.content
    assert published.status_code == 403
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_has_scope_retry_needs_deliveries_retry_scope(event_types):
    # given
    delivery = _delivery(_endpoint())
    manager = _client(scopes=["endpoints:manage", "read"])
    retrier = _client(scopes=["deliveries:retry"])

    # when
    refused = manager.post(f"/deliveries/retry/{delivery.pk}")
    accepted = retrier.post(f"/deliveries/retry/{delivery.pk}")

    # then
    assert refused.status_code == 403
    assert accepted.status_code == 202, accepted.content
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING


@pytest.mark.django_db
@pytest.mark.parametrize("scope", ["*", "admin"])
def test_has_scope_star_and_admin_allow_everything(event_types, scope):
    # given
    client = _client(scopes=[scope])

    # when
    created = client.post("/endpoints", {"name": "x", "url": "https://crm.example.com/h", "events": ["*"]},
                          format="json")
    published = client.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")
    audit = client.get("/audit-log")

    # then
    assert (created.status_code, published.status_code, audit.status_code) == (201, 202, 200)


@pytest.mark.django_db
def test_has_scope_key_without_scopes_may_do_nothing(event_types):
    # given
    client = _client(scopes=[])

    # when
    response = client.get("/event-types")

    # then
    assert response.status_code == 403


def test_has_scope_every_route_declares_only_known_scopes():
    # given every DRF view behind the root URLconf
    views = []

    def walk(patterns):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns)
            else:
                view_class = getattr(pattern.callback, "cls", None)
                if view_class is not None and hasattr(view_class, "permission_classes"):
                    views.append(view_class)

    walk(get_resolver().url_patterns)

    # when
    declared = {view_class.__name__: set(declared_scopes(view_class)) for view_class in views}

    # then a typo would make a route unreachable for every key but "*"
    assert declared["EndpointViewSet"] == {"endpoints:manage"}
    for name, scopes in declared.items():
        assert scopes <= set(Scope.values), (name, scopes)


@pytest.mark.django_db
def test_has_scope_refuses_writes_to_undeclared_views_except_for_star_keys():
    # given a view that declares no required_scopes
    class Undeclared(APIView):
        permission_classes = [HasScope]

        def post(self, request):
            return Response({"ok": True})

    factory = APIRequestFactory()
    limited = key_services.create_api_key(name="limited", scopes=[s for s in Scope.values if s != "*"]).raw_key
    full = key_services.create_api_key(name="full", scopes=["*"]).raw_key

    # when
    refused = Undeclared.as_view()(factory.post("/x", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {limited}"))
    allowed = Undeclared.as_view()(factory.post("/x", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {full}"))

    # then
    assert refused.status_code == 403
    assert refused.data["error"]["details"]["required_scopes"] == ["*"]
    assert allowed.status_code == 200


# --- revocation and expiry --------------------------------------------------------------------
@pytest.mark.django_db
def test_api_key_authentication_refuses_revoked_key(event_types):
    # given
    client = _client(scopes=["*"], is_active=False, revoked_at=timezone.now())

    # when
    response = client.get("/endpoints")

    # then
    assert response.status_code == 401
    assert _error_code(response) == "UNAUTHENTICATED"
    assert "revoked" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_api_key_authentication_refuses_expired_key(event_types):
    # given
    client = _client(scopes=["*"], expires_at=timezone.now() - timedelta(seconds=1))

    # when
    response = client.get("/endpoints")

    # then
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_api_key_authentication_accepts_key_before_expiry(event_types):
    # given
    client = _client(scopes=["read"], expires_at=timezone.now() + timedelta(days=1))

    # when
    response = client.get("/endpoints")

    # then
    assert response.status_code == 200


# --- environments -----------------------------------------------------------------------------
@pytest.mark.django_db
def test_publish_environment_allowed_refuses_other_environment(event_types):
    # given
    client = _client(scopes=["events:publish"], environments=["staging"])

    # when
    other = client.post("/events/publish", {"event_type": "lead.created", "data": {}, "environment": "production"},
                        format="json")
    implied = client.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")
    own = client.post("/events/publish", {"event_type": "lead.created", "data": {}, "environment": "staging"},
                      format="json")

    # then
    assert other.status_code == 403
    assert _error_code(other) == "ENVIRONMENT_FORBIDDEN"
    assert implied.status_code == 403  # the default environment is production
    assert own.status_code == 202, own.content
    assert list(Event.objects.values_list("environment", flat=True)) == ["staging"]


@pytest.mark.django_db
def test_key_environment_filter_lists_only_key_environments(event_types):
    # given
    staging, production = _endpoint("staging"), _endpoint("production")
    _delivery(staging), _delivery(production)
    client = _client(scopes=["read"], environments=["staging"])

    # when
    endpoints = client.get("/endpoints").json()["results"]
    events = client.get("/events").json()["results"]
    deliveries = client.get("/deliveries").json()["results"]

    # then
    assert [e["id"] for e in endpoints] == [staging.pk]
    assert [e["environment"] for e in events] == ["staging"]
    assert [d["endpoint"] for d in deliveries] == [staging.pk]


@pytest.mark.django_db
def test_key_environment_filter_hides_other_environment_objects_as_404(event_types):
    # given
    production = _endpoint("production")
    delivery = _delivery(production)
    client = _client(scopes=["read", "endpoints:manage", "deliveries:retry"], environments=["staging"])

    # when
    responses = [
        client.get(f"/endpoints/{production.pk}"),
        client.patch(f"/endpoints/{production.pk}", {"name": "taken over"}, format="json"),
        client.delete(f"/endpoints/{production.pk}"),
        client.put(f"/endpoints/{production.pk}/status", {"status": "paused"}, format="json"),
        client.post(f"/endpoints/{production.pk}/test", {}, format="json"),
        client.get(f"/deliveries/{delivery.pk}"),
        client.post(f"/deliveries/retry/{delivery.pk}"),
        client.get(f"/events/{delivery.event.event_id}"),
    ]

    # then
    assert [r.status_code for r in responses] == [404] * len(responses)
    production.refresh_from_db()
    assert (production.name, production.status) == ("CRM production", "active")
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DEAD_LETTERED


@pytest.mark.django_db
def test_endpoint_environment_allowed_refuses_creating_or_moving_into_other_environment(event_types):
    # given
    staging = _endpoint("staging")
    client = _client(scopes=["endpoints:manage"], environments=["staging"])
    body = {"name": "x", "url": "https://crm.example.com/h", "events": ["*"]}

    # when
    implied = client.post("/endpoints", body, format="json")
    other = client.post("/endpoints", {**body, "environment": "production"}, format="json")
    own = client.post("/endpoints", {**body, "environment": "staging"}, format="json")
    moved = client.patch(f"/endpoints/{staging.pk}", {"environment": "production"}, format="json")

    # then
    assert implied.status_code == 403  # the model's default environment is production
    assert other.status_code == 403
    assert own.status_code == 201, own.content
    assert moved.status_code == 403
    assert _error_code(moved) == "ENVIRONMENT_FORBIDDEN"
    assert set(WebhookEndpoint.objects.values_list("environment", flat=True)) == {"staging"}


@pytest.mark.django_db
def test_all_environments_for_writes_refuses_template_changes_to_limited_keys(event_types):
    # given
    client = _client(scopes=["endpoints:manage", "read"], environments=["staging"])

    # when
    created = client.post("/templates", {"name": "lead_min", "form": "json", "body": {"id": "{{ event_id }}"}},
                          format="json")
    listed = client.get("/templates")

    # then
    assert created.status_code == 403
    assert _error_code(created) == "ENVIRONMENT_FORBIDDEN"
    assert listed.status_code == 200
