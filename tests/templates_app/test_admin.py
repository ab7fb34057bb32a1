"""Template editing in the admin: saves are new versions through the services, rollback adds a
version copying an old one, and the live preview renders unsaved text in the sandbox."""
import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from templates_app import services as template_services
from templates_app.models import PayloadTemplate
from vocelio_webhooks.models import AuditLogEntry

BASE = "/admin/templates_app/payloadtemplate/"
PREVIEW = f"{BASE}preview/"


@pytest.fixture
def template(event_types) -> PayloadTemplate:
    created = template_services.create_template(name="crm_lead", form="json", body={"name": "{{ data.name }}"},
                                                author="tests")
    return template_services.update_template(template=created, body={"full_name": "{{ data.name }}"}, author="tests")


def _form(**fields) -> dict:
    return {"description": "", "form": "json", "body": "{}", "content_type": "", "header_templates": "{}", "note": "",
            "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0", "_save": "Save", **fields}


def test_template_admin_save_creates_a_new_version_through_the_service(admin_client, template):
    # given
    body = json.dumps({"lead": "{{ data.name | upper }}"})

    # when
    response = admin_client.post(f"{BASE}{template.pk}/change/", _form(body=body, note="upper-case names"))

    # then
    assert response.status_code == 302, response.content.decode()[:2000]
    template.refresh_from_db()
    assert template.current_version.number == 3
    assert template.current_version.body == {"lead": "{{ data.name | upper }}"}
    assert template.current_version.author == "user:admin"
    assert AuditLogEntry.objects.filter(object_type="templates_app.payloadtemplate", action="update").exists()


def test_template_admin_refuses_a_syntax_error_and_keeps_the_version(admin_client, template):
    # when
    response = admin_client.post(f"{BASE}{template.pk}/change/", _form(body='{"lead": "{{ data.name "}'))

    # then
    assert response.status_code == 200
    assert "Template syntax error in body" in response.content.decode()
    template.refresh_from_db()
    assert template.current_version.number == 2


def test_template_admin_add_creates_version_one(admin_client, event_types):
    # when
    response = admin_client.post(f"{BASE}add/", _form(name="slack_text", form="text", body="Call {{ data.call_id }}",
                                                      content_type="text/plain"))

    # then
    assert response.status_code == 302, response.content.decode()[:2000]
    created = PayloadTemplate.objects.get(name="slack_text")
    assert (created.current_version.number, created.current_version.body) == (1, "Call {{ data.call_id }}")


def test_template_admin_rollback_button_makes_an_old_version_current(admin_client, template):
    # given
    page = admin_client.get(f"{BASE}{template.pk}/change/").content.decode()
    assert f"{BASE}{template.pk}/rollback/1/" in page

    # when
    response = admin_client.post(f"{BASE}{template.pk}/rollback/1/", follow=True)

    # then
    template.refresh_from_db()
    assert template.current_version.number == 3
    assert template.current_version.restored_from == 1
    assert template.current_version.body == {"name": "{{ data.name }}"}
    assert "version 1 is current again as version 3" in response.content.decode()
    assert admin_client.get(f"{BASE}{template.pk}/rollback/1/").status_code == 405


def test_template_admin_rollback_action_goes_back_one_version(admin_client, template):
    # when
    admin_client.post(BASE, {"action": "rollback_to_previous", "_selected_action": [template.pk]})

    # then
    template.refresh_from_db()
    assert (template.current_version.number, template.current_version.restored_from) == (3, 1)
    assert AuditLogEntry.objects.filter(action="update", object_id=str(template.pk)).exists()


def test_template_admin_preview_renders_unsaved_text_with_sample_data(admin_client, template):
    # when
    response = admin_client.post(PREVIEW, {
        "form": "json", "body": json.dumps({"who": "{{ data.name }}", "type": "{{ event_type }}"}),
        "header_templates": json.dumps({"X-Lead": "{{ data.name }}"}), "event_type": "lead.created",
        "data": json.dumps({"name": "Ann"}),
    })

    # then
    assert response.status_code == 200
    result = response.json()
    assert result["ok"] is True
    assert result["output"] == {"who": "Ann", "type": "lead.created"}
    assert result["headers"] == {"X-Lead": "Ann"}
    template.refresh_from_db()
    assert template.current_version.number == 2  # nothing saved
    assert PayloadTemplate.objects.count() == 1


def test_template_admin_preview_uses_the_event_types_sample_data_by_default(admin_client, event_types):
    # when
    response = admin_client.post(PREVIEW, {"form": "text", "body": "type={{ event_type }}", "content_type": "text/plain",
                                           "event_type": "call.ended"})

    # then
    assert response.json() == {"ok": True, "output": "type=call.ended", "body": "type=call.ended",
                               "content_type": "text/plain", "headers": {}}


@pytest.mark.parametrize(("body", "code", "detail"), [
    ('{"x": "{{ data.name "}', "TEMPLATE_SYNTAX_ERROR", "line"),
    ('{"x": "{{ data.__class__ }}"}', "TEMPLATE_RENDER_ERROR", "field"),
    ('{"x": ', "VALIDATION_ERROR", "fields"),
])
def test_template_admin_preview_reports_sandbox_and_syntax_errors(admin_client, event_types, body, code, detail):
    # when
    response = admin_client.post(PREVIEW, {"form": "json", "body": body, "data": "{}"})

    # then
    result = response.json()
    assert result["ok"] is False
    assert result["error"]["code"] == code
    assert detail in result["error"]["details"]


def test_template_admin_preview_requires_staff_and_csrf(admin_user, event_types):
    # given
    anonymous = Client()
    csrf_checked = Client(enforce_csrf_checks=True)
    csrf_checked.force_login(admin_user)
    viewer = User.objects.create_user("v", "v@example.com", "pw-v-123", is_staff=True)
    viewer_client = Client()
    viewer_client.force_login(viewer)
    form = {"form": "text", "body": "x", "content_type": "text/plain"}

    # when
    anonymous_answer = anonymous.post(PREVIEW, form)
    no_token = csrf_checked.post(PREVIEW, form)
    no_permission = viewer_client.post(PREVIEW, form)

    # then
    assert anonymous_answer.status_code == 302 and "/admin/login/" in anonymous_answer["Location"]
    assert no_token.status_code == 403
    assert no_permission.status_code == 403
