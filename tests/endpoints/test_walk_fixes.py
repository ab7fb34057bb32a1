"""Bugs found by walking the README on PostgreSQL: a NUL character in an endpoint's JSON fields
(jsonb cannot store it) is refused with a 400, nothing written, on every database; deleting an
endpoint while a publish routes to it deletes it instead of answering 500."""
import time

import pytest
from django.db import connection, connections
from django.utils import timezone

from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error
from vocelio_webhooks.models import AuditLogEntry

FILTERS = {"all": [{"field_path": "data.lead.source", "operator": "equals", "value": "web"}]}


def _endpoint(api) -> dict:
    created = api.post("/endpoints", {"name": "crm", "url": "https://crm.example.com/hook", "events": ["lead.*"],
                                      "filters": FILTERS}, format="json")
    assert created.status_code == 201, created.content
    return created.json()


def test_update_endpoint_with_nul_in_filters_is_refused_and_changes_nothing(api):
    # given
    endpoint = _endpoint(api)
    audit_before = AuditLogEntry.objects.count()
    bad = {"all": [{"field_path": "data.lead.source", "operator": "equals", "value": "a\u0000b"}]}

    # when
    response = api.patch(f"/endpoints/{endpoint['id']}", {"filters": bad}, format="json")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert error["details"]["fields"]["filters"] == [
        "Contains a NUL character (\\u0000) at all[0].value; it cannot be stored."]
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).filters == FILTERS
    assert AuditLogEntry.objects.count() == audit_before


@pytest.mark.parametrize("field, value", [
    ("transformation", {"template": {"lead": "{{ data.lead.id }}\u0000"}}),
    ("filters", {"any": [{"field_path": "data.x\u0000", "operator": "exists"}]}),
    ("custom_headers", {"X-Team": "a\u0000b"}),
])
def test_create_endpoint_with_nul_in_a_json_field_is_refused_and_writes_nothing(api, field, value):
    # given
    body = {"name": "crm", "url": "https://crm.example.com/hook", "events": ["lead.*"], field: value}

    # when
    response = api.post("/endpoints", body, format="json")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert not WebhookEndpoint.objects.exists()
    assert not AuditLogEntry.objects.filter(object_type="endpoints.webhookendpoint").exists()


def test_endpoint_model_validation_refuses_a_nul_in_filters_as_the_admin_form_does(db):
    # given: what the admin's change form validates (the model's full_clean)
    from django.core.exceptions import ValidationError

    endpoint = WebhookEndpoint(name="crm", url="https://crm.example.com/hook", events=["lead.*"],
                               filters={"all": [{"field": "data.x", "operator": "equals", "value": "a\u0000b"}]})

    # when
    with pytest.raises(ValidationError) as refused:
        endpoint.full_clean()

    # then
    assert "filters" in refused.value.message_dict
    assert "NUL" in refused.value.message_dict["filters"][0]


def test_delete_endpoint_waits_for_a_publish_that_routed_to_it_instead_of_failing_at_commit(
        transactional_db, event_types):
    # given (PostgreSQL): another session holds the endpoint's row as a publish's foreign-key check
    # does at its commit (FOR KEY SHARE), as if it routed a delivery to the endpoint just before
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: a publish cannot commit inside a delete")
    import threading

    import psycopg

    from deliveries.models import Delivery
    from endpoints import services as endpoint_services
    from events.models import Event, EventType

    endpoint = WebhookEndpoint.objects.create(name="gone", url="https://example.com/hook", events=["lead.*"])
    event = Event.objects.create(event_id="evt_delete_race", event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={})
    params = connection.get_connection_params()
    publisher = psycopg.connect(**{k: v for k, v in params.items()
                                   if k in ("dbname", "user", "password", "host", "port")})
    publisher.execute(f"SELECT id FROM {WebhookEndpoint._meta.db_table} WHERE id = %s FOR KEY SHARE", [endpoint.pk])

    # when: the endpoint is deleted while that publish commits its delivery
    outcome = {}

    def delete():
        try:
            endpoint_services.delete_endpoint(endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk))
            outcome["deleted"] = True
        except Exception as exc:  # noqa: BLE001 — the test reports it
            outcome["error"] = repr(exc)
        finally:
            connections.close_all()

    deleting = threading.Thread(target=delete)
    deleting.start()
    deadline, waiting = time.time() + 10, 0
    while time.time() < deadline and not waiting:
        time.sleep(0.02)  # until the delete waits on the publisher's lock
        # (pg_stat_activity is a snapshot taken once per transaction unless cleared)
        publisher.execute("SELECT pg_stat_clear_snapshot()")
        waiting = publisher.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                                    [publisher.info.backend_pid]).fetchone()[0]
    assert waiting, "the delete never waited on the publisher's lock"
    publisher.execute(
        f"INSERT INTO {Delivery._meta.db_table} (event_id, endpoint_id, status, attempt_count, next_attempt_at, "
        "last_error, is_replay, created_at, updated_at) VALUES (%s, %s, 'pending', 0, now(), '', false, now(), now())",
        [event.pk, endpoint.pk])
    publisher.commit()
    deleting.join(timeout=20)
    publisher.close()

    # then: the delete went through (no 500), and the delivery committed during it is kept as
    # history with its endpoint set to null, as every delivery of a deleted endpoint
    assert outcome == {"deleted": True}
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert list(Delivery.objects.filter(event=event).values_list("endpoint_id", flat=True)) == [None]
