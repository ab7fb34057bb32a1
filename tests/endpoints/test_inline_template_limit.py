"""An inline transformation is limited like a named template (64 KiB,
``templates_app.services.MAX_TEMPLATE_SOURCE_BYTES``), with the same message. Before, a 2 MB inline
``body`` was stored (201) while ``POST /templates`` refused 70 KB, and every delivery of the
endpoint then failed ``template_error``."""
import json
import re

import pytest

from endpoints.models import WebhookEndpoint
from templates_app.models import PayloadTemplate
from templates_app.services import MAX_TEMPLATE_SOURCE_BYTES
from tests.conftest import assert_seed_error


def _endpoint(transformation) -> dict:
    return {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"],
            "transformation": transformation}


@pytest.mark.django_db
@pytest.mark.parametrize("transformation", [
    pytest.param({"body": "x" * 2_000_000, "content_type": "text/plain"}, id="2MB-text-body"),
    pytest.param({"body": "x" * 70_000, "content_type": "text/plain"}, id="70KB-text-body"),
    pytest.param({"template": {"text": "x" * 70_000}}, id="70KB-json-template"),
    pytest.param({"event_templates": {f"lead.t{n}": {"body": "x" * 20_000, "content_type": "text/plain"}
                                      for n in range(4)}}, id="4x20KB-event-templates"),
])
def test_create_endpoint_refuses_inline_template_over_the_named_template_limit(api, transformation):
    # when
    response = api.post("/endpoints", _endpoint(transformation), format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert f"the limit is {MAX_TEMPLATE_SOURCE_BYTES}" in error["details"]["fields"]["transformation"][0]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_inline_and_named_templates_share_the_limit_and_the_message(api):
    # given
    text = "x" * 70_000

    # when
    named = api.post("/templates", {"name": "big", "form": "text", "body": text, "content_type": "text/plain"},
                     format="json")
    inline = api.post("/endpoints", _endpoint({"body": text, "content_type": "text/plain"}), format="json")

    # then
    named_error = assert_seed_error(named, 400, "VALIDATION_ERROR")
    inline_error = assert_seed_error(inline, 400, "VALIDATION_ERROR")
    pattern = rf"^The template is \d+ bytes; the limit is {MAX_TEMPLATE_SOURCE_BYTES}\.$"
    assert re.match(pattern, named_error["details"]["fields"]["body"][0])
    assert re.match(pattern, inline_error["details"]["fields"]["transformation"][0])
    assert not PayloadTemplate.objects.exists() and not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_update_endpoint_refuses_oversized_inline_template_and_keeps_the_old_one(api):
    # given
    small = {"body": "{{ event_type }}", "content_type": "text/plain"}
    endpoint_id = api.post("/endpoints", _endpoint(small), format="json").json()["id"]

    # when
    response = api.patch(f"/endpoints/{endpoint_id}",
                         {"transformation": {"body": "x" * 70_000, "content_type": "text/plain"}}, format="json")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert WebhookEndpoint.objects.get().transformation == small


@pytest.mark.django_db
def test_create_endpoint_accepts_inline_template_just_under_the_limit(api):
    # given: measured as the limit measures it, the JSON text of the whole transformation
    overhead = len(json.dumps({"body": "", "content_type": "text/plain"}))
    transformation = {"body": "x" * (MAX_TEMPLATE_SOURCE_BYTES - overhead), "content_type": "text/plain"}

    # when
    response = api.post("/endpoints", _endpoint(transformation), format="json")

    # then
    assert response.status_code == 201, response.content
