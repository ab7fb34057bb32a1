"""A receiver's answer with a NUL byte is stored (PostgreSQL ``text`` refuses NUL): before, one such
answer failed the storing of its whole batch and every delivery in it stayed in flight."""
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType


def test_an_answer_with_a_nul_byte_is_stored_and_its_batch_completes(transactional_db, event_types, receiver):
    # given: two endpoints in one batch, one answering with NUL bytes in its body and a header
    receiver.script("/nul", [(200, {"X-Odd": "a\x00b"}, b"ok\x00done")])
    endpoints = [WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"), events=["lead.*"],
                                                secret="whsec_nul_test_secret_0123456789") for name in ("nul", "fine")]
    event = Event.objects.create(event_id="evt_nul_answer", event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={})
    for endpoint in endpoints:
        Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=timezone.now())

    # when
    delivery_services.deliver_due_batch()

    # then: both delivered and stored, the NUL kept visible as U+FFFD
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    stored = DeliveryAttempt.objects.get(delivery__endpoint__name="nul")
    assert stored.response_body == "ok\ufffddone"
