"""Template input that reaches headers, terminals and the admin is validated at save: a
``content_type`` is sent as the Content-Type header value (visible ASCII, as every header value we
send), and descriptions and notes refuse control and bidi characters. Each refusal is a 400 in the
seed's error format and writes nothing."""
import pytest

from templates_app.models import PayloadTemplate
from tests.conftest import assert_seed_error


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["text/plain; charset=é🚀", "text/plain; a=\x85b"])
def test_create_template_refuses_content_type_that_is_no_header_value(api, content_type):
    # given
    body = {"name": "plain", "form": "text", "body": "{{ event_type }}", "content_type": content_type}

    # when
    response = api.post("/templates", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "content_type" in error["details"]["fields"]
    assert not PayloadTemplate.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["description", "note"])
@pytest.mark.parametrize("text", ["a\u0007\u001bb", "🚀\u202eevil", "x\u0085y"])
def test_create_template_refuses_control_characters_in_free_text(api, field, text):
    # given
    body = {"name": "plain", "form": "json", "body": {"type": "{{ event_type }}"}, field: text}

    # when
    response = api.post("/templates", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert field in error["details"]["fields"]
    assert not PayloadTemplate.objects.exists()


@pytest.mark.django_db
def test_create_template_keeps_emoji_and_accents_in_description(api):
    # given
    body = {"name": "plain", "form": "json", "body": {"type": "{{ event_type }}"},
            "description": "Crème brûlée 🚀", "note": "première version"}

    # when
    response = api.post("/templates", body, format="json")

    # then
    assert response.status_code == 201, response.content
    assert PayloadTemplate.objects.get().description == "Crème brûlée 🚀"


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["a\r\nX-Injected: yes", " {{ event_id }}", "{{ event_id }}\t", "lead-é", "a\x1bb"])
def test_create_template_refuses_header_template_that_is_no_header_value(api, value):
    # given: the same rule as endpoint custom_headers (templated or not) and api_key
    body = {"name": "headers", "form": "json", "body": {"type": "{{ event_type }}"},
            "header_templates": {"X-Event": value}}

    # when
    response = api.post("/templates", body, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "X-Event" in error["details"]["fields"]["header_templates"][0]
    assert not PayloadTemplate.objects.exists()


@pytest.mark.django_db
def test_create_template_accepts_header_template_with_inner_spaces(api):
    # given
    body = {"name": "headers", "form": "json", "body": {"type": "{{ event_type }}"},
            "header_templates": {"X-Event": "Lead {{ event_id }} from Vocelio"}}

    # when
    response = api.post("/templates", body, format="json")

    # then
    assert response.status_code == 201, response.content
    version = PayloadTemplate.objects.get().current_version
    assert version.header_templates == {"X-Event": "Lead {{ event_id }} from Vocelio"}
