"""The naive baseline (benchmark scenario 3): one Celery task per delivery doing single-row
writes, the way most Django webhook libraries work (django-webhook, NetBox: ``post_save`` →
``.delay()`` → load the row, send with ``requests``, ``create()`` the attempt, ``save()`` the
delivery). It builds and signs with the service's own builder, so the bytes sent are the same as
the engine's. Loaded only by the benchmark's own worker (``celery worker -I bench.naive -Q naive``).
"""
import hashlib
import threading

import requests
from django.db import transaction
from django.utils import timezone

from vocelio_webhooks.celery import app

_local = threading.local()


def publish(*, event_type, data: dict, event_id: str, endpoints: list) -> None:
    """Store the event and one delivery per endpoint with single-row inserts; one task each after commit."""
    from deliveries.models import Delivery
    from events.models import Event

    with transaction.atomic():
        event = Event.objects.create(event_id=event_id, event_type=event_type, timestamp=timezone.now(), data=data)
        for endpoint in endpoints:
            delivery = Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=timezone.now())
            transaction.on_commit(lambda pk=delivery.pk: naive_deliver.apply_async((pk,), queue="naive"))


@app.task(ignore_result=True)
def naive_deliver(delivery_id: int) -> None:
    """Load, build + sign, send, then ``create()`` the attempt and ``save()`` the delivery."""
    from deliveries.models import Delivery, DeliveryAttempt
    from deliveries.services.building import build_request

    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    delivery = Delivery.objects.select_related("endpoint", "event__event_type").get(pk=delivery_id)
    request = build_request(endpoint=delivery.endpoint, event=delivery.event, delivery_public_id=delivery.public_id,
                            attempt_number=1)
    started = timezone.now()
    response = session.post(request.url, data=request.body, headers=request.headers, timeout=(5, 15),
                            allow_redirects=False)
    ok = 200 <= response.status_code < 300
    DeliveryAttempt.objects.create(
        delivery=delivery, attempt_number=1, url=request.url, http_method=request.method,
        request_headers=request.headers, request_body=request.body.decode(), request_body_size=len(request.body),
        request_body_sha256=hashlib.sha256(request.body).hexdigest(), response_status_code=response.status_code,
        outcome="succeeded" if ok else "retry", started_at=started,
    )
    delivery.status = Delivery.Status.SUCCEEDED if ok else Delivery.Status.RETRYING
    delivery.attempt_count = 1
    delivery.last_attempt_at = delivery.completed_at = timezone.now()
    delivery.last_status_code = response.status_code
    delivery.save()
