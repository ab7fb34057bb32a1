"""What one ``POST /events/publish`` costs in SQL statements (issue 7): with the routing cache warm
and a key used within the last minute, a new event is the key lookup, the routing version, the
event INSERT and one bulk INSERT of its deliveries, whatever the number of endpoints. Statement
counts, not timings: timings belong in ``bench/``. The per-key rate limit is switched off here:
its counters live in the cache (Redis in production; the database only without ``REDIS_URL``)."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from events import services as event_services
from vocelio_webhooks.models import ApiKey

LEAD = {"lead": {"id": "l1", "score": 90}}


def _statements(queries) -> list[str]:
    """The statements sent, without transaction control (the test's own transaction makes the
    service's BEGIN/COMMIT savepoints)."""
    skipped = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")
    return [q["sql"] for q in queries.captured_queries if not q["sql"].upper().startswith(skipped)]


def _publish(api, event_id: str):
    return api.post("/events/publish", {"event_type": "lead.created", "event_id": event_id, "data": LEAD},
                    format="json")


@pytest.mark.parametrize("endpoints", [1, 10, 100])
def test_publish_costs_one_insert_of_all_deliveries_whatever_the_fan_out(api, settings, endpoints):
    # given: endpoints, some with a payload filter, and one publish that warmed the cache
    settings.WEBHOOK_PUBLISH_RATE_PER_MINUTE = 0
    settings.WEBHOOK_MAX_QUEUE_SIZE = 0  # its count runs once a second, not per publish: keep it out
    WebhookEndpoint.objects.bulk_create([
        WebhookEndpoint(name=f"e{n}", url=f"https://e{n}.example.com/h", events=["lead.*"],
                        filters=[{"field_path": "data.lead.score", "operator": "greater_than", "value": 50}]
                        if n % 2 else None)
        for n in range(endpoints)])
    assert endpoints == 1 or WebhookEndpoint.objects.exclude(filters=None).exists()
    assert _publish(api, "evt_warm").status_code == 202

    # when
    with CaptureQueriesContext(connection) as queries:
        response = _publish(api, "evt_measured")

    # then
    assert response.status_code == 202, response.content
    assert len(response.json()["deliveries"]) == endpoints
    statements = _statements(queries)
    assert "vocelio_webhooks_apikey" in statements[0]
    assert "endpoints_routing_version" in statements[1]
    inserts = statements[2:]
    if connection.vendor == "postgresql":  # one statement: WITH ev AS (INSERT event) INSERT deliveries
        assert len(inserts) == 1, statements
        assert inserts[0].startswith('WITH ev AS (INSERT INTO "events_event"')
        assert inserts[0].count('INSERT INTO "deliveries_delivery"') == 1
    else:
        assert [s.split(" (")[0] for s in inserts] == ['INSERT INTO "events_event"',
                                                       'INSERT INTO "deliveries_delivery"'], statements


@pytest.mark.django_db(transaction=True)
def test_publish_outside_a_transaction_commits_in_one_round_trip_on_postgresql(api, settings):
    # given: autocommit, as in a web request (no test transaction around it)
    settings.WEBHOOK_PUBLISH_RATE_PER_MINUTE = 0
    settings.WEBHOOK_MAX_QUEUE_SIZE = 0  # its count runs once a second, not per publish: keep it out
    WebhookEndpoint.objects.bulk_create([
        WebhookEndpoint(name=f"e{n}", url=f"https://e{n}.example.com/h", events=["lead.*"]) for n in range(10)])
    assert _publish(api, "evt_warm").status_code == 202

    # when
    with CaptureQueriesContext(connection) as queries:
        response = _publish(api, "evt_measured")

    # then: on PostgreSQL the event and its deliveries are one self-committing statement (no
    # BEGIN/COMMIT round trips); elsewhere one transaction of two INSERTs
    assert response.status_code == 202, response.content
    sent = [q["sql"].split(" (")[0][:40] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert len(sent) == 3, sent
        assert not [s for s in sent if s.upper() in ("BEGIN", "COMMIT")], sent
    else:
        assert [s.split()[0] for s in sent[2:3]] == ["BEGIN"], sent
        assert sent[3:] == ['INSERT INTO "events_event"', 'INSERT INTO "deliveries_delivery"', "COMMIT"], sent
    assert Delivery.objects.filter(event__event_id="evt_measured").count() == 10
    # and a repeat (its INSERT fails outside any transaction) answers the first publication: the
    # same event and deliveries (their statuses may have moved on: a running worker claims them)
    again = _publish(api, "evt_measured")
    assert again.status_code == 200, again.content

    def without_statuses(answer: dict) -> dict:
        return {**answer, "deliveries": [{k: v for k, v in d.items() if k != "status"} for d in answer["deliveries"]]}

    assert without_statuses(again.json()) == without_statuses({**response.json(), "duplicate": True})


def test_publish_of_a_known_event_id_answers_the_first_publication_without_a_pre_check(api):
    # given
    WebhookEndpoint.objects.bulk_create([
        WebhookEndpoint(name=f"e{n}", url=f"https://e{n}.example.com/h", events=["lead.*"]) for n in range(3)])
    first = _publish(api, "evt_once")
    assert first.status_code == 202, first.content

    # when
    with CaptureQueriesContext(connection) as queries:
        again = _publish(api, "evt_once")

    # then: the same answer as the first one, except the status and the duplicate flag
    assert again.status_code == 200, again.content
    assert again.json() == {**first.json(), "duplicate": True}
    statements = _statements(queries)
    assert not [s for s in statements[:2] if 'FROM "events_event"' in s], "no SELECT before the INSERT"


def test_api_key_last_used_at_is_written_at_most_once_a_minute(api):
    # given: a key used just now
    assert _publish(api, "evt_first").status_code == 202
    key = ApiKey.objects.get()
    recorded = key.last_used_at
    assert recorded is not None

    # when
    with CaptureQueriesContext(connection) as queries:
        assert _publish(api, "evt_second").status_code == 202

    # then: no UPDATE of the key, and the recorded time stands
    assert not [s for s in _statements(queries) if s.startswith('UPDATE "vocelio_webhooks_apikey"')]
    assert ApiKey.objects.get().last_used_at == recorded


def test_api_key_last_used_at_is_refreshed_when_older_than_a_minute(api):
    # given
    assert _publish(api, "evt_first").status_code == 202
    long_ago = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.update(last_used_at=long_ago)

    # when
    assert _publish(api, "evt_second").status_code == 202

    # then
    assert ApiKey.objects.get().last_used_at > timezone.now() - timedelta(seconds=30)


def test_publish_stores_each_delivery_with_the_models_defaults(api):
    # given
    endpoints = WebhookEndpoint.objects.bulk_create([
        WebhookEndpoint(name=f"e{n}", url=f"https://e{n}.example.com/h", events=["lead.*"]) for n in range(3)])

    # when
    published = event_services.publish(event_type="lead.created", data=LEAD, event_id="evt_defaults")

    # then: the rows read back equal the returned deliveries, field by field, and are new pending ones
    stored = {d.pk: d for d in Delivery.objects.filter(event=published.event)}
    assert sorted(stored) == [d.pk for d in published.deliveries]
    assert {d.endpoint_id for d in published.deliveries} == {e.pk for e in endpoints}
    for delivery in published.deliveries:
        row = stored[delivery.pk]
        for field in Delivery._meta.concrete_fields:
            assert getattr(row, field.attname) == getattr(delivery, field.attname), field.name
        assert (row.status, row.attempt_count, row.is_replay, row.last_error) == ("pending", 0, False, "")
        assert row.next_attempt_at is not None and row.created_at is not None and row.updated_at is not None
        assert delivery.event is published.event
    # the event type comes from the routing cache; the fields it does not hold load on access
    assert (published.event.event_type.name, published.event.event_type.category) == ("lead.created", "lead")
