"""Template API as a client sees it: the seed's routes, versions and rollback, the test route with
the event type's sample data, and 400s in the seed's error format. No worker, no outbound HTTP."""
from rest_framework.test import APIClient

from tests.conftest import assert_seed_error
from tests.templates_app.seed_examples import (
    SALESFORCE_OUTPUT,
    SALESFORCE_TEMPLATE,
    SLACK_TEMPLATE,
)

XML_BODY = '<lead id="{{ data.lead.id }}"><score>{{ data.lead.score }}</score></lead>\n'


def _create(api, **fields):
    body = {"name": "salesforce_lead_template", "form": "json", "body": SALESFORCE_TEMPLATE, **fields}
    return api.post("/templates", body, format="json")


# --- create and read ----------------------------------------------------------------------------
def test_create_template_answers_201_with_version_one(api):
    # given / when
    response = _create(api, description="Leads to Salesforce", note="first cut",
                       header_templates={"X-Lead-Id": "{{ data.lead.id }}"})

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "salesforce_lead_template"
    assert body["description"] == "Leads to Salesforce"
    assert body["version_count"] == 1
    version = body["current_version"]
    assert version["number"] == 1
    assert version["form"] == "json"
    assert version["body"] == SALESFORCE_TEMPLATE
    assert version["content_type"] == "application/json"
    assert version["header_templates"] == {"X-Lead-Id": "{{ data.lead.id }}"}
    assert (version["author"], version["note"]) == ("api-key:tests", "first cut")


def test_list_and_get_templates_by_id_or_name(api):
    # given
    created = _create(api).json()
    _create(api, name="slack_alert", body=SLACK_TEMPLATE)

    # when
    listing = api.get("/templates")
    by_id = api.get(f"/templates/{created['id']}")
    by_name = api.get("/templates/salesforce_lead_template")
    filtered = api.get("/templates", {"name": "slack_alert"})

    # then
    assert listing.status_code == 200
    assert [t["name"] for t in listing.json()["results"]] == ["salesforce_lead_template", "slack_alert"]
    assert by_id.json() == by_name.json() == created
    assert [t["name"] for t in filtered.json()["results"]] == ["slack_alert"]


def test_get_unknown_template_answers_404_in_seed_format(api):
    # given / when
    response = api.get("/templates/999")

    # then
    assert_seed_error(response, 404, "NOT_FOUND")


def test_create_template_with_a_syntax_error_answers_400_with_its_location(api):
    # given
    body = {"crm_lead": {"lead_score": "{{ data.lead.score | }}"}}

    # when
    response = _create(api, body=body)

    # then
    error = assert_seed_error(response, 400, "TEMPLATE_SYNTAX_ERROR")
    assert error["details"] == {"field": "body", "line": 1, "column": 1, "path": "crm_lead.lead_score"}
    assert api.get("/templates").json()["count"] == 0


