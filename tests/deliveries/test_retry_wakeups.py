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


def _deliver_tasks_waiting() -> list[str]:
    """The ``argsrepr`` (``"(<delivery id>,)"``) of every ``deliver`` task waiting in the broker:
    Redis lists in CI, the embedded filesystem broker's message files otherwise."""
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        messages = [json.loads(path.read_text()) for path in folder.iterdir() if path.is_file()]
    else:
        import redis

        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        messages = [json.loads(raw) for queue in ("priority", "deliveries", "retries")
                    for raw in broker.lrange(queue, 0, -1)]
    return sorted(m["headers"]["argsrepr"] for m in messages if m["headers"]["task"] == "deliveries.tasks.deliver")


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
    woken = _dead_letter(active, "evt_active")

    # when
    call_command("retry_deliveries", "--no-progress")

    # then: all four are retried, and only the active endpoint's delivery has a wake-up; the
    # paused endpoint's wait, for the sweep to hold them and to send them once it is resumed
    assert set(Delivery.objects.values_list("status", flat=True)) == {"retrying"}
    assert _deliver_tasks_waiting() == [f"({woken.pk},)"]
