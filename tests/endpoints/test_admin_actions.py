"""Endpoint admin actions call the same services as the API: rotate secret, pause, resume."""
import pytest
from django.contrib.messages import get_messages

from endpoints.models import WebhookEndpoint
from vocelio_webhooks.models import AuditLogEntry


def _endpoint(api) -> WebhookEndpoint:
    created = api.post("/endpoints", {"name": "e", "url": "https://example.com/h", "events": ["*"]}, format="json")
    return WebhookEndpoint.objects.get(pk=created.json()["id"])


def test_admin_rotate_secret_action_shows_new_secret_once_and_keeps_old_signing(api, admin_client):
    # given
    endpoint = _endpoint(api)
    old = endpoint.secret

    # when
    response = admin_client.post("/admin/endpoints/webhookendpoint/",
                                 {"action": "rotate_secret", "_selected_action": [endpoint.pk]}, follow=True)

    # then
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.previous_secret == old
    assert endpoint.secret in response.content.decode()
    assert endpoint.signing_secrets() == [endpoint.secret, old]
    assert AuditLogEntry.objects.filter(action="rotate_secret", object_id=str(endpoint.pk)).exists()
    assert old not in admin_client.get(f"/admin/endpoints/webhookendpoint/{endpoint.pk}/change/").content.decode()


def test_admin_rotate_secret_message_never_travels_in_a_cookie(api, admin_client):
    # given
    endpoint = _endpoint(api)

    # when: the action, without following the redirect (the message waits for the next page)
    response = admin_client.post("/admin/endpoints/webhookendpoint/",
                                 {"action": "rotate_secret", "_selected_action": [endpoint.pk]})

    # then: no cookie holds the message (nor the secret); the next page shows it once
    endpoint.refresh_from_db()
    assert response.status_code == 302
    assert "messages" not in response.cookies
    assert all(endpoint.secret not in morsel.value for morsel in response.cookies.values())
    shown = admin_client.get("/admin/endpoints/webhookendpoint/").content.decode()
    assert endpoint.secret in shown
    assert endpoint.secret not in admin_client.get("/admin/endpoints/webhookendpoint/").content.decode()


def test_admin_pause_and_resume_actions(api, admin_client):
    # given
    endpoint = _endpoint(api)

    # when
    admin_client.post("/admin/endpoints/webhookendpoint/", {"action": "pause", "_selected_action": [endpoint.pk]})
    paused = WebhookEndpoint.objects.get(pk=endpoint.pk).status
    admin_client.post("/admin/endpoints/webhookendpoint/", {"action": "resume", "_selected_action": [endpoint.pk]})

    # then
    assert paused == "paused"
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "active"


@pytest.mark.parametrize("selected", [["abc"], ["1", "abc"], ["1.5"], ["99999999999999999999"]])
def test_admin_action_with_an_id_that_is_not_a_number_changes_nothing(api, admin_client, selected):
    # given
    endpoint = _endpoint(api)

    # when
    response = admin_client.post("/admin/endpoints/webhookendpoint/",
                                 {"action": "pause", "_selected_action": [str(endpoint.pk) if s == "1" else s
                                                                          for s in selected]})

    # then
    assert response.status_code == 302
    messages = [m.message for m in get_messages(response.wsgi_request)]
    assert any(m.startswith("Not a valid id:") and "No items have been changed." in m for m in messages), messages
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == "active"


def test_admin_endpoint_changelist_out_of_range_year_shows_the_unfiltered_list(api, admin_client):
    # given
    _endpoint(api)

    # when
    response = admin_client.get("/admin/endpoints/webhookendpoint/?created_at__year=99999999999")

    # then
    assert (response.status_code, response["Location"]) == (302, "/admin/endpoints/webhookendpoint/?e=1")
    assert len(admin_client.get(response["Location"]).context["cl"].result_list) == 1
