"""The batch engine (issue 7): one-statement claims that respect the per-endpoint cap, bulk
storage, gzip request bodies and publish back-pressure (``WEBHOOK_MAX_QUEUE_SIZE``)."""
import gzip
import hashlib
import hmac
import json
import secrets
import time
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services import wakeups
from endpoints.models import EndpointHealth, WebhookEndpoint
from events import services as event_services
from events.models import Event, EventType
from tests.conftest import assert_seed_error, due_deliveries, wait_until


def _endpoint(receiver, name, **fields) -> WebhookEndpoint:
    fields.setdefault("events", ["lead.*"])
    return WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"),
                                          secret="whsec_batch_test_secret_0123456789", **fields)


def _due_deliveries(endpoints, count, **fields) -> list[int]:
    return [d.pk for d in due_deliveries(endpoints, count, prefix="evt_batch", **fields)]


def test_claim_due_claims_each_due_delivery_once(event_types, receiver):
    # given
    ids = _due_deliveries([_endpoint(receiver, "a"), _endpoint(receiver, "b")], 1)

    # when
    first = delivery_services.claim_due(limit=50)
    second = delivery_services.claim_due(limit=50)

    # then
    assert sorted(first) == sorted(ids)
    assert second == []
    assert set(Delivery.objects.values_list("status", flat=True)) == {"in_flight"}
    assert all(d.claimed_until > timezone.now() for d in Delivery.objects.all())


def test_claim_due_keeps_the_per_endpoint_in_flight_cap(event_types, receiver, settings):
    # given: five due deliveries to one endpoint, one already in flight, a cap of 3
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 3
    ids = _due_deliveries([_endpoint(receiver, "capped")], 5)
    Delivery.objects.filter(pk=ids[0]).update(status=Delivery.Status.IN_FLIGHT)

    # when
    claimed = delivery_services.claim_due(limit=50)

    # then: 3 - 1 = 2 more, the oldest
    assert claimed == ids[1:3]


def test_claim_due_default_cap_lets_two_workers_share_one_busy_endpoint(event_types, receiver):
    # given: 15 due deliveries to one endpoint and the default WEBHOOK_ENDPOINT_MAX_IN_FLIGHT (10)
    ids = _due_deliveries([_endpoint(receiver, "shared")], 15)

    # when: two workers claim batches of 5, then a third worker a batch of 50
    first = delivery_services.claim_due(limit=5)
    second = delivery_services.claim_due(limit=5)
    third = delivery_services.claim_due(limit=50)

    # then: the second worker is not shut out by the first one's claims; the cap stops at 10 in flight
    assert first == ids[0:5]
    assert second == ids[5:10]
    assert third == []
    assert Delivery.objects.filter(status="in_flight").count() == 10


def test_claim_due_leaves_paused_endpoints_and_future_deliveries(event_types, receiver):
    # given
    paused = _due_deliveries([_endpoint(receiver, "paused", status="paused")], 1)
    later = _due_deliveries([_endpoint(receiver, "later")], 1)
    Delivery.objects.filter(pk__in=later).update(next_attempt_at=timezone.now() + timezone.timedelta(minutes=5))

    # when
    claimed = delivery_services.claim_due(limit=50)

    # then
    assert claimed == []
    assert Delivery.objects.get(pk=paused[0]).status == "pending"


