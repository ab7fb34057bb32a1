"""Attempts: claim a due delivery, send it, record the attempt and the next state, schedule
the retry; manual retry, cancel and test sends.

The steps are separate functions (``_claim`` → ``build_request`` → ``send_request`` →
``record_attempt``) so a later batch worker can claim many, send concurrently and record in bulk
without changing the state machine (DESIGN.md, "Scale"). Recording (``plan_attempt``,
``store_attempts``) lives in ``recording``, the wake-ups and queues in ``wakeups``.
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deliveries import sender
from deliveries.models import Delivery
from deliveries.services import health
from deliveries.services.building import (
    TransformationFailed,
    WebhookRequest,
    build_request,
    mask_headers,
)
from deliveries.services.recording import AttemptOutcome, plan_attempt, store_attempts
from deliveries.services.wakeups import (
    QUEUE_FIRST_ATTEMPTS,
    QUEUE_RETRIES,
    enqueue_delivery,
    enqueue_on_commit,
)
from endpoints import network
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from vocelio_webhooks.concurrency import Slots
from vocelio_webhooks.errors import Conflict

logger = logging.getLogger(__name__)


def send_request(*, request: WebhookRequest, endpoint: WebhookEndpoint,
                 timeout_seconds: float | None = None) -> sender.SendResult:
    """Send ``request`` for ``endpoint`` (saved or not) and return a ``sender.SendResult``; never
    raises for network trouble.

    The connection goes only to an address the SSRF guard accepts for this endpoint
    (``endpoints.network``: public addresses, those the deployment opened, within the endpoint's
    ``allowed_ip_ranges``; plain http in production only to opened ones), checked after DNS
    resolution at connect time; a refused one is ``error_class="blocked_destination"``. TLS is
    verified against the endpoint's ``ca_bundle`` when set; ``verify_ssl=False`` is honoured only
    outside production. The attempt's total deadline is the endpoint's ``timeout_seconds``, or
    ``timeout_seconds`` when given (the rest of a split batch's time budget).
    """
    from events.models import Environment

    production = endpoint.environment == Environment.PRODUCTION
    return sender.send(
        method=request.method, url=request.url, headers=request.headers, body=request.body,
        timeout_seconds=endpoint.timeout_seconds if timeout_seconds is None else timeout_seconds,
        verify=endpoint.verify_ssl or production,
        ca_bundle=endpoint.ca_bundle,
        policy=network.destination_policy(
            url=request.url, allowed_ip_ranges=endpoint.allowed_ip_ranges, production=production
        ),
    )


def postpone(*, delivery: Delivery, until: datetime, reason: str) -> None:
    """Move a waiting delivery's next attempt to ``until`` without spending an attempt (busy
    endpoint, open circuit, rate limit) and re-arm its wake-up when it is near enough."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk, status__in=Delivery.DUE_STATUSES).update(next_attempt_at=until,
                                                                                     updated_at=now)
    delay = max((until - now).total_seconds(), 0.05)
    if delay <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
        enqueue_delivery(delivery.pk, countdown=delay,
                         queue=QUEUE_RETRIES if delivery.attempt_count else QUEUE_FIRST_ATTEMPTS)
    logger.debug("Delivery %s postponed (%s) until %s", delivery.pk, reason, until)


def _claim(delivery_id: int, *, timeout_seconds: int) -> bool:
    now = timezone.now()
    claimed_until = now + timedelta(seconds=timeout_seconds + settings.WEBHOOK_CLAIM_MARGIN_SECONDS)
    updated = Delivery.objects.filter(
        pk=delivery_id, status__in=Delivery.DUE_STATUSES, next_attempt_at__lte=now
    ).update(status=Delivery.Status.IN_FLIGHT, claimed_until=claimed_until, held=False, updated_at=now)
    return updated == 1


