"""Per-key throttling: 429 in the seed's error format with Retry-After, separate budgets for
publishing and the rest of the API, one budget per key."""
import pytest
from rest_framework.test import APIClient

from vocelio_webhooks import services as key_services
from vocelio_webhooks.throttling import window_wait_seconds


def _client() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_services.create_api_key(name='busy').raw_key}")
    return client


def _publish(client: APIClient):
    return client.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")


@pytest.mark.django_db
def test_api_key_rate_throttle_answers_429_with_retry_after(settings, event_types):
    # given
    settings.WEBHOOK_API_RATE_PER_MINUTE = 3
    client = _client()

    # when
    statuses = [client.get("/endpoints").status_code for _ in range(3)]
    throttled = client.get("/endpoints")

    # then
    assert statuses == [200, 200, 200]
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "RATE_LIMITED"
    assert set(throttled.json()["error"]) == {"code", "message", "details"}
    assert 1 <= int(throttled["Retry-After"]) <= 121


@pytest.mark.django_db
def test_api_key_rate_throttle_counts_each_key_separately(settings, event_types):
    # given
    settings.WEBHOOK_API_RATE_PER_MINUTE = 1
    first, second = _client(), _client()
    first.get("/endpoints")

    # when
    again = first.get("/endpoints")
    other = second.get("/endpoints")

    # then
    assert again.status_code == 429
    assert other.status_code == 200


@pytest.mark.django_db
def test_api_key_rate_throttle_gives_publishing_its_own_budget(settings, event_types):
    # given
    settings.WEBHOOK_API_RATE_PER_MINUTE = 1
    settings.WEBHOOK_PUBLISH_RATE_PER_MINUTE = 2
    client = _client()
    client.get("/endpoints")

    # when
    read_again = client.get("/endpoints")
    published = [_publish(client).status_code for _ in range(2)]
    published_over = _publish(client)

    # then
    assert read_again.status_code == 429
    assert published == [202, 202]
    assert published_over.status_code == 429
    assert "Retry-After" in published_over


@pytest.mark.django_db
def test_api_key_rate_throttle_zero_means_unlimited(settings, event_types):
    # given
    settings.WEBHOOK_API_RATE_PER_MINUTE = 0
    client = _client()

    # when
    statuses = {client.get("/event-types").status_code for _ in range(20)}

    # then
    assert statuses == {200}


@pytest.mark.django_db
def test_api_key_rate_throttle_does_not_throttle_health(settings):
    # given
    settings.WEBHOOK_API_RATE_PER_MINUTE = 1
    client = APIClient()

    # when
    statuses = [client.get("/health").status_code for _ in range(3)]

    # then
    assert statuses == [200, 200, 200]


def test_window_wait_seconds_is_zero_while_under_budget():
    # given / when
    wait = window_wait_seconds(limit=10, current=5, previous=4, elapsed=30.0)

    # then (4 × 0.5 + 5 + 1 = 8 ≤ 10)
    assert wait == 0.0


def test_window_wait_seconds_waits_for_the_previous_window_to_slide_out():
    # given 6 of 10 used now, 8 in the previous minute, 15 s into this one: 8 × 0.75 + 6 + 1 = 13
    # when
    wait = window_wait_seconds(limit=10, current=6, previous=8, elapsed=15.0)

    # then it fits once 8 × (1 − t/60) + 7 ≤ 10, i.e. t ≥ 37.5 s: 22.5 s from now
    assert wait == pytest.approx(22.5)


def test_window_wait_seconds_waits_for_next_window_when_this_one_is_full():
    # given
    # when
    wait = window_wait_seconds(limit=10, current=10, previous=0, elapsed=20.0)

    # then 40 s to the next window, then 10 × (1 − t/60) + 1 ≤ 10 needs t ≥ 6 s
    assert wait == pytest.approx(46.0)


@pytest.mark.django_db
def test_api_key_rate_throttle_does_not_count_refused_requests(settings, event_types):
    # given: a spent budget, refused once
    settings.WEBHOOK_API_RATE_PER_MINUTE = 2
    client = _client()
    assert [client.get("/endpoints").status_code for _ in range(2)] == [200, 200]
    first_refused = client.get("/endpoints")

    # when: the caller keeps trying
    refused = [client.get("/endpoints") for _ in range(20)]

    # then: every try is refused, and none pushes the wait further out. Had the 20 tries counted,
    # this window's count would be 22, not 2, and the wait ~27 s longer (window_wait_seconds).
    assert first_refused.status_code == 429
    assert {response.status_code for response in refused} == {429}
    assert int(refused[-1]["Retry-After"]) <= int(first_refused["Retry-After"])


@pytest.fixture
def redis_without_decr():
    """The cache's own Redis server, reached as an ACL user that may run every command but
    ``DECR``/``DECRBY`` (redis-py's ``decr`` sends ``DECRBY``): a real server failing the one
    command that takes a refused request's count back."""
    from django.core.cache import caches

    from vocelio_webhooks import redis_cache

    found = redis_cache.raw_client()
    if found is None:
        pytest.skip("needs the Redis cache (REDIS_URL)")
    admin, _ = found
    user, password = "vocelio_test_no_decr", "no-decr-password"
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", "~*", "&*", "+@all",
                          "-decr", "-decrby")
    cache = caches["default"]
    kwargs = admin.connection_pool.connection_kwargs
    restricted = type(admin)(host=kwargs.get("host"), port=kwargs.get("port"), db=kwargs.get("db", 0),
                             username=user, password=password)
    cache._vocelio_raw_client = restricted
    try:
        yield
    finally:
        del cache._vocelio_raw_client
        restricted.close()
        admin.execute_command("ACL", "DELUSER", user)


@pytest.mark.django_db
def test_api_key_rate_throttle_still_refuses_when_taking_the_count_back_fails(
        settings, event_types, redis_without_decr, caplog):
    # given: a spent budget of 2, and a Redis that refuses DECR
    settings.WEBHOOK_API_RATE_PER_MINUTE = 2
    client = _client()
    assert [client.get("/endpoints").status_code for _ in range(2)] == [200, 200]

    # when
    refused = [client.get("/endpoints") for _ in range(3)]

    # then: each is refused in the seed's error format, with Retry-After, and the failure is logged
    assert [response.status_code for response in refused] == [429, 429, 429]
    assert all(response.json()["error"]["code"] and "Retry-After" in response for response in refused)
    assert sum("Could not take back a refused request's count" in r.getMessage() for r in caplog.records) == 3
