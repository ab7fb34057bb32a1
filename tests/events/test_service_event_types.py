"""The event types the service publishes itself (``events.service_types``) cannot be deleted or
renamed by a person, so the alerts published with them are not lost: the API has no such
operation, the admin refuses (a message, nothing deleted), and an auto-disable still delivers its
``system.health_alert`` after someone tried to delete that type."""
import json
import re

import pytest

from deliveries.models import Delivery
from events.catalog import EVENT_TYPES
from events.models import EventType
from events.service_types import SERVICE_EVENT_TYPES, restore_missing
from tests.conftest import ROOT, assert_seed_error, wait_until
from vocelio_webhooks.models import AuditLogEntry

CATALOG = {entry["name"]: entry for entry in EVENT_TYPES}


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize("method", ["delete", "patch", "put"])
def test_event_type_api_deletes_or_renames_no_service_type(api, method):
    # given
    body = {"name": "system.health_alert_old", "category": "other"}

    # when
    response = getattr(api, method)("/event-types/system.health_alert", body, format="json")

    # then: the API has no such operation (seed error document); the row is as it was
    assert_seed_error(response, 405, "METHOD_NOT_ALLOWED")
    assert EventType.objects.filter(name="system.health_alert", category="system").exists()


@pytest.mark.parametrize("name", sorted(SERVICE_EVENT_TYPES))
def test_event_type_admin_refuses_to_delete_a_service_type(admin_client, event_types, name):
    # given
    kind = EventType.objects.get(name=name)

    # when: the delete page's confirm, posted directly (the change form shows no "Delete" link)
    form = admin_client.get(f"/admin/events/eventtype/{kind.pk}/change/")
    response = admin_client.post(f"/admin/events/eventtype/{kind.pk}/delete/", {"post": "yes"}, follow=True)

    # then: an error message saying why, on the type's page; nothing deleted or audited as deleted
    assert f"/admin/events/eventtype/{kind.pk}/delete/" not in form.content.decode()
    assert response.redirect_chain == [(f"/admin/events/eventtype/{kind.pk}/change/", 302)]
    assert any(f"{name} cannot be deleted or renamed: the service publishes it itself" in message
               for message in _messages(response))
    assert f"The event type {name} cannot be deleted" in response.content.decode()  # as shown, capfirst applied
    assert EventType.objects.filter(pk=kind.pk, name=name).exists()
    assert not AuditLogEntry.objects.filter(action=AuditLogEntry.Action.DELETE).exists()


def test_event_type_admin_bulk_delete_with_a_service_type_deletes_nothing(admin_client, event_types):
    # given: a custom type without events, selected with system.health_alert
    custom = EventType.objects.create(name="billing.invoice_paid", category="billing")
    selected = [custom.pk, EventType.objects.get(name="system.health_alert").pk]

    # when: "Delete selected", confirmed
    response = admin_client.post("/admin/events/eventtype/", {"action": "delete_selected", "post": "yes",
                                                              "_selected_action": selected}, follow=True)

    # then: refused as a whole, with the reason
    assert response.status_code == 200
    [message] = _messages(response)
    assert "system.health_alert cannot be deleted or renamed" in message and "Nothing was deleted." in message
    assert EventType.objects.filter(pk__in=selected).count() == 2


def test_event_type_admin_still_deletes_a_custom_type(admin_client, event_types):
    # given
    custom = EventType.objects.create(name="billing.invoice_paid", category="billing")

    # when: Django's confirmation page, then the confirm
    page = admin_client.post("/admin/events/eventtype/", {"action": "delete_selected",
                                                          "_selected_action": [custom.pk]})
    admin_client.post("/admin/events/eventtype/", {"action": "delete_selected", "post": "yes",
                                                   "_selected_action": [custom.pk]})

    # then
    assert "Are you sure" in page.content.decode()
    assert not EventType.objects.filter(pk=custom.pk).exists()
    assert AuditLogEntry.objects.filter(action=AuditLogEntry.Action.DELETE, object_id=str(custom.pk)).exists()