def test_deliver_due_batch_sends_all_and_stores_them_in_bulk(transactional_db, event_types, receiver):
    # given: 2 events to 5 endpoints (10 deliveries)
    endpoints = [_endpoint(receiver, f"bulk{n}") for n in range(5)]
    _due_deliveries(endpoints, 2)

    # when
    with CaptureQueriesContext(connection) as queries:
        result = delivery_services.deliver_due_batch()

    # then: every delivery sent once and stored (a send slower than the batch's wait is stored by the
    # recorder thread); far fewer statements than one per step per delivery
    assert (result.claimed, result.sent, result.released) == (10, 10, 0)
    wait_until(lambda: set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"})
    assert len(receiver.requests) == 10
    assert DeliveryAttempt.objects.filter(outcome="succeeded").count() == 10
    # (11 on PostgreSQL: the claim runs in a transaction with its lock and returns the delivery
    # rows; the load reads events with their types, and endpoints with their health, once per batch;
    # the store's one UPDATE also reads the health of the endpoints that succeeded; one upsert notes
    # their last success, at most once a minute per endpoint)
    assert len(queries) <= 11, "\n".join(q["sql"][:70] for q in queries)


def test_deliver_due_batch_success_ends_a_failure_streak_and_only_notes_the_time_on_healthy_endpoints(
        transactional_db, event_types, receiver):
    # given: one endpoint three failures into a streak, one healthy, both now answering 200
    streak = _endpoint(receiver, "streak")
    healthy = _endpoint(receiver, "healthy")
    earlier = timezone.now() - timedelta(minutes=5)
    EndpointHealth.objects.create(endpoint=streak, consecutive_failures=3, failing_since=earlier,
                                  last_failure_at=earlier)
    EndpointHealth.objects.create(endpoint=healthy)
    EndpointHealth.objects.filter(pk=healthy.pk).update(updated_at=earlier)  # auto_now: set after create
    _due_deliveries([streak, healthy], 2)

    # when
    delivery_services.deliver_due_batch()
    wait_until(lambda: DeliveryAttempt.objects.filter(outcome="succeeded").count() == 4)

    # then: the streak is over, as after a success on the single path; the healthy endpoint's
    # health row got only its last success's time (its circuit fields and updated_at untouched)
    ended = wait_until(lambda: (row := EndpointHealth.objects.get(pk=streak.pk)).consecutive_failures == 0 and row)
    assert ended.circuit_state == "closed" and ended.failing_since is None
    assert ended.last_success_at is not None and ended.last_success_at > earlier
    noted = wait_until(lambda: (row := EndpointHealth.objects.get(pk=healthy.pk)).last_success_at and row)
    assert noted.last_success_at > earlier
    assert (noted.updated_at, noted.circuit_state, noted.consecutive_failures) == (earlier, "closed", 0)


def test_deliver_due_batch_gives_every_send_to_slow_receivers_a_thread_at_once(transactional_db, event_types,
                                                                                receiver):
    # given: 16 deliveries to two receivers that take 1 s to answer, within the per-endpoint cap
    endpoints = [_endpoint(receiver, f"slowlane{n}") for n in range(2)]
    for endpoint in endpoints:
        receiver.hang_seconds[f"/{endpoint.name}"] = 1.0
    _due_deliveries(endpoints, 8)

    # when
    started = time.time()
    result = delivery_services.deliver_due_batch()

    # then: no send waited for another to be answered (a sending thread each): all 16 reached the
    # receivers within a fraction of the 1 s a second wave would have waited
    assert result.claimed == 16
    arrivals = sorted(r.received_at for e in endpoints for r in receiver.wait_for(8, path=f"/{e.name}"))
    assert len(arrivals) == 16
    assert arrivals[-1] - arrivals[0] < 0.9, [round(t - started, 3) for t in arrivals]  # a second wave: >= 1 s
    wait_until(lambda: DeliveryAttempt.objects.filter(outcome="succeeded").count() == 16, timeout=15)


def test_deliver_due_batch_stores_complete_attempt_rows_in_one_counted_statement(transactional_db, event_types,
                                                                                    receiver):
    # given: 3 events to 2 endpoints, one with an Authorization custom header
    plain = _endpoint(receiver, "rows-plain")
    authed = _endpoint(receiver, "rows-auth", custom_headers={"Authorization": "Bearer abc123"})
    ids = _due_deliveries([plain, authed], 3)
    before = timezone.now()

    # when
    with CaptureQueriesContext(connection) as queries:
        delivery_services.deliver_due_batch()
        wait_until(lambda: DeliveryAttempt.objects.count() == 6)

    # then: one statement wrote the attempt rows (COPY on PostgreSQL, INSERT elsewhere) and it was
    # recorded like any other statement
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "COPY"))
              and "deliveryattempt" in q["sql"]]
    assert len(writes) == 1, writes
    # and every row is complete: the same fields the single path stores
    sent = {r.header("X-Vocelio-Delivery-Id"): r for r in receiver.requests}
    for attempt in DeliveryAttempt.objects.select_related("delivery"):
        request = sent[f"dlv_{attempt.delivery_id}"]
        assert attempt.delivery_id in ids
        assert (attempt.attempt_number, attempt.outcome, attempt.response_status_code) == (1, "succeeded", 200)
        assert attempt.request_body.encode() == request.body
        assert attempt.request_body_sha256 == hashlib.sha256(request.body).hexdigest()
        assert attempt.request_body_size == len(request.body)
        assert attempt.request_headers["X-Vocelio-Signature"] == request.header("X-Vocelio-Signature")
        assert attempt.created_at >= before and attempt.started_at >= before
        if attempt.delivery.endpoint_id == authed.pk:
            assert attempt.request_headers["Authorization"] == "Bearer ***"


