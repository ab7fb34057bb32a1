"""The batch worker's sending and storing (issue 7; the overview is ``deliveries.services.batch``'s
docstring): the process's pool of sending threads (``_executor``) and its count of sends not stored
yet (``_outstanding``, which ``_capacity`` and ``drain_sends`` read), the sends themselves
(``_send_single``, ``_send_batch`` with its ``413`` split, ``_group_for_batches``), the wait for a
batch's sends (``_wait_for_sends``), the bulk store of their attempts (``_store``), and the
recorder thread that stores the slow ones after the batch moved on (``_hand_over``,
``_record_stragglers``).

The module-level state (pool, lock, counter, queue, recorder) exists once per process: read it
through this module (``sending._outstanding``), never ``from … import`` it (a copy of an int).
"""
import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.sender import SendResult
from deliveries.services import attempts, health, lane, recording, wakeups
from deliveries.services.building import (
    BatchPart,
    WebhookRequest,
    build_batch_request,
    build_envelope,
    render_payload,
)
from endpoints import services as endpoint_services
from endpoints.models import WebhookEndpoint

logger = logging.getLogger(__name__)

# A send still running after this many seconds is left to the recorder thread, so one slow or
# hanging receiver never holds the batch (and the worker process) for its whole timeout.
STRAGGLER_WAIT_SECONDS = 0.5
# ... and once a send of the batch has finished, a send still running after this many seconds
# without any other finishing is left to it too: a batch that holds one hanging delivery among
# healthy ones is stored as soon as the healthy ones are done, instead of after the full wait
# (with up to WEBHOOK_ENDPOINT_MAX_IN_FLIGHT hanging sends per endpoint, every such batch would
# otherwise hold its worker process for 0.5 s; the isolation benchmark, scenario 7).
STRAGGLER_QUIET_SECONDS = 0.05

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_outstanding = 0  # sends submitted by this process and not stored yet
_stragglers: "queue.Queue[list[_Finished]]" = queue.Queue()  # one list per slow send
_recorder: threading.Thread | None = None


def _executor() -> ThreadPoolExecutor:
    """The process's sending pool, created on first use (after the prefork worker forked)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.WEBHOOK_MAX_CONCURRENT_DELIVERIES,
                                       thread_name_prefix="vocelio-send")
        return _pool


@dataclass(frozen=True)
class _Finished:
    delivery: Delivery
    request: WebhookRequest
    result: SendResult
    started_at: datetime


def _track(change: int) -> None:
    global _outstanding
    with _pool_lock:
        _outstanding += change


def _capacity() -> int:
    """Sending threads of this process not taken by a send that is not stored yet."""
    with _pool_lock:
        return settings.WEBHOOK_MAX_CONCURRENT_DELIVERIES - _outstanding


def _store(finished: list[_Finished]) -> None:
    """Store finished attempts in bulk (``recording.store_batch_attempts``), then apply them to the
    endpoints' health as the single path does; the store's read of the succeeded endpoints' health
    finds which of them need it (a success on a healthy endpoint changes nothing)."""
    if not finished:
        return
    planned = [recording.plan_attempt(delivery=f.delivery, endpoint=f.delivery.endpoint, request=f.request,
                                      result=f.result, attempt_number=f.delivery.attempt_count + 1,
                                      started_at=f.started_at) for f in finished]
    succeeded = {f.delivery.endpoint_id for f in finished if _is_success(f.result)}
    unhealthy = recording.store_batch_attempts(planned=planned, health_of=succeeded)
    seen: set[int] = set()
    healthy_successes: set[int] = set()
    for f in finished:
        if id(f.request) in seen:
            continue  # a batch request is one outcome for the circuit breaker, however many events it carried
        seen.add(id(f.request))
        if _is_success(f.result) and f.delivery.endpoint_id not in unhealthy:
            # A success on a healthy endpoint changes nothing but its last success's time
            # (endpoints.services.record_health), noted below for all of them at once.
            if f.request.url == f.delivery.endpoint.url:
                healthy_successes.add(f.delivery.endpoint_id)
            continue
        health.after_attempt(delivery=f.delivery, endpoint=f.delivery.endpoint, url=f.request.url,
                             status_code=f.result.status_code, error_class=f.result.error_class)
    endpoint_services.note_successes(endpoint_ids=healthy_successes)


def _is_success(result: SendResult) -> bool:
    return result.status_code is not None and 200 <= result.status_code < 300


# What one send (a thread-pool task) returns: the requests made, each with its deliveries, result
# and start (None: when the batch's sends started); more than one when a 413 answer split a batch.
_Sent = list[tuple[list[Delivery], WebhookRequest, SendResult, datetime | None]]


def _finished(future: Future, started_at: datetime) -> list[_Finished]:
    """One ``_Finished`` per delivery of a completed send: every delivery of a batch request gets
    its own attempt row with the request's answer."""
    return [_Finished(delivery, request, result, own_start or started_at)
            for deliveries, request, result, own_start in future.result() for delivery in deliveries]


