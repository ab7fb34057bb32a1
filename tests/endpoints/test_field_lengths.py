"""Found in a walk: an endpoint's ``description`` had no length limit (100 KB was saved and came
back in every endpoint list) and a custom header's name none either (a 10,000-character name was
saved, and echoed whole in messages). Now a description holds at most 2,000 characters and a
header name (custom headers, template header templates) at most 256; longer ones are a 400 that
writes nothing and does not echo the whole name."""
import pytest

from endpoints.models import WebhookEndpoint
from templates_app.models import PayloadTemplate
from tests.conftest import assert_seed_error


def _create(api, **fields):
    body = {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"], **fields}
    return api.post("/endpoints", body, format="json")


def test_endpoint_description_of_2000_characters_is_saved_and_one_more_refused(api):
    # when
    longest = _create(api, description="n" * 1999 + "\n")
    too_long = _create(api, name="CRM 2", description="n" * 2001)

    # then
    assert longest.status_code == 201, longest.content
    error = assert_seed_error(too_long, 400, "VALIDATION_ERROR")
    assert "2000" in " ".join(error["details"]["fields"]["description"])
    assert list(WebhookEndpoint.objects.values_list("name", flat=True)) == ["CRM"]


def test_endpoint_description_cannot_grow_past_the_limit_by_update(api):
    # given
    created = _create(api, description="short")

    # when
    response = api.patch(f"/endpoints/{created.json()['id']}", {"description": "x" * 2001}, format="json")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert WebhookEndpoint.objects.get().description == "short"


def test_custom_header_name_of_256_characters_is_saved_and_longer_refused_without_echoing_it(api):
    # when
    longest = _create(api, custom_headers={"X-" + "a" * 254: "v"})
    too_long = _create(api, name="CRM 2", custom_headers={"X-" + "b" * 9998: "v"})

    # then
    assert longest.status_code == 201, longest.content
    error = assert_seed_error(too_long, 400, "VALIDATION_ERROR")
    [message] = error["details"]["fields"]["custom_headers"]
    assert "longer than 256 characters" in message
    assert len(message) < 300
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.parametrize(("length", "status"), [(256, 201), (257, 400)])
def test_template_header_name_is_at_most_256_characters(api, length, status):
    # given
    name = "X-" + "h" * (length - 2)
    body = {"name": "with_header", "form": "json", "body": {"type": "{{ event_type }}"},
            "header_templates": {name: "{{ event_type }}"}}

    # when
    response = api.post("/templates", body, format="json")

    # then
    assert response.status_code == status, response.content
    if status == 400:
        error = assert_seed_error(response, 400, "VALIDATION_ERROR")
        assert "longer than 256 characters" in " ".join(error["details"]["fields"]["header_templates"])
    assert PayloadTemplate.objects.exists() == (status == 201)