def test_gzip_endpoint_gets_a_compressed_body_signed_uncompressed(api, receiver, worker):
    # given
    response = api.post("/endpoints", {"name": "gz", "url": receiver.url("/gz"), "events": ["lead.*"],
                                       "gzip_requests": True, "secret": "whsec_gzip_test_secret_0123456789"},
                        format="json")
    assert response.status_code == 201, response.content
    assert response.json()["gzip_requests"] is True

    # when
    api.post("/events/publish", {"event_type": "lead.created", "data": {"notes": "x" * 2000}}, format="json")

    # then
    request = receiver.wait_for(1, path="/gz")[0]
    assert request.header("Content-Encoding") == "gzip"
    plain = gzip.decompress(request.body)
    assert len(request.body) < len(plain)
    assert json.loads(plain)["data"]["notes"] == "x" * 2000
    expected = hmac.new(b"whsec_gzip_test_secret_0123456789", plain, hashlib.sha256).hexdigest()
    assert request.header("X-Vocelio-Signature") == f"sha256={expected}"
    wait_until(lambda: DeliveryAttempt.objects.filter(outcome="succeeded").exists())
    assert json.loads(DeliveryAttempt.objects.get().request_body)["data"]["notes"] == "x" * 2000


def test_publish_answers_503_when_too_many_deliveries_wait(api, receiver, settings):
    # given: a limit of 2 waiting deliveries, and 2 waiting
    settings.WEBHOOK_MAX_QUEUE_SIZE = 2
    event_services._queue_size_seen = (0.0, 0)
    _due_deliveries([_endpoint(receiver, "q1"), _endpoint(receiver, "q2")], 1)

    # when
    response = api.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")

    # then
    error = assert_seed_error(response, 503, "QUEUE_FULL")
    assert error["details"] == {"waiting": 2, "max_queue_size": 2}
    event_services._queue_size_seen = (0.0, 0)


def test_claim_due_for_a_priority_wakeup_takes_only_high_priority_deliveries(event_types, receiver):
    # given: an ordinary and a high-priority delivery, both due
    endpoint = _endpoint(receiver, "prio", events=["*"])
    ordinary = _due_deliveries([endpoint], 1)
    EventType.objects.filter(name="system.error").update(is_high_priority=True)
    urgent_event = Event.objects.create(event_id="evt_urgent", event_type=EventType.objects.get(name="system.error"),
                                        timestamp=timezone.now(), data={})
    urgent = Delivery.objects.create(event=urgent_event, endpoint=endpoint, next_attempt_at=timezone.now())

    # when
    claimed = delivery_services.claim_due(limit=50, high_priority_only=True)

    # then
    assert claimed == [urgent.pk]
    assert Delivery.objects.get(pk=ordinary[0]).status == "pending"


def test_a_hanging_receiver_does_not_hold_the_batch(transactional_db, event_types, receiver):
    # given: one fast endpoint and one that answers after 3 s (timeout 10 s)
    receiver.hang_seconds["/slow"] = 3
    fast = _endpoint(receiver, "fast")
    slow = _endpoint(receiver, "slow", timeout_seconds=10)
    _due_deliveries([fast, slow], 1)

    # when
    result = delivery_services.deliver_due_batch()

    # then: the batch returned with the fast delivery stored and the slow one still in flight ...
    assert result.claimed == 2
    assert Delivery.objects.get(endpoint=fast).status == "succeeded"
    assert Delivery.objects.get(endpoint=slow).status == "in_flight"
    # ... which the recorder thread stores when the answer comes
    wait_until(lambda: Delivery.objects.get(endpoint=slow).status == "succeeded", timeout=20)
    assert DeliveryAttempt.objects.get(delivery__endpoint=slow).response_status_code == 200