def test_event_type_admin_keeps_the_name_and_category_of_a_service_type(admin_client, event_types):
    # given
    kind = EventType.objects.get(name="system.health_alert")

    # when: a change form posted with a new name, category and description
    response = admin_client.post(f"/admin/events/eventtype/{kind.pk}/change/", {
        "name": "ops.health_alert", "category": "ops", "description": "Endpoint and analytics alerts",
        "sample_data": json.dumps(kind.sample_data), "is_high_priority": "on"}, follow=True)

    # then: the description and priority changed; name and category did not
    assert response.status_code == 200
    kind.refresh_from_db()
    assert (kind.name, kind.category) == ("system.health_alert", "system")
    assert (kind.description, kind.is_high_priority) == ("Endpoint and analytics alerts", True)


def test_every_system_type_the_service_publishes_is_a_service_type():
    # given: every "system.<x>" string literal in the service's code outside the catalog and tests
    packages = [folder for folder in ROOT.iterdir() if (folder / "__init__.py").exists() and folder.name != "tests"]
    sources = [path for folder in packages for path in folder.rglob("*.py")
               if "migrations" not in path.parts and path.name != "catalog.py"]

    # when
    named = {name for path in sources for name in re.findall(r"""["'](system\.[a-z_]+)["']""", path.read_text())}

    # then
    assert "system.error" in named and "system.health_alert" in named
    assert named <= SERVICE_EVENT_TYPES, named - SERVICE_EVENT_TYPES


def test_restore_missing_brings_back_a_deleted_service_type_from_the_catalog(event_types):
    # given: system.health_alert deleted before the admin refused it; system.error edited
    EventType.objects.filter(name="system.health_alert").delete()
    EventType.objects.filter(name="system.error").update(description="edited")

    # when
    created = restore_missing(EventType)
    again = restore_missing(EventType)

    # then: recreated from the catalog; the edited one left alone
    assert (created, again) == (["system.health_alert"], [])
    restored = EventType.objects.get(name="system.health_alert")
    entry = CATALOG["system.health_alert"]
    assert (restored.category, restored.description, restored.sample_data) == (
        entry["category"], entry["description"], entry["sample_data"])
    assert EventType.objects.get(name="system.error").description == "edited"


def test_auto_disable_still_delivers_its_alert_after_someone_tried_to_delete_the_alert_type(
        api, receiver, worker, admin_client):
    # given: an operator endpoint subscribed to health alerts, an endpoint that answers 410, and
    # a person who tried to delete system.health_alert in the admin
    receiver.script("/gone", [410])
    ops = api.post("/endpoints", {"name": "Ops", "url": receiver.url("/ops"), "events": ["system.health_alert"]},
                   format="json").json()
    gone = api.post("/endpoints", {"name": "Gone", "url": receiver.url("/gone"), "events": ["lead.*"]},
                    format="json").json()
    kind = EventType.objects.get(name="system.health_alert")
    admin_client.post(f"/admin/events/eventtype/{kind.pk}/delete/", {"post": "yes"})
    admin_client.post("/admin/events/eventtype/", {"action": "delete_selected", "post": "yes",
                                                   "_selected_action": [kind.pk]})

    # when: the endpoint answers 410 Gone and is disabled
    published = api.post("/events/publish", {"event_type": "lead.created", "data": {"n": 1}}, format="json")
    assert published.status_code == 202, published.content

    # then: the alert reaches the operators
    [alert] = receiver.wait_for(1, path="/ops")
    body = alert.json()
    assert body["event_type"] == "system.health_alert"
    assert body["data"]["alert"]["name"] == "endpoint_disabled"
    assert body["data"]["endpoint"]["id"] == gone["id"]
    assert wait_until(lambda: Delivery.objects.filter(endpoint_id=ops["id"], status="succeeded").exists())
