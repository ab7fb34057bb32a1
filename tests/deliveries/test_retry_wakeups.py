"""A bulk retry (``retry_deliveries``, ``POST /deliveries/retry``) wakes only deliveries an active
endpoint can take now. A paused endpoint's deliveries wait for the sweep: one ``deliver`` task per
delivery did nothing for them, and 20,000 such tasks (one bulk retry) held the workers on the
``deliveries`` queue for minutes, while the ``maintenance`` queue behind it ran no sweep."""
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from endpoints.signing import generate_secret
from events.models import Event, EventType
from tests.conftest import _purge_broker


def _tasks_waiting() -> list[str]:
    """The names of the delivery tasks waiting in the broker (``deliveries.tasks.deliver`` for
    one delivery, ``deliveries.tasks.deliver_due`` for a batch wake-up): Redis lists in CI, the
    embedded filesystem broker's message files otherwise."""
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        messages = [json.loads(path.read_text()) for path in folder.iterdir() if path.is_file()]
    else:
        import redis

        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        messages = [json.loads(raw) for queue in ("priority", "deliveries", "retries")
                    for raw in broker.lrange(queue, 0, -1)]
    return sorted(m["headers"]["task"] for m in messages if m["headers"]["task"].startswith("deliveries.tasks.deliver"))


def _tasks_by_queue() -> dict[str, list[str]]:
    """The delivery tasks waiting, by queue (``routing_key`` on Redis, the file's queue on the
    embedded broker); queues without any are left out."""
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        messages = [json.loads(path.read_text()) for path in folder.iterdir() if path.is_file()]
        pairs = [(m["properties"]["delivery_info"]["routing_key"], m["headers"]["task"]) for m in messages]
    else:
        import redis

        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        pairs = [(queue, json.loads(raw)["headers"]["task"]) for queue in ("priority", "deliveries", "retries")
                 for raw in broker.lrange(queue, 0, -1)]
    found: dict[str, list[str]] = {}
    for queue, task in pairs:
        if task.startswith("deliveries.tasks.deliver"):
            found.setdefault(queue, []).append(task)
    return found


def _dead_letter(endpoint: WebhookEndpoint, event_id: str) -> Delivery:
    event = Event.objects.create(event_id=event_id, event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={}, environment="production")
    return Delivery.objects.create(event=event, endpoint=endpoint, status="dead_lettered", attempt_count=5)


@pytest.fixture
def empty_broker():
    _purge_broker()
    yield
    _purge_broker()


def test_bulk_retry_wakes_only_deliveries_of_active_endpoints(transactional_db, event_types, empty_broker):
    # given: dead letters of a paused endpoint and one of an active endpoint
    paused = WebhookEndpoint.objects.create(name="paused", url="https://paused.example.com/h", events=["*"],
                                            secret=generate_secret(), status="paused")
    active = WebhookEndpoint.objects.create(name="active", url="https://active.example.com/h", events=["*"],
                                            secret=generate_secret())
    for n in range(3):
        _dead_letter(paused, f"evt_paused_{n}")
    _dead_letter(active, "evt_active")

    # when
    call_command("retry_deliveries", "--no-progress")

    # then: all four are retried, and the batch engine is woken once, for the active endpoint's
    # delivery (no task per delivery); the paused endpoint's wait, for the sweep to hold them and
    # to send them once it is resumed
    assert set(Delivery.objects.values_list("status", flat=True)) == {"retrying"}
    assert _tasks_waiting() == ["deliveries.tasks.deliver_due"]


def test_bulk_retry_wakes_the_batch_engine_once_per_batch_not_once_per_delivery(transactional_db, event_types,
                                                                                empty_broker, settings):
    # given: 120 dead letters of an active endpoint, batches of 50
    settings.WEBHOOK_BATCH_SIZE = 50
    endpoint = WebhookEndpoint.objects.create(name="bulk", url="https://bulk.example.com/h", events=["*"],
                                              secret=generate_secret())
    for n in range(120):
        _dead_letter(endpoint, f"evt_bulk_{n}")

    # when
    call_command("retry_deliveries", "--no-progress")

    # then: three wake-ups (120 / 50, rounded up), no task per delivery
    assert Delivery.objects.filter(status="retrying").count() == 120
    assert _tasks_waiting() == ["deliveries.tasks.deliver_due"] * 3


def test_replay_wakes_the_batch_engine_once_per_batch(transactional_db, event_types, empty_broker, settings):
    # given: 60 succeeded deliveries of an active endpoint
    settings.WEBHOOK_BATCH_SIZE = 50
    endpoint = WebhookEndpoint.objects.create(name="replayed", url="https://replayed.example.com/h", events=["*"],
                                              secret=generate_secret())
    for n in range(60):
        Delivery.objects.filter(pk=_dead_letter(endpoint, f"evt_replay_{n}").pk).update(status="succeeded")

    # when
    call_command("replay_events", "--endpoint", str(endpoint.pk), "--since", "2000-01-01", "--no-progress")

    # then: 60 replays, two wake-ups
    assert Delivery.objects.filter(is_replay=True, status="pending").count() == 60
    assert _tasks_waiting() == ["deliveries.tasks.deliver_due"] * 2


def test_bulk_retry_and_replay_of_a_high_priority_type_wake_the_priority_queue(transactional_db, event_types,
                                                                               empty_broker):
    # given: one dead letter of a high-priority event type and one of an ordinary type
    EventType.objects.filter(name="lead.created").update(is_high_priority=True)
    endpoint = WebhookEndpoint.objects.create(name="both", url="https://both.example.com/h", events=["*"],
                                              secret=generate_secret())
    urgent = _dead_letter(endpoint, "evt_urgent")
    ordinary_event = Event.objects.create(event_id="evt_ordinary", event_type=EventType.objects.get(name="call.ended"),
                                          timestamp=timezone.now(), data={}, environment="production")
    Delivery.objects.create(event=ordinary_event, endpoint=endpoint, status="dead_lettered", attempt_count=5)

    # when
    call_command("retry_deliveries", "--no-progress")

    # then: one wake-up on each queue (a priority wake-up claims only high-priority deliveries)
    assert _tasks_by_queue() == {"priority": ["deliveries.tasks.deliver_due"],
                                 "deliveries": ["deliveries.tasks.deliver_due"]}

    # when: the urgent event replayed
    _purge_broker()
    Delivery.objects.filter(pk=urgent.pk).update(status="succeeded")
    call_command("replay_events", "--event-id", "evt_urgent", "--no-progress")

    # then
    assert _tasks_by_queue() == {"priority": ["deliveries.tasks.deliver_due"]}