def test_a_batch_does_not_wait_out_the_straggler_limit_once_its_healthy_sends_are_done(transactional_db, event_types,
                                                                                       receiver, monkeypatch):
    # given: a straggler limit far longer than the slow answer (3 s), two fast endpoints, one slow
    from deliveries.services import sending

    monkeypatch.setattr(sending, "STRAGGLER_WAIT_SECONDS", 30.0)
    # the fast sends that follow the slow one in the lane finish 11-47 ms apart here: a quiet
    # window of 0.5 s rather than 50 ms keeps a busy machine from leaving one to the recorder
    monkeypatch.setattr(sending, "STRAGGLER_QUIET_SECONDS", 0.5)
    receiver.hang_seconds["/quiet-slow"] = 3
    fast = [_endpoint(receiver, f"quiet-fast{n}") for n in range(2)]
    slow = _endpoint(receiver, "quiet-slow", timeout_seconds=10)
    _due_deliveries([*fast, slow], 2)

    # when
    delivery_services.deliver_due_batch()

    # then: the batch stored the fast deliveries and left the slow ones to the recorder thread as
    # soon as nothing else finished for STRAGGLER_QUIET_SECONDS (it did not wait for them)
    assert set(Delivery.objects.filter(endpoint__in=fast).values_list("status", flat=True)) == {"succeeded"}
    assert set(Delivery.objects.filter(endpoint=slow).values_list("status", flat=True)) == {"in_flight"}
    wait_until(lambda: set(Delivery.objects.filter(endpoint=slow).values_list("status", flat=True)) == {"succeeded"},
               timeout=20)


def test_wakeups_beyond_the_pending_limit_are_not_enqueued(settings):
    if not isinstance(caches["default"], RedisCache):
        pytest.skip("the waiting wake-ups are counted in the Redis cache (REDIS_URL)")
    import redis

    # given: at most 2 waiting wake-ups, on a queue no worker reads
    settings.WEBHOOK_MAX_PENDING_WAKEUPS = 2
    queue = f"gate-test-{secrets.token_hex(4)}"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        # when: five wake-ups are asked for and none has started
        for _ in range(5):
            wakeups.enqueue_wakeup(queue)

        # then: two are in the broker
        assert broker.llen(queue) == 2

        # when: one starts, and two more are asked for
        wakeups.wakeup_started(queue=queue)
        wakeups.enqueue_wakeup(queue)
        wakeups.enqueue_wakeup(queue)

        # then: one more in the broker (the started one's place)
        assert broker.llen(queue) == 3
    finally:
        broker.delete(queue)
        caches["default"].delete(wakeups._PENDING_WAKEUPS_KEY.format(queue=queue))


def test_wakeups_counter_left_without_expiry_restarts_within_ten_seconds(settings, monkeypatch):
    if not isinstance(caches["default"], RedisCache):
        pytest.skip("the waiting wake-ups are counted in the Redis cache (REDIS_URL)")
    import redis

    # given: a queue's counter stuck at the limit with NO expiry, as Django's incr (EXISTS, then
    # INCRBY) left it when the key expired between the two calls; no worker reads the queue
    settings.WEBHOOK_MAX_PENDING_WAKEUPS = 2
    queue = f"gate-test-{secrets.token_hex(4)}"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    counter = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    key = caches["default"].make_key(wakeups._PENDING_WAKEUPS_KEY.format(queue=queue))
    counter.set(key, 2)
    assert counter.ttl(key) == -1
    try:
        # when: a wake-up is asked for
        wakeups.enqueue_wakeup(queue)

        # then: none is enqueued (two wait), but the counter now restarts within 10 s
        assert broker.llen(queue) == 0
        assert 0 < counter.ttl(key) <= 10

        # given: stuck again, with a 1 s expiry instead of 10 s (so the test does not wait 10 s)
        monkeypatch.setattr(wakeups, "_PENDING_WAKEUPS_TTL_SECONDS", 1)
        counter.set(key, 2)

        # when: wake-ups keep being asked for, every 50 ms
        deadline = time.monotonic() + 5
        while (ttl_ms := counter.pttl(key)) != -2 and time.monotonic() < deadline:
            if ttl_ms == -1 or ttl_ms > 100:  # one asked for as it expires counts from zero again, by design
                wakeups.enqueue_wakeup(queue)
            time.sleep(0.05)

        # then: the steady stream did not push the expiry back: the counter expired, and the next
        # wake-up asked for is enqueued
        assert not counter.exists(key)
        assert broker.llen(queue) == 0
        wakeups.enqueue_wakeup(queue)
        assert broker.llen(queue) == 1
    finally:
        broker.delete(queue)
        counter.delete(key)