def test_create_template_without_a_body_answers_400_validation_error(api):
    # given / when
    response = api.post("/templates", {"name": "empty", "form": "json"}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "body" in error["details"]["fields"]


def test_create_template_with_a_taken_name_answers_409(api):
    # given
    _create(api)

    # when
    response = _create(api)

    # then
    assert_seed_error(response, 409, "CONFLICT")


def test_templates_require_an_api_key(db):
    # given
    client = APIClient()

    # when
    response = client.get("/templates")

    # then
    assert_seed_error(response, 401, "UNAUTHENTICATED")


# --- versions and rollback ----------------------------------------------------------------------
def test_update_creates_versions_listed_newest_first(api):
    # given
    template_id = _create(api, note="first cut").json()["id"]

    # when
    put = api.put(f"/templates/{template_id}", {"form": "json", "body": {"lead": "{{ data.lead.id }}"},
                                                 "note": "slim"}, format="json")
    patch = api.patch(f"/templates/{template_id}", {"header_templates": {"X-Event": "{{ event_type }}"},
                                                     "note": "add header"}, format="json")
    versions = api.get(f"/templates/{template_id}/versions")

    # then
    assert put.status_code == 200, put.content
    assert patch.status_code == 200, patch.content
    assert patch.json()["current_version"]["number"] == 3
    assert patch.json()["current_version"]["body"] == {"lead": "{{ data.lead.id }}"}
    listed = versions.json()["results"]
    assert [(v["number"], v["note"], v["author"]) for v in listed] == [
        (3, "add header", "api-key:tests"), (2, "slim", "api-key:tests"), (1, "first cut", "api-key:tests"),
    ]
    assert listed[2]["body"] == SALESFORCE_TEMPLATE


def test_update_cannot_rename_a_template(api):
    # given
    template_id = _create(api).json()["id"]

    # when
    response = api.patch(f"/templates/{template_id}", {"name": "other"}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "name" in error["details"]["fields"]


def test_update_with_a_syntax_error_answers_400_and_keeps_the_version(api):
    # given
    template_id = _create(api).json()["id"]

    # when
    response = api.patch(f"/templates/{template_id}", {"body": {"a": "line one\n{% for x in data %}"}},
                         format="json")

    # then
    error = assert_seed_error(response, 400, "TEMPLATE_SYNTAX_ERROR")
    assert (error["details"]["path"], error["details"]["line"]) == ("a", 2)
    assert api.get(f"/templates/{template_id}").json()["current_version"]["number"] == 1


def test_rollback_via_api_adds_a_version_with_the_old_content(api):
    # given
    template_id = _create(api).json()["id"]
    api.patch(f"/templates/{template_id}", {"body": {"v": 2}}, format="json")

    # when
    response = api.post(f"/templates/{template_id}/rollback", {"version": 1}, format="json")

    # then
    assert response.status_code == 200, response.content
    current = response.json()["current_version"]
    assert (current["number"], current["restored_from"], current["note"]) == (3, 1, "Rollback to version 1")
    assert current["body"] == SALESFORCE_TEMPLATE
    numbers = [v["number"] for v in api.get(f"/templates/{template_id}/versions").json()["results"]]
    assert numbers == [3, 2, 1]


def test_rollback_to_a_missing_version_answers_404(api):
    # given
    template_id = _create(api).json()["id"]

    # when
    response = api.post(f"/templates/{template_id}/rollback", {"version": 5, "note": "oops"}, format="json")

    # then
    error = assert_seed_error(response, 404, "NOT_FOUND")
    assert error["details"]["version"] == 5


# --- test route ---------------------------------------------------------------------------------
def test_test_route_defaults_to_the_lead_created_sample_data(api):
    # given
    template_id = _create(api, header_templates={"X-Lead-Id": "{{ data.lead.id }}"}).json()["id"]

    # when
    response = api.post(f"/templates/{template_id}/test", {"timestamp": "2025-08-05T17:30:00Z"}, format="json")

    # then
    assert response.status_code == 200, response.content
    assert response.json() == {"output": SALESFORCE_OUTPUT, "content_type": "application/json",
                               "headers": {"X-Lead-Id": "lead_123"}}


def test_test_route_uses_the_given_event_type_data_and_version(api):
    # given
    template_id = _create(api, name="slack_alert", body=SLACK_TEMPLATE).json()["id"]
    api.patch(f"/templates/{template_id}", {"body": {"text": "v2"}}, format="json")

    # when
    response = api.post(f"/templates/{template_id}/test", {
        "event_type": "system.health_alert", "data": {"alert": {"id": "a1"}}, "version": 1,
        "timestamp": "2025-08-05T20:15:00Z",
    }, format="json")

    # then
    assert response.status_code == 200, response.content
    assert response.json()["output"] == {
        "text": "🚨 Alert: system.health_alert",
        "attachments": [{"color": "danger", "fields": [
            {"title": "Event", "value": "system.health_alert", "short": True},
            {"title": "Time", "value": "2025-08-05T20:15:00Z", "short": True},
        ]}],
    }


def test_test_route_renders_a_text_template(api):
    # given
    template_id = _create(api, name="xml_lead", form="text", body=XML_BODY,
                          content_type="application/xml; charset=utf-8").json()["id"]

    # when
    response = api.post(f"/templates/{template_id}/test", {}, format="json")

    # then
    assert response.status_code == 200, response.content
    assert response.json() == {"output": '<lead id="lead_123"><score>85</score></lead>\n',
                               "content_type": "application/xml; charset=utf-8", "headers": {}}


def test_test_route_render_error_answers_400_with_its_location(api):
    # given
    body = {"crm_lead": {"region": "{{ data.lead.region }}"}}
    template_id = _create(api, body=body).json()["id"]

    # when
    response = api.post(f"/templates/{template_id}/test", {}, format="json")

    # then
    error = assert_seed_error(response, 400, "TEMPLATE_RENDER_ERROR")
    assert error["message"] == "The template failed to render: Undefined variable: data.lead.region"
    assert error["details"] == {"field": "body", "line": 1, "column": 4, "path": "crm_lead.region", "version": 1}


def test_test_route_refuses_a_sandbox_escape_with_400(api):
    # given
    template_id = _create(api, body={"x": "{{ ''.__class__.__mro__ }}"}).json()["id"]

    # when
    response = api.post(f"/templates/{template_id}/test", {}, format="json")

    # then
    error = assert_seed_error(response, 400, "TEMPLATE_RENDER_ERROR")
    assert "sandbox" in error["message"]


def test_test_route_unknown_event_type_without_data_answers_400(api):
    # given
    template_id = _create(api).json()["id"]

    # when
    response = api.post(f"/templates/{template_id}/test", {"event_type": "lead.teleported"}, format="json")

    # then
    assert_seed_error(response, 400, "UNKNOWN_EVENT_TYPE")


def test_test_route_unknown_version_answers_404(api):
    # given
    template_id = _create(api).json()["id"]

    # when
    response = api.post(f"/templates/{template_id}/test", {"version": 9}, format="json")

    # then
    assert_seed_error(response, 404, "NOT_FOUND")