def attempt_delivery(*, delivery_id: int) -> AttemptOutcome:
    """Make the next attempt of a delivery, if one is due. Idempotent: safe to call many times.

    Skips (returns ``status="skipped"``) a delivery that is final, held (paused/disabled
    endpoint), claimed by another worker or not yet due (a wake-up that came early is re-armed).
    Otherwise: claim → build and sign → send → record the attempt and the new state, and enqueue
    the next retry. Returns the new status and the attempt row.
    """
    delivery = Delivery.objects.select_related("endpoint", "event__event_type").filter(pk=delivery_id).first()
    if delivery is None or delivery.status not in Delivery.DUE_STATUSES or delivery.next_attempt_at is None:
        return AttemptOutcome(status="skipped")
    endpoint = delivery.endpoint
    if endpoint is None:
        cancel(delivery=delivery, reason="Endpoint deleted.")
        return AttemptOutcome(status=Delivery.Status.CANCELLED)
    if endpoint.status != WebhookEndpoint.Status.ACTIVE:
        return AttemptOutcome(status="skipped")  # held; the sweep wakes it when the endpoint is active
    remaining = (delivery.next_attempt_at - timezone.now()).total_seconds()
    if remaining > 0:
        if remaining <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
            enqueue_delivery(delivery.pk, countdown=remaining, queue=QUEUE_RETRIES if delivery.attempt_count else None)
        return AttemptOutcome(status="skipped")
    gate = health.gate_delivery(delivery=delivery, endpoint=endpoint)
    if not gate.allowed:
        postpone(delivery=delivery, until=gate.wait_until, reason=gate.reason)
        return AttemptOutcome(status="skipped")
    if not _claim(delivery.pk, timeout_seconds=endpoint.timeout_seconds):
        return AttemptOutcome(status="skipped")

    attempt_number = delivery.attempt_count + 1
    started_at = timezone.now()
    request, result = build_and_send(
        endpoint=endpoint, event=delivery.event, delivery_public_id=delivery.public_id,
        attempt_number=attempt_number, is_replay=delivery.is_replay, url=gate.url,
    )
    outcome = record_attempt(
        delivery=delivery, endpoint=endpoint, request=request, result=result,
        attempt_number=attempt_number, started_at=started_at,
    )
    health.after_attempt(delivery=delivery, endpoint=endpoint, url=request.url, status_code=result.status_code,
                         error_class=result.error_class)
    return outcome


def build_and_send(*, endpoint: WebhookEndpoint, event: Event,
                   **build_kwargs) -> tuple[WebhookRequest, sender.SendResult]:
    """Build (``build_request(**build_kwargs)``) and send one request; never raises. A template,
    signing or unexpected failure becomes a ``SendResult`` with ``error_class`` ``template_error``,
    ``signing_error`` or ``internal_error`` and no request is sent, so every claimed attempt ends
    recorded instead of stuck in flight."""
    request, failure = build_or_fail(endpoint=endpoint, event=event, **build_kwargs)
    if failure is not None:
        return request, failure
    return request, send_or_fail(request=request, endpoint=endpoint)


def build_or_fail(*, endpoint: WebhookEndpoint, event: Event, **build_kwargs) -> tuple[WebhookRequest,
                                                                                       sender.SendResult | None]:
    """The build half of ``build_and_send``: ``(request, None)``, or an unsent request and the
    failure to record. Reads the database (named templates), so the batch worker calls it in its
    own thread, never in the sending threads."""
    unsent = WebhookRequest(method=endpoint.http_method, url=build_kwargs.get("url") or endpoint.url, headers={},
                            body=None)
    try:
        return build_request(endpoint=endpoint, event=event, **build_kwargs), None
    except TransformationFailed as exc:
        return unsent, sender.SendResult(status_code=None, error_class="template_error", error_message=str(exc))
    except ValueError as exc:
        return unsent, sender.SendResult(status_code=None, error_class="signing_error", error_message=str(exc))
    except Exception as exc:  # a bug must end as a recorded attempt, not a stuck claim
        logger.exception("Building a request for endpoint %s failed", endpoint.pk)
        return unsent, sender.SendResult(status_code=None, error_class="internal_error",
                                         error_message=type(exc).__name__)


def send_or_fail(*, request: WebhookRequest, endpoint: WebhookEndpoint,
                 timeout_seconds: float | None = None) -> sender.SendResult:
    """The send half of ``build_and_send``; never raises. Thread-safe: no database access.
    ``timeout_seconds`` overrides the endpoint's deadline (``send_request``)."""
    try:
        return send_request(request=request, endpoint=endpoint, timeout_seconds=timeout_seconds)
    except Exception as exc:  # same: record it; the retry policy bounds repeats
        logger.exception("Sending a request to endpoint %s failed", endpoint.pk)
        return sender.SendResult(status_code=None, error_class="internal_error", error_message=type(exc).__name__)


def record_attempt(
    *,
    delivery: Delivery,
    endpoint: WebhookEndpoint,
    request: WebhookRequest,
    result: sender.SendResult,
    attempt_number: int,
    started_at: datetime,
) -> AttemptOutcome:
    """Store one attempt and move the delivery to its next state in one transaction, then
    enqueue the next retry after commit (``plan_attempt`` + ``store_attempts``)."""
    plan = plan_attempt(delivery=delivery, endpoint=endpoint, request=request, result=result,
                        attempt_number=attempt_number, started_at=started_at)
    return store_attempts(planned=[plan])[0]


