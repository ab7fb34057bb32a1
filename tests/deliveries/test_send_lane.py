"""The send lane (``deliveries/services/lane.py``): a batch's requests go out one after another on
one connection while the receivers keep pace, and each gets its own thread once they do not."""
from datetime import timedelta
from itertools import pairwise

from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services import lane, sending
from endpoints.models import WebhookEndpoint
from tests.conftest import due_deliveries, wait_until


def _endpoint(receiver, name) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"), events=["lead.*"],
                                          secret="whsec_lane_test_secret_0123456789", timeout_seconds=10)


def _received(receiver, endpoints) -> list:
    return [r for e in endpoints for r in receiver.for_path(f"/{e.name}")]


def test_fast_receivers_get_a_batch_one_request_after_another_over_one_connection(transactional_db, event_types,
                                                                                  receiver, monkeypatch):
    # given: 3 events to 4 endpoints on one receiver that answers at once (and a grace a busy test
    # machine cannot exceed: falling behind is the next test's subject)
    monkeypatch.setattr(lane, "LANE_GRACE_SECONDS", 5.0)
    endpoints = [_endpoint(receiver, f"lane-fast{n}") for n in range(4)]
    due_deliveries(endpoints, 3, prefix="evt_lane")

    # when: one batch
    result = delivery_services.deliver_due_batch()

    # then: all 12 sent and stored, over a single keep-alive connection (one thread per send would
    # have opened one connection per thread)
    assert (result.claimed, result.sent) == (12, 12)
    wait_until(
        lambda: DeliveryAttempt.objects.filter(outcome="succeeded", delivery__endpoint__in=endpoints).count() == 12)
    received = _received(receiver, endpoints)
    assert len(received) == 12
    assert len({r.client_port for r in received}) == 1, sorted(r.client_port for r in received)


def test_a_receiver_that_falls_behind_hands_the_rest_of_the_batch_to_a_thread_each(transactional_db, event_types,
                                                                                   receiver):
    # given: 6 deliveries to a receiver that takes 1 s to answer
    slow = _endpoint(receiver, "lane-behind")
    receiver.hang_seconds["/lane-behind"] = 1.0
    due_deliveries([slow], 6, prefix="evt_lane_behind")

    # when
    delivery_services.deliver_due_batch()

    # then: the lane sent the first and gave the other five a connection each at once: all six
    # arrived well within the 1 s a second request on the lane would have waited
    received = receiver.wait_for(6, path="/lane-behind")
    arrivals = sorted(r.received_at for r in received)
    assert arrivals[-1] - arrivals[0] < 0.9, [round(t - arrivals[0], 3) for t in arrivals]  # the lane: >= 1 s
    assert len({r.client_port for r in received}) == 6
    wait_until(lambda: set(Delivery.objects.filter(endpoint=slow).values_list("status", flat=True)) == {"succeeded"},
               timeout=15)
    assert sending.drain_sends(timeout_seconds=5) == 0  # every send stored and counted off


def test_a_receiver_known_to_be_slow_gets_a_thread_per_send_without_waiting_for_the_lane(transactional_db,
                                                                                        event_types, receiver,
                                                                                        monkeypatch):
    # given: a receiver that took 0.3 s to answer last time, 4 deliveries to it due, and a lane
    # that would keep every send (a grace longer than the answers)
    slow = _endpoint(receiver, "lane-known-slow")
    receiver.hang_seconds["/lane-known-slow"] = 0.3
    due_deliveries([slow], 1, prefix="evt_lane_known")
    delivery_services.deliver_due_batch()
    wait_until(lambda: Delivery.objects.filter(status="succeeded", endpoint=slow).count() == 1)
    due_deliveries([slow], 4, prefix="evt_lane_known_next")
    monkeypatch.setattr(lane, "LANE_GRACE_SECONDS", 5.0)
    receiver.requests.clear()

    # when
    delivery_services.deliver_due_batch()

    # then: all four were sent at once, each on its own connection (in the lane they would have
    # followed each other 0.3 s apart)
    received = receiver.wait_for(4, path="/lane-known-slow")
    arrivals = sorted(r.received_at for r in received)
    assert arrivals[-1] - arrivals[0] < 0.6, [round(t - arrivals[0], 3) for t in arrivals]  # the lane: >= 0.9 s
    assert len({r.client_port for r in received}) == 4
    wait_until(lambda: Delivery.objects.filter(status="succeeded", endpoint=slow).count() == 5, timeout=15)


def test_the_lane_takes_receivers_that_answered_fast_before_older_deliveries_to_a_slow_one(transactional_db,
                                                                                         event_types, receiver,
                                                                                         monkeypatch):
    # given: the worker has seen one fast and one slow (0.2 s) receiver answer once ...
    fast, slow = _endpoint(receiver, "lane-order-fast"), _endpoint(receiver, "lane-order-slow")
    receiver.hang_seconds["/lane-order-slow"] = 0.2
    due_deliveries([fast, slow], 1, prefix="evt_lane_seen")
    delivery_services.deliver_due_batch()
    wait_until(lambda: Delivery.objects.filter(status="succeeded", endpoint__in=[fast, slow]).count() == 2)
    # ... 3 deliveries to the slow one are now due, older than 3 to the fast one, and the lane
    # takes and keeps every send (only the order is looked at here)
    due_deliveries([slow], 3, prefix="evt_lane_slow")
    due_deliveries([fast], 3, prefix="evt_lane_fast")
    monkeypatch.setattr(lane, "LANE_GRACE_SECONDS", 5.0)
    monkeypatch.setattr(lane, "LANE_SLOW_MS", 60_000)
    receiver.requests.clear()

    # when: one batch takes all six
    result = delivery_services.deliver_due_batch()

    # then: the fast receiver got its three before the slow one got its first (oldest first, they
    # would have waited behind three 0.2 s answers)
    assert result.claimed == 6
    fast_received = receiver.wait_for(3, path="/lane-order-fast")
    slow_received = receiver.wait_for(3, path="/lane-order-slow")
    assert max(r.received_at for r in fast_received) < min(r.received_at for r in slow_received)
    wait_until(lambda: Delivery.objects.filter(status="succeeded", endpoint__in=[fast, slow]).count() == 8,
               timeout=15)
    # and each attempt row says when its own request started, not when the batch's sends did
    starts = sorted(DeliveryAttempt.objects.filter(delivery__event__event_id__startswith="evt_lane_slow")
                    .values_list("started_at", flat=True))
    assert len(starts) == 3
    assert all(later - earlier >= timedelta(seconds=0.15) for earlier, later in pairwise(starts)), starts

