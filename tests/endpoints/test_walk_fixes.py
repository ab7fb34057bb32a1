"""A NUL character in an endpoint's JSON fields (found by walking the README on PostgreSQL, whose
jsonb cannot store it): refused with a 400, nothing written, on every database."""
import pytest

from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error
from vocelio_webhooks.models import AuditLogEntry

FILTERS = {"all": [{"field_path": "data.lead.source", "operator": "equals", "value": "web"}]}


def _endpoint(api) -> dict:
    created = api.post("/endpoints", {"name": "crm", "url": "https://crm.example.com/hook", "events": ["lead.*"],
                                      "filters": FILTERS}, format="json")
    assert created.status_code == 201, created.content
    return created.json()


def test_update_endpoint_with_nul_in_filters_is_refused_and_changes_nothing(api):
    # given
    endpoint = _endpoint(api)
    audit_before = AuditLogEntry.objects.count()
    bad = {"all": [{"field_path": "data.lead.source", "operator": "equals", "value": "a\u0000b"}]}

    # when
    response = api.patch(f"/endpoints/{endpoint['id']}", {"filters": bad}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert error["details"]["fields"]["filters"] == [
        "Contains a NUL character (\\u0000) at all[0].value; it cannot be stored."]
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).filters == FILTERS
    assert AuditLogEntry.objects.count() == audit_before


@pytest.mark.parametrize("field, value", [
    ("transformation", {"template": {"lead": "{{ data.lead.id }}\u0000"}}),
    ("filters", {"any": [{"field_path": "data.x\u0000", "operator": "exists"}]}),
    ("custom_headers", {"X-Team": "a\u0000b"}),
])
def test_create_endpoint_with_nul_in_a_json_field_is_refused_and_writes_nothing(api, field, value):
    # given
    body = {"name": "crm", "url": "https://crm.example.com/hook", "events": ["lead.*"], field: value}

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert not WebhookEndpoint.objects.exists()
    assert not AuditLogEntry.objects.filter(object_type="endpoints.webhookendpoint").exists()


def test_endpoint_model_validation_refuses_a_nul_in_filters_as_the_admin_form_does(db):
    # given: what the admin's change form validates (the model's full_clean)
    from django.core.exceptions import ValidationError

    endpoint = WebhookEndpoint(name="crm", url="https://crm.example.com/hook", events=["lead.*"],
                               filters={"all": [{"field": "data.x", "operator": "equals", "value": "a\u0000b"}]})

    # when
    with pytest.raises(ValidationError) as refused:
        endpoint.full_clean()

    # then
    assert "filters" in refused.value.message_dict
    assert "NUL" in refused.value.message_dict["filters"][0]
