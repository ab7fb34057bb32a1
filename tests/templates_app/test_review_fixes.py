"""Holes found by trying to break templates and filters through the API (issue 3 review)."""
import json

import pytest

from endpoints.models import WebhookEndpoint
from events.models import Event
from templates_app.models import PayloadTemplate


def _template(api, body, **fields):
    return api.post("/templates", {"name": "t1", "form": "text", "content_type": "text/plain", "body": body, **fields},
                    format="json")


@pytest.mark.timeout(10)
def test_template_save_does_not_evaluate_constant_expressions(api):
    # given: Jinja's optimizer would fold this at compile time, outside the render budget
    bomb = "{{ 'a'|center(250000)|list|map('upper')|join|length }}" * 30

    # when
    saved = _template(api, bomb)
    tested = api.post(f"/templates/{saved.json()['id']}/test", {}, format="json")

    # then
    assert saved.status_code == 201, saved.content
    assert tested.status_code == 400
    assert tested.json()["error"]["code"] == "TEMPLATE_RENDER_ERROR"


@pytest.mark.parametrize("body", ["{{ [data.nope] }}", "x {{ {'a': data.nope} }}"])
def test_undefined_inside_a_container_is_an_error(api, body):
    # given
    saved = _template(api, body).json()

    # when
    tested = api.post(f"/templates/{saved['id']}/test", {"data": {}}, format="json")

    # then
    assert tested.status_code == 400
    assert "nope" in tested.json()["error"]["message"]


@pytest.mark.parametrize("body", ["{% include 'x' %}", "{% import 'x' as y %}", "{% extends 'x' %}"])
def test_loader_tags_are_refused_at_save(api, body):
    # given / when
    response = _template(api, body)

    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "TEMPLATE_SYNTAX_ERROR"
    assert PayloadTemplate.objects.count() == 0


@pytest.mark.parametrize("name", ["Host", "Transfer-Encoding", "Content-Length", "X-Vocelio-Event-Id", "webhook-id"])
def test_reserved_headers_cannot_be_templated_or_customised(api, name):
    # given / when
    template = _template(api, "x", header_templates={name: "{{ event_id }}"})
    endpoint = api.post("/endpoints", {"name": "e", "url": "https://example.com/h", "events": ["*"],
                                       "custom_headers": {name: "forged"}}, format="json")

    # then
    assert template.status_code == 400
    assert endpoint.status_code == 400
    assert PayloadTemplate.objects.count() == 0 and WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/events/publish", '{"event_type": "lead.created", "data": {"s": "\\ud800"}}'),
        ("/endpoints", ('{"name": "e", "url": "https://example.com/h", "events": ["*"], '
                        '"filters": [{"field_path": "data.x", "operator": "equals", "value": "\\ud800"}]}')),
        ("/templates", '{"name": "t", "form": "text", "content_type": "text/plain", "body": "x\\udc80"}'),
    ],
)
def test_lone_surrogates_are_refused_and_nothing_is_stored(api, path, body):
    # given / when
    response = api.post(path, body, content_type="application/json")

    # then
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "INVALID_REQUEST_BODY"
    assert Event.objects.count() == 0 and WebhookEndpoint.objects.count() == 0 and PayloadTemplate.objects.count() == 0
    assert api.get("/endpoints").status_code == 200 and api.get("/events").status_code == 200


def test_an_integer_of_5000_digits_is_refused_in_our_words(api):
    # given / when
    response = api.post("/events/publish", '{"event_type": "lead.created", "data": {"n": ' + "9" * 5000 + "}}",
                        content_type="application/json")

    # then: the seed's error, saying what is wrong, not how to change an interpreter setting
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST_BODY"
    assert "a number has more than 4300 digits" in error["message"]
    assert "int_max_str_digits" not in json.dumps(error)
    assert Event.objects.count() == 0


def test_too_complex_or_too_many_regex_filters_are_refused(api):
    # given
    big = [{"field_path": "data.s", "operator": "regex", "value": "(.?){1000}z"}]
    many = {"any": [{"field_path": "data.s", "operator": "regex", "value": f"^x{n}"} for n in range(11)]}

    # when
    responses = [api.post("/endpoints", {"name": "e", "url": "https://example.com/h", "events": ["*"], "filters": f},
                          format="json") for f in (big, many)]

    # then
    assert [r.status_code for r in responses] == [400, 400]
    assert "too complex" in responses[0].json()["error"]["message"]
    assert "at most 10 regex" in responses[1].json()["error"]["message"]
