"""API keys from the operator's command, and the service's public surface: docs, schema, health
and the JSON 404."""
import hashlib
import io
import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import is_external, page_assets
from vocelio_webhooks.models import ApiKey


def _create_key(name: str) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("create_api_key", name, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


@pytest.mark.django_db
def test_create_api_key_prints_key_alone_on_last_line():
    # given / when
    stdout, _ = _create_key("crm-sync")

    # then
    last_line = stdout.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"vwk_[A-Za-z0-9_-]{43}", last_line)
    assert ApiKey.objects.get().name == "crm-sync"


@pytest.mark.django_db
def test_create_api_key_prints_a_different_key_each_time():
    # given / when
    first = _create_key("a")[0].splitlines()[-1]
    second = _create_key("b")[0].splitlines()[-1]

    # then
    assert first != second
    assert ApiKey.objects.count() == 2


@pytest.mark.django_db
def test_create_api_key_key_authenticates_the_api(event_types):
    # given
    raw = _create_key("crm-sync")[0].splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    # when
    listed = client.get("/endpoints")
    created = client.post("/endpoints", {"name": "CRM", "url": "https://crm.example.com/h", "events": ["*"]},
                          format="json")

    # then
    assert listed.status_code == 200, listed.content
    assert created.status_code == 201, created.content
    assert ApiKey.objects.get().last_used_at is not None


@pytest.mark.django_db
def test_create_api_key_stores_only_the_hash():
    # given
    raw = _create_key("crm-sync")[0].splitlines()[-1]

    # when
    row = ApiKey.objects.values().get()

    # then
    assert row["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert all(raw not in str(value) for value in row.values())
    assert raw.startswith(row["prefix"])  # a recognisable head, not the key


@pytest.mark.django_db
def test_create_api_key_requires_a_name():
    # given / when / then
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_api_key", stdout=io.StringIO(), stderr=io.StringIO())
    assert ApiKey.objects.count() == 0


# --- public surface ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_docs_served_without_a_cdn():
    # given
    client = Client()

    # when
    response = client.get("/docs")

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger" in html.lower()
    assert not [url for url in page_assets(html) if is_external(url)]
    scripts = re.findall(r'src="/static/([^"?]+)', response.content.decode())
    assert scripts, "the page loads its scripts from our own /static/"
    assert all(finders.find(path) for path in scripts)


@pytest.mark.django_db
def test_schema_returns_openapi_document():
    # given
    client = Client()

    # when
    response = client.get("/schema")

    # then
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Vocelio Webhooks API"
    for path in ("/endpoints", "/endpoints/{id}", "/endpoints/{id}/status", "/deliveries",
                 "/deliveries/retry/{id}", "/events/publish", "/event-types"):
        assert path in document["paths"], path
    assert document["components"]["securitySchemes"]["ApiKey"] == {"type": "http", "scheme": "bearer"}


@pytest.mark.django_db
def test_health_answers_200_without_a_key():
    # given
    client = Client()

    # when
    response = client.get("/health")

    # then
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/no-such-route", "/endpoints/1/no-such-action", "/api/endpoints"])
def test_unknown_route_answers_json_404_in_seed_format(path):
    # given
    client = Client()

    # when
    response = client.get(path)

    # then
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"error": {"code": "NOT_FOUND", "message": "No such route.", "details": {}}}
