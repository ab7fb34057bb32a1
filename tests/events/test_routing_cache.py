"""The per-process routing cache of publishing (endpoints/routing.py, issue 7) never routes on a
stale configuration: every change to an endpoint or an event type, through the API, the ORM's
``queryset.update()``/``bulk_create``, or another process, is seen by the next publish.

Each test publishes once first, so the cache is warm when the change happens."""
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from deliveries.models import Delivery
from endpoints import routing
from endpoints.models import WebhookEndpoint
from events.models import EventType
from tests.conftest import ROOT

HIGH_SCORE = {"lead": {"id": "l1", "score": 90}}


def _endpoint(api, name, events=("lead.*",), **fields) -> int:
    created = api.post("/endpoints", {"name": name, "url": f"https://{name}.example.com/hook", "events": list(events),
                                      **fields}, format="json")
    assert created.status_code == 201, created.content
    return created.json()["id"]


def _routed(api, event_type="lead.created", data=None, **fields) -> set[int]:
    """Publish one event; the endpoints that got a delivery, checked in the answer and in the table."""
    response = api.post("/events/publish", {"event_type": event_type, "data": data or HIGH_SCORE, **fields},
                        format="json")
    assert response.status_code == 202, response.content
    answered = {d["endpoint_id"] for d in response.json()["deliveries"]}
    stored = set(Delivery.objects.filter(event__event_id=response.json()["event_id"])
                 .values_list("endpoint_id", flat=True))
    assert answered == stored
    return stored


@pytest.fixture
def warm(api):
    """Two endpoints (``lead.*``), routed once so that the cache holds them."""
    first, second = _endpoint(api, "first"), _endpoint(api, "second")
    assert _routed(api) == {first, second}
    return first, second


def test_routing_triggers_exist_after_all_migrations(db):
    # given: the migrated test database (a later SQLite table rebuild would drop them)
    # when / then
    assert routing.triggers_installed()


def test_routing_cache_sees_an_endpoint_created_through_the_api(api, warm):
    # given
    first, second = warm

    # when
    third = _endpoint(api, "third", events=["lead.created"])

    # then
    assert _routed(api) == {first, second, third}


@pytest.mark.parametrize("new_status", ["disabled", "paused"])
def test_routing_cache_sees_a_status_change_through_the_api(api, warm, new_status):
    # given
    first, second = warm

    # when
    changed = api.put(f"/endpoints/{first}/status", {"status": new_status}, format="json")

    # then: a disabled endpoint gets nothing, a paused one still gets its (waiting) delivery
    assert changed.status_code == 200, changed.content
    assert _routed(api) == ({second} if new_status == "disabled" else {first, second})


def test_routing_cache_sees_new_event_patterns_and_filters_through_the_api(api, warm):
    # given
    first, second = warm

    # when
    repatterned = api.patch(f"/endpoints/{first}", {"events": ["call.*"]}, format="json")
    filtered = api.patch(f"/endpoints/{second}", {"filters": [
        {"field_path": "data.lead.score", "operator": "greater_than", "value": 95}]}, format="json")

    # then
    assert repatterned.status_code == 200, repatterned.content
    assert filtered.status_code == 200, filtered.content
    assert _routed(api) == set()
    assert _routed(api, event_type="call.started") == {first}
    assert _routed(api, data={"lead": {"score": 99}}) == {second}


def test_routing_cache_sees_a_deleted_endpoint(api, warm):
    # given
    first, second = warm

    # when
    deleted = api.delete(f"/endpoints/{first}")

    # then
    assert deleted.status_code == 204, deleted.content
    assert _routed(api) == {second}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"status": "disabled"}, "second only"),
        ({"events": ["call.*"]}, "second only"),
        ({"environment": "staging"}, "second only"),
        ({"filters": [{"field_path": "data.lead.score", "operator": "less_than", "value": 10}]}, "second only"),
        ({"filters": None, "status": "active"}, "both"),
    ],
)
def test_routing_cache_sees_a_bare_queryset_update(api, warm, change, expected):
    # given
    first, second = warm

    # when: no model save, no signal: only the database trigger can notice
    WebhookEndpoint.objects.filter(pk=first).update(**change)

    # then
    assert _routed(api) == ({second} if expected == "second only" else {first, second})


def test_routing_cache_sees_bulk_created_endpoints_and_a_bulk_disable(api, warm):
    # given
    first, second = warm

    # when
    bulk = WebhookEndpoint.objects.bulk_create([
        WebhookEndpoint(name=f"b{n}", url=f"https://b{n}.example.com/h", events=["lead.created"]) for n in range(3)])
    WebhookEndpoint.objects.filter(pk__in=[first, second]).update(status="disabled")

    # then
    assert _routed(api) == {e.pk for e in bulk}


def test_routing_cache_sees_an_event_type_created_through_the_api(api, warm):
    # given
    first, second = warm
    everything = _endpoint(api, "everything", events=["*"])
    assert _routed(api) == {first, second, everything}

    # when
    created = api.post("/event-types", {"name": "billing.invoice_paid", "category": "billing"}, format="json")

    # then
    assert created.status_code == 201, created.content
    assert _routed(api, event_type="billing.invoice_paid") == {everything}


def test_routing_cache_sees_an_event_type_made_high_priority(api, warm, django_capture_on_commit_callbacks):
    # given
    EventType.objects.filter(name="lead.created").update(is_high_priority=True)

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _routed(api)

    # then: the wake-up goes to the priority queue
    assert [callback.args for callback in callbacks] == [("priority",)]


def test_routing_cache_is_kept_when_other_endpoint_columns_change(api, warm):
    # given
    first, _ = warm
    with connection.cursor() as cursor:
        before = routing._read_version(cursor)

    # when: bookkeeping columns that routing does not use
    WebhookEndpoint.objects.filter(pk=first).update(name="renamed", status_reason="x", timeout_seconds=5)
    with CaptureQueriesContext(connection) as queries:
        _routed(api)

    # then: same version, and the publish read no endpoint row
    with connection.cursor() as cursor:
        assert routing._read_version(cursor) == before
    assert not [q for q in queries.captured_queries if 'FROM "endpoints_webhookendpoint"' in q["sql"]]


@pytest.mark.django_db(transaction=True)
def test_routing_cache_sees_a_change_committed_by_another_process(api, warm):
    # given
    first, second = warm

    # when: a separate Python process (as a Celery worker or another gunicorn worker would) disables one
    script = ("import django; django.setup(); from endpoints.models import WebhookEndpoint; "
              f"WebhookEndpoint.objects.filter(pk={first}).update(status='disabled')")
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings",
           "VOCELIO_TEST_DB_NAME": str(settings.DATABASES["default"]["NAME"])}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, **env}, check=True, timeout=60)

    # then
    assert WebhookEndpoint.objects.get(pk=first).status == "disabled"
    assert _routed(api) == {second}


def test_routing_cache_never_keeps_a_snapshot_of_a_rolled_back_transaction(api, warm):
    # given: a snapshot built inside a transaction that then rolls back
    first, second = warm

    with pytest.raises(RuntimeError), transaction.atomic():
        third = _endpoint(api, "third")
        assert _routed(api) == {first, second, third}
        raise RuntimeError("roll back")

    # when: another change that would give a reused counter the same value
    WebhookEndpoint.objects.filter(pk=first).update(status="disabled")

    # then: the rolled-back endpoint is not routed to (it does not exist)
    assert _routed(api) == {second}
