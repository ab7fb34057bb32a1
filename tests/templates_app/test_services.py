"""Template services: versions on every change, rollback as a new version, name resolution and
rendering a version to the bytes that are sent. No worker, no HTTP."""
import pytest

from templates_app import services as template_services
from templates_app.models import PayloadTemplate, TemplateVersion
from tests.templates_app.seed_examples import LEAD_CREATED, SALESFORCE_OUTPUT, SALESFORCE_TEMPLATE
from vocelio_webhooks.errors import Conflict, NotFound, ValidationFailed

pytestmark = pytest.mark.django_db

FORM_BODY = "lead_id={{ data.lead.id | urlencode }}&score={{ data.lead.score }}"


def _salesforce(**overrides) -> PayloadTemplate:
    fields = {"name": "salesforce_lead_template", "form": "json", "body": SALESFORCE_TEMPLATE,
              "author": "api-key:tests", "note": "first cut", **overrides}
    return template_services.create_template(**fields)


# --- create -------------------------------------------------------------------------------------
def test_create_template_stores_version_one_with_defaults():
    # given / when
    template = _salesforce(header_templates={"X-Lead-Id": "{{ data.lead.id }}"})

    # then
    version = template.current_version
    assert (version.number, version.form, version.content_type) == (1, "json", "application/json")
    assert version.body == SALESFORCE_TEMPLATE
    assert version.header_templates == {"X-Lead-Id": "{{ data.lead.id }}"}
    assert (version.author, version.note, version.restored_from) == ("api-key:tests", "first cut", None)
    assert TemplateVersion.objects.filter(template=template).count() == 1


def test_create_template_text_form_requires_a_content_type():
    # given / when
    with pytest.raises(ValidationFailed) as caught:
        template_services.create_template(name="form_lead", form="text", body=FORM_BODY, author="a")

    # then
    assert caught.value.code == "VALIDATION_ERROR"
    assert "content_type" in caught.value.details["fields"]
    assert not PayloadTemplate.objects.exists()


@pytest.mark.parametrize(("form", "body"), [("json", "{{ data }}"), ("text", {"a": "b"}), ("yaml", {})])
def test_create_template_refuses_a_body_that_does_not_fit_the_form(form, body):
    # given / when
    with pytest.raises(ValidationFailed) as caught:
        template_services.create_template(name="t", form=form, body=body, content_type="text/plain", author="a")

    # then
    assert caught.value.code == "VALIDATION_ERROR"


def test_create_template_syntax_error_gives_line_column_and_path():
    # given
    body = {"crm_lead": {"lead_score": "{{ data.lead.score + }}"}}

    # when
    with pytest.raises(ValidationFailed) as caught:
        template_services.create_template(name="broken", form="json", body=body, author="a")

    # then
    assert caught.value.code == "TEMPLATE_SYNTAX_ERROR"
    assert caught.value.details == {"field": "body", "line": 1, "column": 1, "path": "crm_lead.lead_score"}
    assert not PayloadTemplate.objects.exists()


def test_create_template_header_template_syntax_error_names_the_header():
    # given
    headers = {"X-Lead-Id": "{{ data.lead.id"}

    # when
    with pytest.raises(ValidationFailed) as caught:
        _salesforce(header_templates=headers)

    # then
    assert caught.value.code == "TEMPLATE_SYNTAX_ERROR"
    assert caught.value.details["field"] == "header_templates"
    assert caught.value.details["path"] == "X-Lead-Id"


@pytest.mark.parametrize("name", ["Has Space", "1starts_with_digit", "UPPER", ""])
def test_create_template_refuses_a_name_that_is_not_slug_like(name):
    # given / when / then
    with pytest.raises(ValidationFailed):
        _salesforce(name=name)


def test_create_template_refuses_an_invalid_header_name_and_content_type():
    # given / when / then
    with pytest.raises(ValidationFailed):
        _salesforce(header_templates={"Bad Header": "x"})
    with pytest.raises(ValidationFailed):
        _salesforce(content_type="json")


def test_create_template_refuses_a_taken_name():
    # given
    _salesforce()

    # when / then
    with pytest.raises(Conflict):
        _salesforce()


# --- update and rollback ------------------------------------------------------------------------
def test_update_template_adds_a_version_and_keeps_the_old_one():
    # given
    template = _salesforce()
    new_body = {**SALESFORCE_TEMPLATE, "source": "vocelio"}

    # when
    template = template_services.update_template(template=template, body=new_body, author="api-key:ops",
                                                 note="rename source")

    # then
    assert template.current_version.number == 2
    assert template.current_version.body == new_body
    assert (template.current_version.author, template.current_version.note) == ("api-key:ops", "rename source")
    assert template.current_version.form == "json"  # unchanged fields carried over
    assert template.versions.get(number=1).body == SALESFORCE_TEMPLATE


def test_update_template_without_a_content_change_adds_no_version():
    # given
    template = _salesforce()

    # when
    template = template_services.update_template(template=template, body=SALESFORCE_TEMPLATE,
                                                 description="Leads to Salesforce", author="a")

    # then
    template.refresh_from_db()
    assert template.current_version.number == 1
    assert template.description == "Leads to Salesforce"
    assert template.versions.count() == 1


