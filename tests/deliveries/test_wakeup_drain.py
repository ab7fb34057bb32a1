"""One ``deliver_due`` wake-up drains a backlog (issue 7): it keeps claiming while its batches
come back full, for up to ``WEBHOOK_WAKEUP_BUDGET_SECONDS``, and stops early for a waiting
priority wake-up (or when it cannot tell: wake-ups not counted in Redis)."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery
from deliveries.services import wakeups
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from tests.conftest import due_deliveries, wait_until


def _needs_counted_wakeups() -> None:
    if not isinstance(caches["default"], RedisCache):
        pytest.skip("waiting wake-ups are counted in the Redis cache (REDIS_URL); without it a wake-up takes one batch")


def _backlog(receiver, count: int) -> list[int]:
    endpoint = WebhookEndpoint.objects.create(name=f"drain-{secrets.token_hex(3)}", url=receiver.url("/drain"),
                                              events=["lead.*"], secret="whsec_drain_test_secret_0123456789")
    return [d.pk for d in due_deliveries([endpoint], count, prefix="evt_drain")]


def test_one_wakeup_keeps_claiming_while_its_batches_are_full(transactional_db, event_types, receiver, settings):
    _needs_counted_wakeups()
    # given: 7 due deliveries and batches of 2
    settings.WEBHOOK_BATCH_SIZE = 2
    settings.WEBHOOK_WAKEUP_BUDGET_SECONDS = 60  # the budget has its own test; a busy machine must not end this one
    ids = _backlog(receiver, 7)

    # when: one wake-up runs
    result = delivery_services.run_wakeup()

    # then: it took all of them, in batches of 2, 2, 2 and a short one of 1 that ended it
    assert result.claimed == 7
    receiver.wait_for(7, path="/drain", timeout=15)
    assert sorted(int(r.header("X-Vocelio-Delivery-Id").removeprefix("dlv_")) for r in receiver.requests) == ids
    wait_until(lambda: set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"succeeded"})


@pytest.mark.parametrize("setting", [
    "WEBHOOK_WAKEUP_BUDGET_SECONDS",  # no time to drain
    "WEBHOOK_MAX_PENDING_WAKEUPS",  # wake-ups not counted (as without a Redis cache): a waiting
])                                  # priority wake-up could not be seen, so no drain either
def test_a_wakeup_takes_one_batch_without_budget_or_counted_wakeups(transactional_db, event_types, receiver,
                                                                    settings, setting):
    # given: 7 due deliveries, batches of 2, and the setting at 0
    settings.WEBHOOK_BATCH_SIZE = 2
    setattr(settings, setting, 0)
    _backlog(receiver, 7)

    # when
    result = delivery_services.run_wakeup()

    # then: one batch, as one wake-up per batch did before
    assert result.claimed == 2


def test_an_ordinary_wakeup_stops_draining_when_a_priority_wakeup_waits(transactional_db, event_types, receiver,
                                                                         settings):
    _needs_counted_wakeups()
    import redis

    # given: a backlog, and one priority wake-up waiting in the broker (its counter is 1)
    settings.WEBHOOK_BATCH_SIZE = 2
    _backlog(receiver, 7)
    counter = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    key = caches["default"].make_key(wakeups._PENDING_WAKEUPS_KEY.format(queue=wakeups.QUEUE_PRIORITY))
    counter.set(key, 1, ex=10)
    try:
        # when: an ordinary wake-up runs
        result = delivery_services.run_wakeup()

        # then: it gave its worker process up after one batch, so the priority wake-up can start
        assert result.claimed == 2
    finally:
        counter.delete(key)


def test_a_priority_drain_that_ends_empty_still_wakes_the_ordinary_deliveries_it_held_back(event_types, receiver,
                                                                                             worker, settings):
    # given: one endpoint with 2 high-priority deliveries and 1 ordinary one, all due, batches of 2,
    # and no wake-up waiting for the ordinary one: the state after its own wake-up ran while the
    # priority batch held the endpoint's in-flight cap, claimed nothing and so ended its chain
    settings.WEBHOOK_BATCH_SIZE = 2
    EventType.objects.filter(name="system.error").update(is_high_priority=True)
    endpoint = WebhookEndpoint.objects.create(name="held", url=receiver.url("/held"), events=["*"],
                                              secret="whsec_drain_test_secret_0123456789")
    now = timezone.now()

    def due(type_name: str) -> Delivery:
        event = Event.objects.create(event_id=f"evt_held_{secrets.token_hex(6)}",
                                     event_type=EventType.objects.get(name=type_name), timestamp=now, data={})
        return Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=now)

    urgent = [due("system.error") for _ in range(2)]
    ordinary = due("lead.created")

    # when: the priority wake-up runs (a full batch of 2, then a batch that claims nothing)
    result = delivery_services.run_wakeup(high_priority_only=True)

    # then: the ordinary delivery follows within seconds, without the sweep (no beat in the tests)
    assert result.claimed == 2
    got = receiver.wait_for(3, path="/held", timeout=10)
    assert {r.header("X-Vocelio-Delivery-Id") for r in got} == {d.public_id for d in [*urgent, ordinary]}


@pytest.mark.parametrize("name", ["WEBHOOK_BATCH_SIZE", "WEBHOOK_MAX_CONCURRENT_DELIVERIES"])
def test_settings_refuse_a_batch_engine_size_below_one(name):
    # given: a batch size of 0 used to be accepted, and every publish then stored its event and
    # answered 500 (a division by zero when counting its wake-ups)
    environment = {**os.environ, "SECRET_KEY": "test-only", name: "0",
                   "DJANGO_SETTINGS_MODULE": "vocelio_webhooks.settings"}

    # when: the settings load (as at the start of web, worker and beat)
    result = subprocess.run([sys.executable, "-c", "from django.conf import settings; settings.DEBUG"], check=False,
                            cwd=Path(__file__).resolve().parents[2], env=environment, capture_output=True,
                            text=True, timeout=60)

    # then: start-up fails, naming the setting
    assert result.returncode != 0
    assert f"{name} must be at least 1, not 0." in result.stderr
