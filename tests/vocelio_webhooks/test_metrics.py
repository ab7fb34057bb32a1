"""``GET /metrics``: who may scrape it, the worker counters after real deliveries (real worker,
real receiver on 127.0.0.1), and the database gauges against the rows."""
from datetime import timedelta

from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import EndpointHealth
from tests.conftest import assert_seed_error, wait_until
from vocelio_webhooks import services as key_services

FAST_POLICY = {"max_attempts": 2, "initial_delay_seconds": 1, "max_delay_seconds": 2, "backoff_multiplier": 2.0}


def scrape(client) -> dict[tuple[str, tuple], float]:
    """GET /metrics and parse it: {(sample name, sorted label items): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def create_endpoint(api, url, **fields):
    response = api.post("/endpoints", {"name": "Receiver", "url": url, "events": ["lead.*"], **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def publish(api, event_id):
    response = api.post("/events/publish", {"event_type": "lead.created", "event_id": event_id,
                                            "data": {"lead": {"id": event_id}}}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def test_metrics_without_credentials_answers_401(db):
    # when
    response = APIClient().get("/metrics")

    # then
    assert_seed_error(response, 401, "UNAUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_metrics_with_wrong_token_answers_401(db, settings):
    # given
    settings.WEBHOOK_METRICS_TOKEN = "scrape-token-123"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer scrape-token-124")

    # when
    response = client.get("/metrics")

    # then
    assert_seed_error(response, 401, "UNAUTHENTICATED")


def test_metrics_with_metrics_token_answers_exposition(db, settings):
    # given: the token Prometheus sends (scrape config `authorization: {credentials: ...}`)
    settings.WEBHOOK_METRICS_TOKEN = "scrape-token-123"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer scrape-token-123")

    # when: with Prometheus's own Accept header
    response = client.get("/metrics",
                          HTTP_ACCEPT="application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")

    # then
    assert response.status_code == 200, response.content
    text = response.content.decode()
    assert "vocelio_database_up 1.0" in text
    assert "# TYPE vocelio_deliveries_queue_depth gauge" in text


def test_metrics_token_is_refused_when_unset(db, settings):
    # given: no token configured; an empty bearer value must not match it
    settings.WEBHOOK_METRICS_TOKEN = ""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer ")

    # when
    response = client.get("/metrics")

    # then
    assert response.status_code == 401


def _metrics_with_key(scopes: list[str]):
    raw = key_services.create_api_key(name="scraper", scopes=scopes).raw_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client.get("/metrics")


def test_metrics_with_read_api_key_answers_200(db):
    # when: a key with the read scope (Grafana's)
    response = _metrics_with_key(["read"])

    # then
    assert response.status_code == 200


def test_metrics_refuses_key_without_read_scope(db):
    # when: a publisher's key
    response = _metrics_with_key(["events:publish"])

    # then
    assert_seed_error(response, 403, "INSUFFICIENT_SCOPE")


def test_metrics_refuses_environment_limited_key(db):
    # given: metrics count every environment
    raw = key_services.create_api_key(name="staging", scopes=["read"], environments=["staging"]).raw_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    # when
    response = client.get("/metrics")

    # then
    assert_seed_error(response, 403, "ENVIRONMENT_FORBIDDEN")


def test_metrics_count_attempts_deliveries_and_durations_from_the_worker(api, receiver, worker):
    # given: three endpoints — one answers 200, one 400 (not retried), one 503 (retried, then dead-lettered)
    receiver.script("/ok", [200])
    receiver.script("/bad", [400])
    receiver.script("/down", [503])
    create_endpoint(api, receiver.url("/ok"))
    create_endpoint(api, receiver.url("/bad"))
    create_endpoint(api, receiver.url("/down"), retry_policy=FAST_POLICY)
    before = scrape(api)

    # when
    published = publish(api, "evt_metrics_1")
    ids = [d["id"] for d in published["deliveries"]]
    wait_until(lambda: set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True))
               <= {"succeeded", "failed", "dead_lettered"}, timeout=30)

    def counted_all():
        # the worker counts an attempt just after the transaction that stored it commits (the
        # completed counter last): a scrape as soon as the rows are final could miss the last one
        samples = scrape(api)
        completed = sum(value(samples, "vocelio_deliveries_completed_total", status=s)
                        - value(before, "vocelio_deliveries_completed_total", status=s)
                        for s in ("succeeded", "failed", "dead_lettered"))
        return samples if completed >= len(ids) else None

    after = wait_until(counted_all, timeout=10)

    # then: counters moved by exactly what the worker did (other tests may have counted before)
    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("vocelio_delivery_attempts_total", outcome="succeeded") == 1
    assert delta("vocelio_delivery_attempts_total", outcome="failed") == 1
    assert delta("vocelio_delivery_attempts_total", outcome="retry") == 2
    assert delta("vocelio_deliveries_completed_total", status="succeeded") == 1
    assert delta("vocelio_deliveries_completed_total", status="failed") == 1
    assert delta("vocelio_deliveries_completed_total", status="dead_lettered") == 1
    attempts = DeliveryAttempt.objects.filter(delivery_id__in=ids)
    assert attempts.count() == 4
    for outcome in ("succeeded", "failed", "retry"):
        rows = attempts.filter(outcome=outcome)
        assert delta("vocelio_delivery_attempt_duration_seconds_count", outcome=outcome) == rows.count()
        expected_seconds = sum(rows.values_list("duration_ms", flat=True)) / 1000
        assert abs(delta("vocelio_delivery_attempt_duration_seconds_sum", outcome=outcome) - expected_seconds) < 1e-6
        # every attempt against a local receiver takes well under 5 s: all in the le=5 bucket
        assert delta("vocelio_delivery_attempt_duration_seconds_bucket", outcome=outcome, le="5.0") == rows.count()


def test_metrics_gauges_match_delivery_and_endpoint_rows(api, receiver):
    # given: (a `db` test: nothing is enqueued, so the rows stay as arranged)
    active = create_endpoint(api, receiver.url("/a"))
    paused = create_endpoint(api, receiver.url("/p"))
    api.put(f"/endpoints/{paused['id']}/status", {"status": "paused"}, format="json")
    for n in range(3):
        publish(api, f"evt_gauge_{n}")  # 3 events × 2 endpoints = 6 pending deliveries, all due now
    to_active = list(Delivery.objects.filter(endpoint_id=active["id"]).order_by("id"))
    now = timezone.now()
    Delivery.objects.filter(pk=to_active[0].pk).update(status="retrying", next_attempt_at=now + timedelta(minutes=5))
    Delivery.objects.filter(pk=to_active[1].pk).update(status="dead_lettered", next_attempt_at=None)
    EndpointHealth.objects.update_or_create(endpoint_id=active["id"], defaults={"circuit_state": "open"})
    held = list(Delivery.objects.filter(endpoint_id=paused["id"]).values_list("pk", flat=True)[:2])
    Delivery.objects.filter(pk__in=held).update(held=True)  # as a sweep holds them

    # when
    samples = scrape(api)

    # then: 4 pending (1 to active + 3 to paused), 1 retrying (not due), 1 dead letter
    assert value(samples, "vocelio_deliveries_queue_depth", status="pending") == 4
    assert value(samples, "vocelio_deliveries_queue_depth", status="retrying") == 1
    assert value(samples, "vocelio_deliveries_queue_depth", status="in_flight") == 0
    assert value(samples, "vocelio_deliveries_due") == 1  # the paused endpoint's are held, the retry waits
    assert value(samples, "vocelio_deliveries_held") == 2
    assert value(samples, "vocelio_dead_letters") == 1
    assert value(samples, "vocelio_endpoint_circuits", state="open") == 1
    assert value(samples, "vocelio_endpoint_circuits", state="closed") == 1
    assert value(samples, "vocelio_endpoints", status="active") == 1
    assert value(samples, "vocelio_endpoints", status="paused") == 1
    assert value(samples, "vocelio_database_up") == 1