def test_update_template_refuses_a_syntax_error_and_keeps_the_current_version():
    # given
    template = _salesforce()

    # when
    with pytest.raises(ValidationFailed) as caught:
        template_services.update_template(template=template, body={"a": "{% if %}"}, author="a")

    # then
    assert caught.value.code == "TEMPLATE_SYNTAX_ERROR"
    template.refresh_from_db()
    assert template.current_version.number == 1


def test_rollback_adds_a_new_version_copying_the_old_content():
    # given
    template = _salesforce(header_templates={"X-Lead-Id": "{{ data.lead.id }}"})
    template = template_services.update_template(template=template, body={"only": "{{ event_id }}"},
                                                 header_templates={}, author="a", note="v2")

    # when
    template = template_services.rollback(template=template, version_number=1, author="api-key:ops")

    # then
    current = template.current_version
    assert (current.number, current.restored_from, current.note) == (3, 1, "Rollback to version 1")
    assert current.body == SALESFORCE_TEMPLATE
    assert current.header_templates == {"X-Lead-Id": "{{ data.lead.id }}"}
    assert [(v.number, v.note) for v in template.versions.order_by("number")] == [
        (1, "first cut"), (2, "v2"), (3, "Rollback to version 1"),
    ]
    assert template.versions.get(number=2).body == {"only": "{{ event_id }}"}


def test_rollback_to_the_current_or_a_missing_version_is_refused():
    # given
    template = _salesforce()

    # when / then
    with pytest.raises(ValidationFailed):
        template_services.rollback(template=template, version_number=1, author="a")
    with pytest.raises(NotFound):
        template_services.rollback(template=template, version_number=7, author="a")
    assert template.versions.count() == 1


# --- resolve and render -------------------------------------------------------------------------
def test_resolve_follows_the_current_version_or_a_pinned_one():
    # given
    template = _salesforce()
    template_services.update_template(template=template, body={"v": 2}, author="a")

    # when
    current = template_services.resolve(name="salesforce_lead_template")
    pinned = template_services.resolve(name="salesforce_lead_template", version=1)

    # then
    assert (current.number, current.body) == (2, {"v": 2})
    assert (pinned.number, pinned.body) == (1, SALESFORCE_TEMPLATE)
    assert pinned.template.name == "salesforce_lead_template"


def test_resolve_unknown_name_or_version_raises_not_found():
    # given
    _salesforce()

    # when / then
    with pytest.raises(NotFound):
        template_services.resolve(name="nope")
    with pytest.raises(NotFound):
        template_services.resolve(name="salesforce_lead_template", version=2)


def test_render_version_gives_the_exact_bytes_to_send():
    # given
    template = _salesforce(header_templates={"X-Lead-Id": "{{ data.lead.id }}", "X-Source": "Vocelio"})

    # when
    rendered = template_services.render_version(version=template.current_version, envelope=LEAD_CREATED)

    # then
    assert rendered.output == SALESFORCE_OUTPUT
    assert rendered.body == (
        b'{"crm_lead":{"external_id":"lead_123","contact_name":"John Doe","email_address":"john.doe@example.com",'
        b'"phone_number":"+1-555-0123","lead_score":85,"assigned_rep":"Sarah Johnson"},'
        b'"timestamp":"2025-08-05T17:30:00Z","source":"vocelio_ai_platform"}'
    )
    assert rendered.content_type == "application/json"
    assert rendered.headers == {"X-Lead-Id": "lead_123", "X-Source": "Vocelio"}


def test_render_version_text_form_sends_the_text_as_is():
    # given
    template = template_services.create_template(
        name="form_lead", form="text", body=FORM_BODY, content_type="application/x-www-form-urlencoded", author="a",
    )

    # when
    rendered = template_services.render_version(version=template.current_version, envelope=LEAD_CREATED)

    # then
    assert rendered.body == b"lead_id=lead_123&score=85"
    assert rendered.content_type == "application/x-www-form-urlencoded"


def test_render_preview_defaults_to_the_event_types_sample_data(event_types):
    # given
    template = _salesforce()

    # when
    rendered = template_services.render_preview(template=template, timestamp=None)

    # then
    assert rendered.output["crm_lead"] == SALESFORCE_OUTPUT["crm_lead"]
    assert rendered.output["timestamp"].endswith("Z")


def test_render_preview_render_error_is_a_validation_failure(event_types):
    # given
    template = _salesforce(header_templates={"X-Region": "{{ data.lead.region }}"})

    # when
    with pytest.raises(ValidationFailed) as caught:
        template_services.render_preview(template=template)

    # then
    assert caught.value.code == "TEMPLATE_RENDER_ERROR"
    assert caught.value.details == {"field": "header_templates", "line": 1, "column": 4, "path": "X-Region",
                                    "version": 1}


def test_update_template_form_change_takes_the_new_forms_content_type():
    # given
    template = template_services.create_template(
        name="form_lead", form="text", body=FORM_BODY, content_type="application/x-www-form-urlencoded", author="a",
    )

    # when
    template = template_services.update_template(template=template, form="json", body={"id": "{{ event_id }}"},
                                                 author="a")

    # then
    assert (template.current_version.form, template.current_version.content_type) == ("json", "application/json")
    with pytest.raises(ValidationFailed):
        template_services.update_template(template=template, form="text", body=FORM_BODY, author="a")