def test_every_event_is_delivered_with_one_waiting_wakeup_at_most(api, receiver, worker, settings):
    # given: publishing may leave at most one wake-up waiting (a burst enqueues far fewer tasks
    # than events; on Redis the limit applies, elsewhere every wake-up is enqueued)
    settings.WEBHOOK_MAX_PENDING_WAKEUPS = 1
    wakeups.forget_pending_wakeups()
    for n in range(3):
        assert api.post("/endpoints", {"name": f"gate{n}", "url": receiver.url(f"/gate{n}"), "events": ["lead.*"],
                                       "secret": "whsec_gate_test_secret_0123456789"},
                        format="json").status_code == 201

    # when: a burst of 8 events
    for n in range(8):
        assert api.post("/events/publish", {"event_type": "lead.created", "data": {"n": n}},
                        format="json").status_code == 202

    # then: all 24 deliveries arrive, once each, without waiting for the sweep
    for n in range(3):
        got = receiver.wait_for(8, path=f"/gate{n}", timeout=15)
        assert len({r.header("X-Vocelio-Event-Id") for r in got}) == 8
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 24)


def test_claims_on_postgresql_run_one_at_a_time_so_the_cap_holds_across_workers(transactional_db, event_types,
                                                                                 receiver):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time; the claim lock is PostgreSQL's")
    import threading

    import psycopg

    # given: a due delivery, and another worker's claim in progress (it holds the claim lock)
    ids = _due_deliveries([_endpoint(receiver, "serial")], 1)
    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")})
    other.execute("SELECT pg_advisory_lock(%s)", [delivery_services.claim.CLAIM_LOCK_KEY])
    claimed: list[list[int]] = []

    def claim():
        from django.db import connections

        try:
            claimed.append(delivery_services.claim_due(limit=50))
        finally:
            connections.close_all()

    # when: this worker claims meanwhile
    thread = threading.Thread(target=claim)
    thread.start()
    thread.join(timeout=1.0)

    # then: it waits for the other claim to end (so it counts that claim's in-flight rows), then claims
    assert thread.is_alive() and claimed == []
    other.execute("SELECT pg_advisory_unlock(%s)", [delivery_services.claim.CLAIM_LOCK_KEY])
    other.close()
    thread.join(timeout=10)
    assert claimed == [ids]


def test_a_high_priority_delivery_held_by_the_cap_is_sent_once_the_cap_frees(api, receiver, worker):
    # given: an endpoint whose in-flight cap (10) is full with another batch's ordinary deliveries
    endpoint = _endpoint(receiver, "urgent", events=["*"])
    # created in flight: created due, a wake-up still running from an earlier test could claim and
    # store some of them before they were marked (seen once under load: the cap was not full)
    busy = _due_deliveries([endpoint], 10, status=Delivery.Status.IN_FLIGHT,
                           claimed_until=timezone.now() + timezone.timedelta(minutes=5))
    EventType.objects.filter(name="system.error").update(is_high_priority=True)

    # when: a high-priority event is published (its priority wake-up finds the cap full), then the
    # other batch ends without any wake-up of its own (so only a priority re-check can pick it up)
    assert api.post("/events/publish", {"event_type": "system.error", "data": {"n": 1}},
                    format="json").status_code == 202
    urgent = Delivery.objects.get(event__event_type__name="system.error")
    time.sleep(1.0)
    assert Delivery.objects.get(pk=urgent.pk).status == "pending"
    Delivery.objects.filter(pk__in=busy).update(status=Delivery.Status.SUCCEEDED, claimed_until=None)

    # then: it is delivered within seconds, without the sweep (no beat runs in the tests)
    got = receiver.wait_for(1, path="/urgent", timeout=10)
    assert got[0].header("X-Vocelio-Event-Id") == urgent.event.event_id


