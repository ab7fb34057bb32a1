"""A change made through the API and its audit entry are written together or not at all."""
import pytest

from endpoints.models import WebhookEndpoint
from templates_app.models import PayloadTemplate

pytestmark = pytest.mark.usefixtures("audit_entries_refused")


@pytest.fixture
def api_500s(api):
    api.raise_request_exception = False  # see the 500 the client would get
    return api


def test_create_endpoint_writes_nothing_when_its_audit_entry_fails(api_500s):
    # when
    response = api_500s.post("/endpoints", {"name": "crm", "url": "https://crm.example.com/hook",
                                            "events": ["lead.*"]}, format="json")

    # then
    assert response.status_code == 500
    assert not WebhookEndpoint.objects.exists()


def test_update_and_status_change_of_an_endpoint_roll_back_when_the_audit_entry_fails(api_500s):
    # given
    endpoint = WebhookEndpoint.objects.create(name="crm", url="https://crm.example.com/hook", events=["lead.*"])

    # when
    patched = api_500s.patch(f"/endpoints/{endpoint.pk}", {"events": ["call.*"]}, format="json")
    paused = api_500s.put(f"/endpoints/{endpoint.pk}/status", {"status": "paused"}, format="json")

    # then
    assert (patched.status_code, paused.status_code) == (500, 500)
    endpoint.refresh_from_db()
    assert (endpoint.events, endpoint.status) == (["lead.*"], "active")


def test_create_template_writes_nothing_when_its_audit_entry_fails(api_500s):
    # when
    response = api_500s.post("/templates", {"name": "slack", "form": "text", "content_type": "text/plain",
                                            "body": "{{ event_type }}"}, format="json")

    # then
    assert response.status_code == 500
    assert not PayloadTemplate.objects.exists()