def _send_single(delivery: Delivery, request: WebhookRequest) -> _Sent:
    # Its own start: the send lane makes a batch's sends one after another (lane.py).
    started_at = timezone.now()
    return [([delivery], request, attempts.send_or_fail(request=request, endpoint=delivery.endpoint), started_at)]


def _send_batch(*, deliveries: list[Delivery], parts: list[BatchPart], custom_headers: dict[str, str], url: str,
                budget_until: float, split_from: str = "") -> _Sent:
    """Send ``parts`` (the events of ``deliveries``, same endpoint and URL) as one JSON-array
    request; never raises. A ``413`` answer to more than one event splits the batch in halves
    sent again at once, recursively down to single events, without spending an attempt: each
    delivery's attempt row is the request that finally answered for it. A single event answered
    ``413`` is an ordinary failure (the retry policy decides, as for a single request).

    ``budget_until`` (``time.monotonic()``) bounds the whole send including splits, so it ends
    within the deliveries' claim; a split half left without at least one second is recorded as a
    ``timeout`` (retried as usual) instead of being sent. Runs in a sending thread: no database.
    """
    endpoint = deliveries[0].endpoint
    try:
        request = build_batch_request(endpoint=endpoint, parts=parts, custom_headers=custom_headers, url=url,
                                      split_from=split_from)
        remaining = budget_until - time.monotonic()
        if remaining < 1:
            result = SendResult(status_code=None, error_class="timeout",
                                error_message="Batch split: no time left in this attempt for this part.")
        else:
            result = attempts.send_or_fail(request=request, endpoint=endpoint,
                                           timeout_seconds=min(endpoint.timeout_seconds, remaining))
    except ValueError as exc:  # the signature method lacks its secret, as build_or_fail reports it
        request = WebhookRequest(method=endpoint.http_method, url=url, headers={}, body=None)
        result = SendResult(status_code=None, error_class="signing_error", error_message=str(exc))
    except Exception as exc:  # a bug must end as recorded attempts, not stuck claims
        logger.exception("Sending a batch to endpoint %s failed", endpoint.pk)
        request = WebhookRequest(method=endpoint.http_method, url=url, headers={}, body=None)
        result = SendResult(status_code=None, error_class="internal_error", error_message=type(exc).__name__)
    if result.status_code == 413 and len(parts) > 1:
        half = (len(parts) + 1) // 2
        parent = request.headers.get("X-Vocelio-Batch-Id", "")
        logger.info("Endpoint %s answered 413 to a batch of %s events; sending it in halves", endpoint.pk, len(parts))
        return (_send_batch(deliveries=deliveries[:half], parts=parts[:half], custom_headers=custom_headers, url=url,
                            budget_until=budget_until, split_from=parent)
                + _send_batch(deliveries=deliveries[half:], parts=parts[half:], custom_headers=custom_headers,
                              url=url, budget_until=budget_until, split_from=parent))
    return [(deliveries, request, result, None)]


def _group_for_batches(to_send: list[tuple[Delivery, str]]) -> tuple[list[tuple[Delivery, str]], list[dict]]:
    """Split gated deliveries into those sent one per request and batch requests to make.

    A delivery joins a batch when its endpoint has ``batch_max_events`` > 1, sends a body (not
    ``GET``), it is not a replay (which is marked per request) and its rendered payload is JSON;
    deliveries batch together when they go to the same endpoint and URL with identical (rendered)
    custom headers. Each batch holds at most ``batch_max_events`` and, unless one event alone is
    larger, at most ``WEBHOOK_MAX_REQUEST_BODY_BYTES`` of body. A payload that fails to render
    is left to the single path, which records the failure as for any delivery. Returns
    ``(singles, batches)``; a batch is the keyword arguments of ``_send_batch`` without the budget.
    """
    singles: list[tuple[Delivery, str]] = []
    groups: dict[tuple, list[tuple[Delivery, BatchPart]]] = {}
    headers_of: dict[tuple, dict[str, str]] = {}
    for delivery, url in to_send:
        endpoint = delivery.endpoint
        if (endpoint.batch_max_events <= 1 or endpoint.http_method == WebhookEndpoint.HttpMethod.GET
                or delivery.is_replay):
            singles.append((delivery, url))
            continue
        try:
            envelope = build_envelope(event=delivery.event, retry_count=delivery.attempt_count)
            body, content_type, headers = render_payload(endpoint=endpoint, envelope=envelope)
        except Exception:  # noqa: BLE001 — the single path renders again and records why it failed
            singles.append((delivery, url))
            continue
        if content_type != "application/json":
            singles.append((delivery, url))  # a text template's output cannot be a JSON array element
            continue
        key = (endpoint.pk, url, tuple(sorted(headers.items())))
        headers_of[key] = headers
        groups.setdefault(key, []).append((delivery, BatchPart(
            delivery_public_id=delivery.public_id, event_id=delivery.event.event_id,
            event_type=delivery.event.event_type.name, body=body)))
    batches = []
    for key, members in groups.items():
        size = members[0][0].endpoint.batch_max_events
        chunks: list[list[tuple[Delivery, BatchPart]]] = [[]]
        chunk_bytes = 0
        for member in members:
            part_bytes = len(member[1].body) + 1
            # A batch also stays within the publish body limit, so 100 large events never make
            # one request of hundreds of megabytes; a single larger event still goes alone.
            if chunks[-1] and (len(chunks[-1]) >= size
                               or chunk_bytes + part_bytes > settings.DATA_UPLOAD_MAX_MEMORY_SIZE):
                chunks.append([])
                chunk_bytes = 0
            chunks[-1].append(member)
            chunk_bytes += part_bytes
        batches += [{"deliveries": [d for d, _ in chunk], "parts": [p for _, p in chunk],
                     "custom_headers": headers_of[key], "url": key[1]} for chunk in chunks]
    return singles, batches


