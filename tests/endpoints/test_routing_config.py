"""Filters and transformations are checked when an endpoint is saved (a 400 naming what is
wrong, nothing stored), and ``POST /endpoints/{id}/filters/test`` explains a match."""
import pytest

from endpoints.models import WebhookEndpoint

BASE = {"name": "x", "url": "https://example.com/hook", "events": ["lead.*"]}


def _create(api, **fields):
    return api.post("/endpoints", {**BASE, **fields}, format="json")


@pytest.mark.parametrize(
    ("fields", "code", "needle"),
    [
        ({"filters": [{"field_path": "data.lead.score", "operator": "bigger", "value": 1}]},
         "INVALID_FILTER", "all[0]"),
        ({"filters": {"all": [{"field_path": "data.x", "operator": "exists"},
                              {"field_path": "data.y", "operator": "regex", "value": "(unclosed"}]}},
         "INVALID_FILTER", "all[1]"),
        ({"filters": [{"field_path": "body.lead", "operator": "exists"}]}, "INVALID_FILTER", "field_path"),
        ({"transformation": {"template": {"a": "{{ data.lead.id "}}}, "TEMPLATE_SYNTAX_ERROR", "transformation"),
        ({"transformation": {"body": "{% for x in data %}"}}, "TEMPLATE_SYNTAX_ERROR", "transformation"),
        ({"transformation": {"template": "no_such_template"}}, "UNKNOWN_TEMPLATE", "no_such_template"),
        ({"transformation": {"template": {"a": 1}, "body": "x"}}, "VALIDATION_ERROR", "exactly one"),
        ({"transformation": {"event_templates": {"lead.*": {"body": "x"}}}}, "VALIDATION_ERROR", "event type"),
        ({"custom_headers": {"X-Lead": "{{ data.lead.id"}}, "TEMPLATE_SYNTAX_ERROR", "custom_headers.X-Lead"),
    ],
)
def test_endpoint_save_refuses_bad_filters_and_templates(api, fields, code, needle):
    # given / when
    response = _create(api, **fields)

    # then
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert needle in error["message"]
    assert WebhookEndpoint.objects.count() == 0


def test_endpoint_template_syntax_error_reports_line(api):
    # given / when
    response = _create(api, transformation={"body": "line one\n{{ data.lead.id }\nline three"})

    # then
    assert response.status_code == 400
    assert response.json()["error"]["details"]["line"] == 2


def test_filters_test_route_says_which_condition_failed(api):
    # given
    endpoint = _create(api, filters={"all": [
        {"field_path": "data.lead.source", "operator": "in", "value": ["website", "ads"]},
        {"field_path": "data.lead.score", "operator": "greater_than", "value": 80},
    ]}).json()

    # when
    cold = api.post(f"/endpoints/{endpoint['id']}/filters/test",
                    {"event_type": "lead.created", "data": {"lead": {"source": "website", "score": "70"}}},
                    format="json")
    hot = api.post(f"/endpoints/{endpoint['id']}/filters/test",
                   {"event_type": "lead.created", "data": {"lead": {"source": "website", "score": "85"}}},
                   format="json")
    other_type = api.post(f"/endpoints/{endpoint['id']}/filters/test",
                          {"event_type": "call.ended", "data": {"lead": {"source": "website", "score": 99}}},
                          format="json")

    # then
    assert cold.status_code == 200
    assert cold.json()["matched"] is False
    assert cold.json()["location"] == "all[1]"
    assert cold.json()["failed_condition"]["operator"] == "greater_than"
    assert "70" in cold.json()["reason"]
    assert hot.json()["matched"] is True
    assert other_type.json() | {"reason": None} == {
        "matched": False, "event_type_matched": False, "filters_matched": True, "failed_condition": None,
        "location": None, "reason": None,
    }


def test_publish_reports_filtered_out_endpoints_and_creates_no_delivery_for_them(
        api, django_capture_on_commit_callbacks):
    # given
    _create(api, filters=[{"field_path": "data.lead.score", "operator": "greater_than_or_equal", "value": 90}])
    _create(api)

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post("/events/publish", {"event_type": "lead.created", "data": {"lead": {"score": 85}}},
                            format="json")

    # then
    body = response.json()
    assert (body["matched_endpoints"], body["filtered_out"], len(body["deliveries"])) == (1, 1, 1)
    assert len(callbacks) == 1
