"""Operator commands leave audit entries (actor ``command:<name>``), without personal data."""
from django.core.management import call_command
from django.utils import timezone

from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from vocelio_webhooks.models import AuditLogEntry


def test_retry_erase_and_rotate_commands_are_audited(db, event_types):
    # given
    endpoint = WebhookEndpoint.objects.create(name="e", url="https://example.com/h", events=["*"])
    event = Event.objects.create(event_id="evt_cmd", event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={"lead": {"email": "zoe@example.com"}},
                                 environment="production")
    Delivery.objects.create(event=event, endpoint=endpoint, status="dead_lettered", attempt_count=5)

    # when
    call_command("retry_deliveries", "--no-progress")
    call_command("erase_subject", "--email", "zoe@example.com", "--no-progress")
    call_command("rotate_encryption_keys")

    # then
    actors = set(AuditLogEntry.objects.values_list("actor", flat=True))
    assert {"command:retry_deliveries", "command:erase_subject", "command:rotate_encryption_keys"} <= actors
    assert "zoe@example.com" not in str(list(AuditLogEntry.objects.values_list("changes", flat=True)))
