"""Held deliveries (issue 7): the beat sweep holds the due deliveries of paused and disabled
endpoints, so the claim's scan no longer walks them, and releases them once the endpoint is active
again (``deliveries.services.sweep.hold_and_release``)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery
from endpoints import services as endpoint_services
from endpoints.models import WebhookEndpoint
from tests.conftest import due_deliveries, locked_elsewhere, refused_by_database, wait_until
from tests.deliveries.test_claim_statements import claim_and_explain, index_scans, rows_read
from tests.deliveries.test_delivery_flow import create_endpoint, delivery_when, publish


def _endpoint(receiver, name, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"), events=["lead.*"],
                                          secret="whsec_held_test_secret_0123456789", **fields)


def _held(ids) -> list[bool]:
    return list(Delivery.objects.filter(pk__in=ids).order_by("pk").values_list("held", flat=True))


def test_sweep_holds_a_paused_endpoints_deliveries_and_releases_them_when_it_is_active(event_types, receiver):
    # given: a paused endpoint with three due deliveries, an active one with two
    paused = _endpoint(receiver, "paused", status="paused")
    waiting = [d.pk for d in due_deliveries([paused], 3)]
    active = [d.pk for d in due_deliveries([_endpoint(receiver, "active")], 2)]

    # when
    first = delivery_services.sweep_due_deliveries()

    # then: the paused endpoint's rows are held, the active one's are not, and nothing else changed
    assert (first.held, first.released) == (3, 0)
    assert _held(waiting) == [True, True, True]
    assert _held(active) == [False, False]
    assert set(Delivery.objects.filter(pk__in=waiting).values_list("status", flat=True)) == {"pending"}

    # when: the endpoint is resumed, and the next sweep runs
    endpoint_services.set_status(endpoint=paused, status="active")
    second = delivery_services.sweep_due_deliveries()

    # then: released, and claimed like any other due delivery (oldest first)
    assert (second.held, second.released) == (0, 3)
    assert _held(waiting) == [False, False, False]
    assert delivery_services.claim_due(limit=50) == sorted(waiting + active)


def test_claim_due_leaves_a_held_delivery_until_the_sweep_releases_it(event_types, receiver):
    # given: a held row of an active endpoint (resumed after the sweep held it, before the next sweep)
    endpoint = _endpoint(receiver, "resumed", status="paused")
    [delivery] = due_deliveries([endpoint], 1)
    delivery_services.sweep_due_deliveries()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(status="active")

    # when
    before = delivery_services.claim_due(limit=50)
    released = delivery_services.sweep_due_deliveries().released
    after = delivery_services.claim_due(limit=50)

    # then
    assert (before, released, after) == ([], 1, [delivery.pk])


def test_sweep_holds_disabled_endpoints_and_leaves_final_deliveries_alone(event_types, receiver):
    # given: a disabled endpoint with a due delivery and a dead-lettered one
    endpoint = _endpoint(receiver, "disabled", status="disabled")
    due, dead = due_deliveries([endpoint], 2)
    Delivery.objects.filter(pk=dead.pk).update(status="dead_lettered", next_attempt_at=None)

    # when
    result = delivery_services.sweep_due_deliveries()

    # then
    assert result.held == 1
    assert _held([due.pk, dead.pk]) == [True, False]


def test_retry_of_a_held_delivery_makes_it_claimable_at_once(event_types, receiver):
    # given: a delivery held while its endpoint was paused, cancelled, then the endpoint resumed
    endpoint = _endpoint(receiver, "retried", status="paused")
    [delivery] = due_deliveries([endpoint], 1)
    delivery_services.sweep_due_deliveries()
    delivery_services.cancel(delivery=delivery, reason="test")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(status="active")

    # when
    delivery_services.retry_now(delivery=Delivery.objects.get(pk=delivery.pk))

    # then: no sweep needed
    assert _held([delivery.pk]) == [False]
    assert delivery_services.claim_due(limit=50) == [delivery.pk]


def test_sweep_hold_is_bounded_per_run(event_types, receiver):
    # given
    endpoint = _endpoint(receiver, "bounded", status="paused")
    ids = [d.pk for d in due_deliveries([endpoint], 5)]

    # when
    first = delivery_services.hold_and_release(limit=3)
    second = delivery_services.hold_and_release(limit=3)

    # then
    assert (first, second) == ((3, 0), (2, 0))
    assert _held(ids) == [True] * 5


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")
@pytest.mark.parametrize("per_endpoint", [True, False], ids=["per-endpoint claim", "oldest-first scan"])
def test_claim_scan_reads_no_held_row(event_types, receiver, settings, per_endpoint):
    # given: 60 held deliveries of a paused endpoint, older than 5 of an active one; either claim
    # statement (deliveries.services.claim picks by the number of active endpoints)
    settings.WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS = 1000 if per_endpoint else 0
    paused = _endpoint(receiver, "paused", status="paused")
    old = timezone.now() - timezone.timedelta(hours=1)
    due_deliveries([paused], 60)
    Delivery.objects.filter(endpoint=paused).update(next_attempt_at=old)
    active = [d.pk for d in due_deliveries([_endpoint(receiver, "active")], 5)]
    if per_endpoint:  # the per-endpoint statement is used while some endpoint is at its cap
        settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 1
        busy = due_deliveries([_endpoint(receiver, "busy")], 1)
        Delivery.objects.filter(pk=busy[0].pk).update(status="in_flight",
                                                      claimed_until=timezone.now() + timezone.timedelta(minutes=5))
    delivery_services.sweep_due_deliveries()

    # when: the claim's own statements, replayed under EXPLAIN ANALYZE
    claimed, plan = claim_and_explain()
    scans = index_scans(plan)

    # then: the scan of the claim's index met only the active endpoint's rows
    index = "delivery_endpoint_due_idx" if per_endpoint else "delivery_claim_order_idx"
    assert any(n["Index Name"] == index for n in scans)
    assert rows_read(scans, index) <= 5
    assert claimed == (active[:1] if per_endpoint else active)  # a cap of 1 in the per-endpoint case


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")
def test_sweep_does_not_wait_for_an_endpoint_locked_elsewhere(transactional_db, event_types, receiver):
    # given: a paused endpoint with a due delivery, its row locked by another transaction
    endpoint = _endpoint(receiver, "locked", status="paused")
    [delivery] = due_deliveries([endpoint], 1)

    # when
    with locked_elsewhere(WebhookEndpoint.objects.filter(pk=endpoint.pk)):
        first = delivery_services.hold_and_release()

    # then: skipped, not waited for; held by the next run
    assert first == (0, 0)
    assert delivery_services.hold_and_release() == (1, 0)
    assert _held([delivery.pk]) == [True]


def test_paused_endpoint_deliveries_are_held_then_sent_after_resume(api, receiver, worker):
    # given: a paused endpoint, an event published to it, and a sweep that held its delivery
    endpoint = create_endpoint(api, receiver)
    assert api.put(f"/endpoints/{endpoint['id']}/status", {"status": "paused"}, format="json").status_code == 200
    published = publish(api)
    assert delivery_services.sweep_due_deliveries().held == 1

    # when
    api.put(f"/endpoints/{endpoint['id']}/status", {"status": "active"}, format="json")
    assert delivery_services.sweep_due_deliveries().released == 1
    wait_until(lambda: delivery_services.sweep_due_deliveries().enqueued or receiver.for_path("/hook"), timeout=15)

    # then
    receiver.wait_for(1)
    delivery_when(api, published["deliveries"][0]["id"], "succeeded")


def test_publish_is_not_refused_for_deliveries_held_for_a_paused_endpoint(api, receiver, settings, monkeypatch):
    # given: a limit of 2 waiting deliveries, and 3 waiting for a paused endpoint (held by the sweep)
    from events import services as event_services

    settings.WEBHOOK_MAX_QUEUE_SIZE = 2
    due_deliveries([_endpoint(receiver, "paused", status="paused")], 3)
    delivery_services.sweep_due_deliveries()
    monkeypatch.setattr(event_services, "_queue_size_seen", (0.0, 0))  # count now, restored after

    # when
    accepted = api.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")
    Delivery.objects.filter(held=True).update(held=False)  # as before the sweep held them
    monkeypatch.setattr(event_services, "_queue_size_seen", (0.0, 0))
    refused = api.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")

    # then
    assert accepted.status_code == 202
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "QUEUE_FULL"


def test_release_after_a_resume_leaves_room_under_the_queue_limit(event_types, receiver, settings):
    # given: a limit of 10 waiting deliveries, none waiting, and 12 held for an endpoint resumed since
    settings.WEBHOOK_MAX_QUEUE_SIZE = 10
    endpoint = _endpoint(receiver, "backlog", status="paused")
    due_deliveries([endpoint], 12)
    delivery_services.hold_and_release()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(status="active")

    # when
    first = delivery_services.hold_and_release()
    second = delivery_services.hold_and_release()

    # then: half the room under the limit each time (10 // 2, then (10 - 5) // 2), so publishing is
    # never refused for the released backlog
    assert (first, second) == ((0, 5), (0, 2))
    assert Delivery.objects.filter(held=False).count() == 7


def test_a_failing_hold_is_logged_and_the_rest_of_the_sweep_still_runs(transactional_db, event_types, receiver,
                                                                       caplog):
    # given: a paused endpoint's due delivery (to be held), an active endpoint's delivery whose
    # worker died mid-attempt (to be recovered) and one whose wake-up was lost (to be enqueued),
    # and a database that refuses every hold
    now = timezone.now()
    [paused] = due_deliveries([_endpoint(receiver, "paused", status="paused")], 1)
    abandoned, lost = due_deliveries([_endpoint(receiver, "active")], 2)
    Delivery.objects.filter(pk=abandoned.pk).update(status="in_flight", claimed_until=now - timedelta(minutes=1))
    Delivery.objects.filter(pk=lost.pk).update(next_attempt_at=now - timedelta(minutes=5))
    # when
    with refused_by_database("deliveries_delivery", "UPDATE", when="NEW.held <> OLD.held", message="holding refused"), \
            caplog.at_level("ERROR", logger="deliveries.services.sweep"):
        result = delivery_services.sweep_due_deliveries()

    # then: nothing held, the failure logged with its cause, and steps 1-3 done all the same
    assert (result.held, result.released) == (0, 0)
    assert _held([paused.pk]) == [False]
    [record] = [r for r in caplog.records if "holding and releasing deliveries failed" in r.getMessage()]
    assert "holding refused" in str(record.exc_info[1])
    assert (result.recovered, result.enqueued) == (1, 1)
    assert Delivery.objects.get(pk=abandoned.pk).status == "pending"
    assert Delivery.objects.get(pk=lost.pk).next_attempt_at >= now

    # and: the next sweep, with the database accepting holds again, holds the paused endpoint's row
    assert delivery_services.sweep_due_deliveries().held == 1
    assert _held([paused.pk]) == [True]
