"""The worker takes the ``maintenance`` queue before ``deliveries`` (the Procfile's ``--queues``,
which the test worker uses too): found by the operators' pass, a backlog of deliveries tasks
(one bulk retry, 89,000 wake-ups) stopped every sweep, probe and roll-up for as long as it lasted
(22 minutes), because the Redis broker serves a worker's queues in the order it lists them and
``maintenance`` came last."""
import pytest
import redis
from django.conf import settings

from deliveries.models import Delivery
from deliveries.tasks import deliver, sweep_due_deliveries
from endpoints.models import WebhookEndpoint
from tests.conftest import _purge_broker, due_deliveries, wait_until


@pytest.mark.skipif(settings.CELERY_BROKER_URL.startswith("filesystem://"),
                    reason="queue order is the Redis broker's (queue_order_strategy 'priority')")
def test_the_sweep_runs_before_a_backlog_of_delivery_tasks_drains(worker, event_types, receiver):
    # given: a paused endpoint's due delivery, which the sweep holds (the visible sign that it ran)
    endpoint = WebhookEndpoint.objects.create(name="paused", url=receiver.url("/paused"), events=["lead.*"],
                                              secret="whsec_queue_order_secret_0123456789", status="paused")
    [delivery] = due_deliveries([endpoint], 1, prefix="evt_queue_order")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    # when: 3,000 delivery tasks wait on the deliveries queue (ids that exist nowhere: each a
    # quick no-op, ~6 s for the test worker's two processes), then a sweep is enqueued
    for n in range(3000):
        deliver.apply_async(args=(10**12 + n,), queue="deliveries")
    sweep_due_deliveries.apply_async()

    # then: the sweep ran (the delivery is held) while most of the backlog still waited
    try:
        wait_until(lambda: Delivery.objects.get(pk=delivery.pk).held, timeout=60)
        waiting = broker.llen("deliveries")
    finally:
        _purge_broker()  # the rest of the backlog is of no use to the next test
    assert waiting > 1000, f"the sweep ran only when {3000 - waiting} of 3,000 delivery tasks were done"