def _hand_over(started_at: datetime, future: Future) -> None:
    global _recorder
    try:
        finished = _finished(future, started_at)
    except Exception:  # a send that raised (sends catch their errors; this is a safety net)
        logger.exception("A slow send failed unrecorded; the sweep will retry it")
        _track(-1)  # else _outstanding never drops back and drain_sends waits its full time
        return
    _stragglers.put(finished)

    with _pool_lock:
        if _recorder is None or not _recorder.is_alive():
            _recorder = threading.Thread(target=_record_stragglers, name="vocelio-recorder", daemon=True)
            _recorder.start()


def _record_stragglers() -> None:
    """The recorder thread: store slow attempts in bulk as they finish (its own DB connection)."""
    from django.db import close_old_connections

    while True:
        items = [_stragglers.get()]  # each item: the attempts of one send
        while len(items) < settings.WEBHOOK_BATCH_SIZE:
            try:
                items.append(_stragglers.get_nowait())
            except queue.Empty:
                break
        slow = [f for item in items for f in item]
        lane.remember((f.delivery.endpoint_id, f.result.duration_ms) for f in slow)
        try:
            close_old_connections()
            _store(slow)
        except Exception:  # the claims expire and the sweep sends again (at-least-once)
            logger.exception("Storing %s slow sends failed; the sweep will retry them", len(items))
            connection.close()
        finally:
            _track(-len(items))
        wakeups.enqueue_wakeup()


def drain_sends(*, timeout_seconds: float) -> int:
    """Wait, up to ``timeout_seconds`` (seconds), until every send this process started is stored,
    including the slow ones handed to the recorder thread. Returns how many were still not stored
    (0: all stored). Called when a worker process shuts down (``vocelio_webhooks.celery``): the
    sending threads and the recorder die with the process, and a send that was never stored is
    sent again by the sweep once its claim expires (at-least-once holds, but the receiver gets a
    duplicate). Every send ends by its endpoint's timeout, so the wait is bounded by the slowest
    send in flight, not by ``timeout_seconds``, in practice."""
    deadline = time.monotonic() + timeout_seconds
    waited = False
    while True:
        with _pool_lock:
            left = _outstanding
        if left <= 0 or time.monotonic() >= deadline:
            return max(left, 0)
        if not waited:
            logger.info("Waiting up to %.0f s for %s sends to be stored before exiting", timeout_seconds, left)
            waited = True
        time.sleep(0.05)


def _wait_for_sends(futures: list[Future], *, since: float) -> tuple[list[Future], list[Future]]:
    """Wait for a batch's sends: until all are done, ``STRAGGLER_WAIT_SECONDS`` have passed since
    ``since`` (``time.monotonic()``: when the sends started), or ``STRAGGLER_QUIET_SECONDS`` have
    passed since the last one finished without another finishing. Returns ``(done, still running)``."""
    finished: queue.Queue[Future] = queue.Queue()
    for future in futures:
        future.add_done_callback(finished.put)  # runs at once for a future already done
    deadline = since + STRAGGLER_WAIT_SECONDS
    done: set[Future] = set()
    while len(done) < len(futures):
        timeout = deadline - time.monotonic()
        if done:
            timeout = min(timeout, STRAGGLER_QUIET_SECONDS)
        if timeout <= 0:
            break
        try:
            done.add(finished.get(timeout=timeout))
        except queue.Empty:
            break
    return [f for f in futures if f in done], [f for f in futures if f not in done]
