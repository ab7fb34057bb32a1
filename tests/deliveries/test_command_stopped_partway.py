"""``retry_deliveries`` and ``replay_events`` commit in batches of 500; a run that stops part-way
(Ctrl-C, a database error) keeps the batches committed before it, and each of them must have its
audit entry (actor ``command:<name>``). The stop is a real database refusal of the second batch (a
trigger), so nothing of our stack is replaced."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import DatabaseError
from django.utils import timezone

from deliveries.management.commands.replay_events import BATCH_SIZE
from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from endpoints.signing import generate_secret
from events.models import Event, EventType
from tests.conftest import refused_by_database
from vocelio_webhooks.models import AuditLogEntry

pytestmark = pytest.mark.django_db


def _dataset(count: int, *, status: str) -> tuple[WebhookEndpoint, list[Event], list[Delivery]]:
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hook", events=["lead.*"],
                                              secret=generate_secret())
    lead_created = EventType.objects.get(name="lead.created")
    now = timezone.now()
    events = Event.objects.bulk_create([
        Event(event_id=f"evt_{n}", event_type=lead_created, timestamp=now, data={"lead": {"id": n}},
              environment="production")
        for n in range(count)
    ])
    Event.objects.update(received_at=now - timedelta(hours=1))
    deliveries = Delivery.objects.bulk_create([
        Delivery(event=event, endpoint=endpoint, status=status, attempt_count=5) for event in events
    ])
    return endpoint, events, deliveries


def _audited_ids(actor: str) -> list[int]:
    return sorted(pk for changes in AuditLogEntry.objects.filter(actor=actor).values_list("changes", flat=True)
                  for pk in changes["delivery_ids"]["new"])


def test_retry_deliveries_stopped_after_a_batch_has_that_batch_audited(event_types):
    # given: one batch and one more dead letter; the database refuses to change the last one
    endpoint, _, deliveries = _dataset(BATCH_SIZE + 1, status="dead_lettered")

    # when
    with refused_by_database("deliveries_delivery", "UPDATE", when=f"OLD.id = {deliveries[-1].pk}"), \
            pytest.raises(DatabaseError):
        call_command("retry_deliveries", "--endpoint", str(endpoint.pk), "--no-progress")

    # then: the first batch was retried and stays so, and its audit entry names exactly those
    retried = sorted(Delivery.objects.filter(status="retrying").values_list("pk", flat=True))
    assert retried == sorted(d.pk for d in deliveries[:BATCH_SIZE])
    assert _audited_ids("command:retry_deliveries") == retried


def test_replay_events_stopped_after_a_batch_has_that_batch_audited(event_types):
    # given: one batch and one more event to replay; the database refuses the last event's replay
    endpoint, events, _ = _dataset(BATCH_SIZE + 1, status="succeeded")

    # when
    with refused_by_database("deliveries_delivery", "INSERT", when=f"NEW.event_id = {events[-1].pk}"), \
            pytest.raises(DatabaseError):
        call_command("replay_events", "--endpoint", str(endpoint.pk),
                     "--since", (timezone.now() - timedelta(days=1)).isoformat(), "--no-progress")

    # then: the first batch's replays exist, and its audit entry names exactly those
    replays = sorted(Delivery.objects.filter(is_replay=True).values_list("pk", flat=True))
    assert len(replays) == BATCH_SIZE
    assert _audited_ids("command:replay_events") == replays