@pytest.mark.parametrize("per_endpoint", [True, False], ids=["per-endpoint claim", "oldest-first scan"])
def test_claim_due_skips_endpoints_at_their_cap_so_an_older_backlog_holds_back_no_one(transactional_db, event_types,
                                                                                  receiver, settings, per_endpoint):
    # given: a slow endpoint (answers after 3 s) with 30 due deliveries, all older than one due
    # delivery to a healthy endpoint; batches of 5 (the claim scans the 20 oldest due rows) and an
    # in-flight cap of 2; either claim statement (PostgreSQL picks by the number of active endpoints)
    settings.WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS = 1000 if per_endpoint else 0
    settings.WEBHOOK_BATCH_SIZE = 5
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 2
    receiver.hang_seconds["/slow"] = 3
    event_type = EventType.objects.get(name="lead.created")
    now = timezone.now()

    def due(endpoint: WebhookEndpoint, at) -> Delivery:
        event = Event.objects.create(event_id=f"evt_capped_{secrets.token_hex(6)}", event_type=event_type,
                                     timestamp=at, data={})
        return Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=at)

    slow = WebhookEndpoint.objects.create(name="slow", url=receiver.url("/slow"), events=["lead.*"], timeout_seconds=10,
                                          secret="whsec_capped_test_secret_0123456789")
    fast = WebhookEndpoint.objects.create(name="fast", url=receiver.url("/fast"), events=["lead.*"],
                                          secret="whsec_capped_test_secret_0123456789")
    for n in range(30):
        due(slow, now - timedelta(seconds=60 - n))
    healthy = due(fast, now)
    try:
        # when: a wake-up fills the slow endpoint's cap (its sends left to the recorder thread),
        # and the wake-up it re-armed runs
        first = delivery_services.run_wakeup()
        second = delivery_services.run_wakeup()

        # then: the healthy endpoint's delivery goes out now, not after the slow endpoint's backlog
        # (the first claim finds no endpoint at its cap, so either statement takes the slow one's 2)
        assert (first.claimed, second.claimed) == (2, 1)
        got = receiver.wait_for(1, path="/fast", timeout=2)
        assert got[0].header("X-Vocelio-Delivery-Id") == healthy.public_id
    finally:
        # let the slow sends end and be stored before the tables are flushed
        wait_until(lambda: not Delivery.objects.filter(status=Delivery.Status.IN_FLIGHT).exists(), timeout=15)


def test_sweep_leaves_overdue_deliveries_of_an_endpoint_at_its_cap_to_the_batch_engine(transactional_db, event_types,
                                                                                        receiver, settings):
    # given: an endpoint whose cap (2) is full of live claims, with 3 more deliveries due a minute
    # ago; and another endpoint with one delivery due a minute ago
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 2
    now = timezone.now()
    capped = _due_deliveries([_endpoint(receiver, "sweep-capped")], 5)
    Delivery.objects.filter(pk__in=capped[:2]).update(status="in_flight", claimed_until=now + timedelta(minutes=10))
    free = _due_deliveries([_endpoint(receiver, "sweep-free")], 1)
    Delivery.objects.filter(pk__in=capped[2:] + free).update(next_attempt_at=now - timedelta(minutes=1))

    # when
    result = delivery_services.sweep_due_deliveries()

    # then: only the free endpoint's delivery was enqueued (its next attempt moved to now); the
    # capped endpoint's wait for a slot untouched, to be claimed by the batch engine oldest first
    assert result.enqueued == 1
    assert Delivery.objects.get(pk=free[0]).next_attempt_at >= now
    assert all(d.next_attempt_at <= now - timedelta(seconds=59) for d in Delivery.objects.filter(pk__in=capped[2:]))
    Delivery.objects.filter(pk__in=capped[:2]).update(status="succeeded", claimed_until=None)  # before the flush
