"""Free text that reaches terminals, logs and the admin (endpoint ``name`` and ``description``,
a status ``reason``) refuses C0/C1 control characters and the bidi override/isolate characters
(``vocelio_webhooks.validators.reject_control_characters``). Before, ``"a\\u0007\\u001bb"`` was
stored (201) and ``manage.py endpoint_health`` printed the escape sequence raw to an operator's
terminal; a right-to-left override made a name display as another one. The same holds for an
event type's ``description`` and ``category`` and an API key's ``name``."""
import pytest

from endpoints.models import WebhookEndpoint
from events.models import EventType
from tests.conftest import assert_seed_error
from vocelio_webhooks import services as key_services
from vocelio_webhooks.errors import ValidationFailed
from vocelio_webhooks.models import ApiKey

BAD_TEXT = [
    pytest.param("a\u0007\u001bb", id="bel-esc"),
    pytest.param("\u001b[2Jcleared", id="ansi-clear-screen"),
    pytest.param("🚀\u202eevil\u200b", id="rtl-override"),
    pytest.param("x\u2066y", id="lri-isolate"),
    pytest.param("x\u0085y", id="c1-nel"),
    pytest.param("x\u007fy", id="del"),
]


def _endpoint(**fields) -> dict:
    return {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"], **fields}


@pytest.mark.django_db
@pytest.mark.parametrize("name", [*BAD_TEXT, pytest.param("line\nbreak", id="newline"),
                                  pytest.param("tab\there", id="tab")])
def test_create_endpoint_refuses_control_characters_in_name(api, name):
    # given
    body = _endpoint(name=name)

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "U+" in error["details"]["fields"]["name"][0]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("description", BAD_TEXT)
def test_create_endpoint_refuses_control_characters_in_description(api, description):
    # given
    body = _endpoint(description=description)

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "description" in error["details"]["fields"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_create_endpoint_keeps_emoji_accents_and_multiline_description(api):
    # given
    body = _endpoint(name="Crème brûlée 🚀 CRM", description="First line\n\tindented\r\nlast line 🚀")

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    assert response.status_code == 201, response.content
    row = WebhookEndpoint.objects.get()
    assert (row.name, row.description) == ("Crème brûlée 🚀 CRM", "First line\n\tindented\r\nlast line 🚀")


@pytest.mark.django_db
def test_update_endpoint_refuses_control_characters_and_keeps_the_name(api):
    # given
    endpoint_id = api.post("/endpoints", _endpoint(), format="json").json()["id"]

    # when
    response = api.patch(f"/endpoints/{endpoint_id}", {"name": "a\u0007\u001bb"}, format="json")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert WebhookEndpoint.objects.get().name == "CRM"


@pytest.mark.django_db
def test_status_change_refuses_control_characters_in_reason(api):
    # given
    endpoint_id = api.post("/endpoints", _endpoint(), format="json").json()["id"]

    # when
    response = api.put(f"/endpoints/{endpoint_id}/status", {"status": "paused", "reason": "ops\u001b[31m"},
                       format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "reason" in error["details"]["fields"]
    row = WebhookEndpoint.objects.get()
    assert (row.status, row.status_reason) == ("active", "")


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["description", "category"])
@pytest.mark.parametrize("text", BAD_TEXT)
def test_create_event_type_refuses_control_characters(api, field, text):
    # given
    body = {"name": "billing.invoice_paid", "category": "billing", "description": "Paid", field: text}

    # when
    response = api.post("/event-types", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "U+" in error["details"]["fields"][field][0]
    assert not EventType.objects.filter(name="billing.invoice_paid").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", BAD_TEXT)
def test_create_api_key_refuses_control_characters_in_name(name):
    # when
    with pytest.raises(ValidationFailed) as refused:
        key_services.create_api_key(name=name)

    # then
    assert "U+" in refused.value.details["fields"]["name"][0]
    assert not ApiKey.objects.filter(name=name).exists()
