"""The event types the service publishes itself, and why a person cannot delete or rename them.

The service announces its own changes as events: an endpoint it disabled or re-enabled
(``deliveries.services.health``) and an alert rule firing or resolving (``analytics.alerts``)
publish ``system.health_alert``; a receiver answering 401/403 publishes ``system.error``. A
publish looks its type up by name, so while the row is missing or renamed every one of these
alerts fails: the publish is logged and the alert is lost (the change it reports still commits),
and the re-enable probe, which sends ``system.health_alert`` test events, stops probing.

Decision: these types are the service's, not the catalogue's to edit. Svix keeps the same line:
its operational webhooks (``endpoint.disabled``, ``message.attempt.exhausted``, ...) are a fixed
set Svix defines, outside the customer's event-type catalogue, and a catalogue type is only
archived (its ``deleted`` flag), never removed under the messages that use it; Saleor's event
types are a fixed enum (../shared/reference/webhook-systems.md, "Event type catalogue" and
"Producer notifications"). So, wherever a person can change the catalogue:

- the API has no way to delete, rename or deactivate any event type (``/event-types`` is
  ``GET`` and ``POST`` only: ``DELETE``/``PATCH``/``PUT`` answer ``405 METHOD_NOT_ALLOWED`` in
  the seed's error format); there is no "active" flag to clear;
- the admin (``events.admin.EventTypeAdmin``) refuses to delete them, alone or in a bulk
  delete, on Django's "Cannot delete" page naming the reason (nothing is deleted), and shows
  their ``name`` and ``category`` read-only (``PROTECTED_FIELDS``): the category too, because the
  analytics tell the service's own notices from customers' events by ``category="system"``
  (``analytics.alerts.queries``). Their description, sample data and priority stay editable;
- a database where one went missing before this rule (the admin allowed the delete) gets it back,
  from ``events.catalog``, when migration ``0004`` runs (``restore_missing``). A row deleted later
  by hand in SQL or the Django shell is not watched for: the alerts are then logged as failed,
  as before.

Refused rather than re-created on the fly at publish time: the catalogue row is what operators
see, subscribe endpoints to and test-send, and silently bringing back a row somebody deleted on
purpose would hide the mistake instead of explaining it. The other ``system.*`` types of the
catalogue (``system.maintenance``, ``system.backup_completed``) are published by the call center
platform through the API like any customer type, and stay editable.
"""
from typing import Any

from events.catalog import EVENT_TYPES

SERVICE_EVENT_TYPES: frozenset[str] = frozenset({
    "system.health_alert",  # endpoints.services.HEALTH_ALERT_EVENT_TYPE, analytics.alerts.services.ALERT_EVENT_TYPE
    "system.error",  # deliveries.services.health: 401/403 owner notices
})
# Fields of a service event type nobody may change (the module docstring says why each).
PROTECTED_FIELDS: tuple[str, ...] = ("name", "category")


def is_service_event_type(name: str) -> bool:
    """Whether the service itself publishes events of the type named ``name``."""
    return name in SERVICE_EVENT_TYPES


def refusal(name: str) -> str:
    """The sentence telling a person why the event type ``name`` (a service type) cannot be
    deleted or renamed."""
    # Starts with "The": the admin capitalises the first letter of every message (capfirst).
    return (f"The event type {name} cannot be deleted or renamed: the service publishes it itself (endpoint "
            f"health and alert notifications), and its alerts would be lost without it.")


def restore_missing(event_type_model: Any) -> list[str]:
    """Create each of ``SERVICE_EVENT_TYPES`` missing from the table of ``event_type_model`` (the
    ``EventType`` model, or its historical version in a migration), with its ``events.catalog``
    entry's category, description and sample data. Existing rows are left as they are. Returns
    the names created, sorted."""
    catalog = {entry["name"]: entry for entry in EVENT_TYPES}
    existing = set(event_type_model.objects.filter(name__in=SERVICE_EVENT_TYPES).values_list("name", flat=True))
    created = sorted(SERVICE_EVENT_TYPES - existing)
    for name in created:
        entry = catalog[name]
        event_type_model.objects.create(name=name, category=entry["category"], description=entry["description"],
                                        sample_data=entry["sample_data"])
    return created