def retry_now(*, delivery: Delivery) -> Delivery:
    """Manual retry (``POST /deliveries/retry/{id}``): make the next attempt now.

    Allowed for ``failed``, ``dead_lettered``, ``cancelled`` (one more attempt; if it fails the
    delivery returns to a final state) and for waiting ``pending``/``retrying`` deliveries
    (brought forward). Raises ``Conflict`` (409) for ``succeeded`` or ``in_flight`` deliveries and
    for deliveries whose endpoint was deleted. Earlier attempts are never rewritten.
    """
    with transaction.atomic():
        locked = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if locked.status in (Delivery.Status.SUCCEEDED, Delivery.Status.IN_FLIGHT):
            raise Conflict(
                f"Delivery {locked.public_id} is {locked.status} and cannot be retried.",
                details={"delivery_id": locked.pk, "status": locked.status},
                code="DELIVERY_NOT_RETRYABLE",
            )
        if locked.endpoint_id is None:
            raise Conflict("The delivery's endpoint was deleted.", details={"delivery_id": locked.pk},
                           code="ENDPOINT_DELETED")
        now = timezone.now()
        locked.status = Delivery.Status.RETRYING if locked.attempt_count else Delivery.Status.PENDING
        locked.next_attempt_at = now
        locked.completed_at = None
        locked.held = False  # claimable at once; the sweep holds it again if its endpoint is paused
        locked.save(update_fields=["status", "next_attempt_at", "completed_at", "held", "updated_at"])
        enqueue_on_commit(locked.pk)
    return locked


def cancel(*, delivery: Delivery, reason: str) -> Delivery:
    """Cancel a delivery that is not final yet (``pending``/``retrying``); no-op otherwise."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk, status__in=Delivery.DUE_STATUSES).update(
        status=Delivery.Status.CANCELLED, last_error=reason, completed_at=now, next_attempt_at=None, updated_at=now
    )
    delivery.refresh_from_db()
    return delivery


@dataclass(frozen=True)
class TestSendResult:
    """Result of a test send: the receiver's answer and the request as sent (credentials masked)."""

    success: bool
    request: WebhookRequest
    result: sender.SendResult
    event_id: str


def send_test(*, endpoint: WebhookEndpoint, event_type: EventType, data: dict | None = None) -> TestSendResult:
    """Send one signed test event to ``endpoint`` (saved or not) and return the receiver's answer.

    The event is ``event_type`` with ``data`` (default: the type's ``sample_data``), a fresh
    ``evt_test_…`` id and ``metadata.test = true``. Nothing is stored and nothing is retried.
    """
    import secrets

    event = Event(
        event_id=f"evt_test_{secrets.token_hex(8)}", event_type=event_type, timestamp=timezone.now(),
        data=event_type.sample_data if data is None else data, metadata={"test": True},
    )
    request, result = build_and_send(
        endpoint=endpoint, event=event, delivery_public_id=f"dlv_test_{secrets.token_hex(6)}", attempt_number=1
    )
    success = result.status_code is not None and 200 <= result.status_code < 300
    masked = WebhookRequest(method=request.method, url=request.url, headers=mask_headers(request.headers),
                            body=request.signed_body or request.body)
    return TestSendResult(success=success, request=masked, result=result, event_id=event.event_id)


_TEST_SEND_SLOTS = Slots()


def send_test_bounded(*, endpoint: WebhookEndpoint, event_type: EventType, data: dict | None = None) -> TestSendResult:
    """``send_test`` within this process's bound of ``WEBHOOK_MAX_CONCURRENT_TEST_SENDS`` test sends
    at once (the API's ``/test`` routes and the admin's test action share it); beyond it, raises
    ``vocelio_webhooks.concurrency.Busy`` at once (429 ``TEST_SEND_BUSY``, ``retry_after`` the
    seconds until an in-flight one must have ended).

    Why synchronous at all: Svix and Stripe send test events through their queue and the caller
    reads the outcome later; our ``/test`` answers with the receiver's status and body in the same
    call, which is what makes it a debugging tool (and the seed's contract), so we keep it. The
    price is a web thread held for up to the endpoint's timeout (60 s at most): eight test sends
    to a receiver that never answers took all of gunicorn's 2 x 4 threads and ``/health`` timed
    out. The bound keeps the other threads for the rest of the API."""
    with _TEST_SEND_SLOTS.hold(
        limit=settings.WEBHOOK_MAX_CONCURRENT_TEST_SENDS, seconds=endpoint.timeout_seconds + 1, code="TEST_SEND_BUSY",
        message="Too many test sends are in progress; retry after the time in Retry-After.",
    ):
        return send_test(endpoint=endpoint, event_type=event_type, data=data)
