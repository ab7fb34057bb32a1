"""Template editing in the admin: saves are new versions through the services, rollback adds a
version copying an old one, and the live preview renders unsaved text in the sandbox."""
import importlib
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
    response = admin_client.post(PREVIEW, {"form": "text", "body": "type={{ event_type }}",
                                           "content_type": "text/plain", "event_type": "call.ended"})

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


# --- review fixes: view-only staff, service-side rules on the form, deep nesting, bad ids --------
@pytest.fixture
def support_client(db, event_types) -> Client:
    """A staff user of the Support group as the data migration makes it (view permissions only)."""
    from django.apps import apps as django_apps
    from django.contrib.auth.models import Group

    support_migration = importlib.import_module("vocelio_webhooks.migrations.0005_support_group")
    support_migration.create_support_group(django_apps, None)
    user = User.objects.create_user("sam", "sam@example.com", "pw-sam-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Support"))
    client = Client()
    client.force_login(user)
    return client


def test_template_admin_change_page_is_read_only_for_view_only_staff(support_client, template):
    # when
    response = support_client.get(f"{BASE}{template.pk}/change/")
    saved = support_client.post(f"{BASE}{template.pk}/change/", _form(body='{"x": "y"}'))

    # then
    assert response.status_code == 200
    page = response.content.decode()
    assert "crm_lead" in page and "full_name" in page  # the current version, read-only
    assert 'name="body"' not in page  # no editable form
    assert 'id="template-preview"' not in page and "rollback-button" not in page  # both need the change permission
    assert saved.status_code == 403
    template.refresh_from_db()
    assert template.current_version.number == 2


@pytest.mark.parametrize(("fields", "field_name", "message"), [
    ({"body": json.dumps({"x": "a" * 70_000})}, "body", "the limit is 65536"),
    ({"header_templates": json.dumps({"X-A": {"n": 1}})}, "header_templates", "must be a string"),
    ({"content_type": "not a media type"}, "content_type", "Not a media type"),
])
def test_template_admin_shows_the_services_refusal_on_the_form(admin_client, template, fields, field_name, message):
    # when
    response = admin_client.post(f"{BASE}{template.pk}/change/", _form(**fields))
    added = admin_client.post(f"{BASE}add/", _form(name="new_one", **fields))

    # then
    for answer in (response, added):
        assert answer.status_code == 200
        errors = answer.context["adminform"].form.errors
        assert field_name in errors, errors
        assert message in " ".join(errors[field_name])
    template.refresh_from_db()
    assert template.current_version.number == 2
    assert not PayloadTemplate.objects.filter(name="new_one").exists()


def test_template_admin_preview_refuses_a_template_too_large_to_save(admin_client, event_types):
    # when
    response = admin_client.post(PREVIEW, {"form": "json", "body": json.dumps({"x": "a" * 70_000}), "data": "{}"})

    # then
    result = response.json()
    assert result["ok"] is False
    assert result["error"]["code"] == "VALIDATION_ERROR"
    assert "the limit is 65536" in result["error"]["message"]


def _nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _nested_array(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("deep", [_nested_object(3_000), _nested_array(50_000), _nested_object(990)])
def test_template_admin_preview_refuses_deeply_nested_json(admin_client, event_types, deep):
    # when
    as_data = admin_client.post(PREVIEW, {"form": "json", "body": '{"x": "{{ data }}"}', "data": deep})
    as_body = admin_client.post(PREVIEW, {"form": "json", "body": deep, "data": "{}"})
    as_headers = admin_client.post(PREVIEW, {"form": "json", "body": "{}", "header_templates": deep, "data": "{}"})

    # then
    for answer, field_name in ((as_data, "data"), (as_body, "body"), (as_headers, "header_templates")):
        assert answer.status_code == 200
        result = answer.json()
        assert result["ok"] is False
        assert result["error"]["code"] == "INVALID_REQUEST_BODY"
        assert "nested too deeply" in result["error"]["message"]
        assert field_name in result["error"]["message"]


@pytest.mark.parametrize("deep", [_nested_object(3_000), _nested_array(50_000)])
def test_template_admin_form_refuses_deeply_nested_json(admin_client, template, deep):
    # when
    as_body = admin_client.post(f"{BASE}{template.pk}/change/", _form(body=deep))
    as_headers = admin_client.post(f"{BASE}add/", _form(name="deep", header_templates=deep))

    # then
    for answer, field_name in ((as_body, "body"), (as_headers, "header_templates")):
        assert answer.status_code == 200
        errors = answer.context["adminform"].form.errors
        assert "nested too deeply" in " ".join(errors[field_name])
    template.refresh_from_db()
    assert template.current_version.number == 2


def test_template_admin_rollback_of_a_bad_id_is_not_found(admin_client, template):
    # when
    not_a_number = admin_client.post(f"{BASE}abc/rollback/1/")
    unknown = admin_client.post(f"{BASE}999999/rollback/1/")

    # then
    assert (not_a_number.status_code, unknown.status_code) == (404, 404)


def test_template_admin_preview_refuses_an_unknown_form(admin_client, event_types):
    # when
    response = admin_client.post(PREVIEW, {"form": "bogusform", "body": "x", "content_type": "text/plain",
                                           "data": "{}"})

    # then
    result = response.json()
    assert result["ok"] is False
    assert result["error"]["code"] == "VALIDATION_ERROR"
    assert "form" in result["error"]["details"]["fields"]
