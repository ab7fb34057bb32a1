"""Retry arithmetic: which answers retry, the seed's backoff schedule, Retry-After and jitter."""
import random
from datetime import UTC, datetime, timedelta

import pytest

from deliveries import retry
from endpoints.models import default_retry_policy

SEED_POLICY = default_retry_policy()
NOW = datetime(2025, 8, 5, 18, 0, 0, tzinfo=UTC)


# --- classify ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status_code", [200, 201, 202, 204, 299])
def test_classify_2xx_succeeds(status_code):
    # given / when
    outcome = retry.classify(status_code=status_code, policy=SEED_POLICY)

    # then
    assert outcome == "succeeded"


@pytest.mark.parametrize("status_code", [408, 429, 500, 502, 503, 504])
def test_classify_status_listed_in_seed_policy_retries(status_code):
    # given / when
    outcome = retry.classify(status_code=status_code, policy=SEED_POLICY)

    # then
    assert outcome == "retry"


@pytest.mark.parametrize("status_code", [301, 302, 400, 401, 404, 409, 410])
def test_classify_status_not_listed_fails(status_code):
    # given the seed's policy, which lists 408 and 429 among the non-5xx codes

    # when
    outcome = retry.classify(status_code=status_code, policy=SEED_POLICY)

    # then
    assert outcome == "failed"


def test_classify_follows_the_endpoints_own_list_and_always_retries_5xx():
    # given a policy that lists only 409: 5xx still retries (the seed's "HTTP 5xx Errors: Retry")
    policy = {**SEED_POLICY, "retry_on_status_codes": [409]}

    # when
    outcomes = {code: retry.classify(status_code=code, policy=policy) for code in (409, 429, 501, 503)}

    # then
    assert outcomes == {409: "retry", 429: "failed", 501: "retry", 503: "retry"}


@pytest.mark.parametrize("error_class", ["timeout", "connection_error", "ssl_error", ""])
def test_classify_no_response_from_network_trouble_retries(error_class):
    # given / when
    outcome = retry.classify(status_code=None, error_class=error_class, policy=SEED_POLICY)

    # then
    assert outcome == "retry"


@pytest.mark.parametrize("error_class", ["blocked_destination", "invalid_request", "signing_error"])
def test_classify_no_response_from_our_own_refusal_fails(error_class):
    # given / when
    outcome = retry.classify(status_code=None, error_class=error_class, policy=SEED_POLICY)

    # then
    assert outcome == "failed"


# --- backoff --------------------------------------------------------------------------------
def test_backoff_seconds_gives_seed_schedule():
    # given the seed's "Retry Schedule Example": 1, 2, 4, 8 s before attempts 2-5

    # when
    delays = [retry.backoff_seconds(policy=SEED_POLICY, attempt_number=n) for n in (1, 2, 3, 4)]

    # then
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_backoff_seconds_caps_at_max_delay_seconds():
    # given
    policy = {**SEED_POLICY, "max_delay_seconds": 5}

    # when
    delays = [retry.backoff_seconds(policy=policy, attempt_number=n) for n in (3, 4, 10)]
    seed_late = retry.backoff_seconds(policy=SEED_POLICY, attempt_number=30)

    # then
    assert delays == [4.0, 5.0, 5.0]
    assert seed_late == 300.0


def test_backoff_seconds_follows_initial_delay_and_multiplier():
    # given
    policy = {**SEED_POLICY, "initial_delay_seconds": 10, "backoff_multiplier": 3.0}

    # when
    delays = [retry.backoff_seconds(policy=policy, attempt_number=n) for n in (1, 2, 3)]

    # then
    assert delays == [10.0, 30.0, 90.0]


# --- Retry-After ----------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [("120", 120.0), (" 0 ", 0.0), ("3600", 3600.0)])
def test_parse_retry_after_delay_seconds(value, expected):
    # given / when
    seconds = retry.parse_retry_after(value, now=NOW)

    # then
    assert seconds == expected


def test_parse_retry_after_http_date():
    # given
    value = "Tue, 05 Aug 2025 18:02:30 GMT"

    # when
    seconds = retry.parse_retry_after(value, now=NOW)

    # then
    assert seconds == 150.0


def test_parse_retry_after_past_date_means_now():
    # given
    value = "Tue, 05 Aug 2025 17:00:00 GMT"

    # when
    seconds = retry.parse_retry_after(value, now=NOW)

    # then
    assert seconds == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Tuesday at noon"])
def test_parse_retry_after_garbage_is_ignored(value):
    # given / when
    seconds = retry.parse_retry_after(value, now=NOW)

    # then
    assert seconds is None


# --- next delay -------------------------------------------------------------------------------
def test_next_delay_seconds_jitter_stays_between_backoff_and_ratio():
    # given
    rng = random.Random(1234)

    # when
    delays = [
        retry.next_delay_seconds(policy=SEED_POLICY, attempt_number=3, retry_after_seconds=None, jitter_ratio=0.25,
                                 retry_after_max_seconds=3600, rng=rng)
        for _ in range(200)
    ]

    # then
    assert all(4.0 <= d <= 5.0 for d in delays)
    assert len(set(delays)) > 100  # spread out, not in lock-step


def test_next_delay_seconds_without_jitter_is_the_backoff():
    # given / when
    delay = retry.next_delay_seconds(policy=SEED_POLICY, attempt_number=4, retry_after_seconds=None,
                                     jitter_ratio=0.0, retry_after_max_seconds=3600, rng=random.Random(7))

    # then
    assert delay == 8.0


def test_next_delay_seconds_is_reproducible_with_a_seeded_rng():
    # given
    kwargs = {"policy": SEED_POLICY, "attempt_number": 2, "retry_after_seconds": None, "jitter_ratio": 0.5,
              "retry_after_max_seconds": 3600}

    # when
    first = retry.next_delay_seconds(**kwargs, rng=random.Random(42))
    second = retry.next_delay_seconds(**kwargs, rng=random.Random(42))

    # then
    assert first == second
    assert 2.0 <= first <= 3.0


def test_next_delay_seconds_longer_retry_after_wins():
    # given
    retry_after = retry.parse_retry_after("120", now=NOW)

    # when
    delay = retry.next_delay_seconds(policy=SEED_POLICY, attempt_number=1, retry_after_seconds=retry_after,
                                     jitter_ratio=0.1, retry_after_max_seconds=3600, rng=random.Random(3))

    # then
    assert delay == 120.0


def test_next_delay_seconds_shorter_retry_after_does_not_shorten_backoff():
    # given
    rng = random.Random(5)

    # when
    delay = retry.next_delay_seconds(policy=SEED_POLICY, attempt_number=4, retry_after_seconds=1.0,
                                     jitter_ratio=0.1, retry_after_max_seconds=3600, rng=rng)

    # then
    assert 8.0 <= delay <= 8.8


def test_next_delay_seconds_retry_after_is_clamped():
    # given a receiver asking for a day
    retry_after = retry.parse_retry_after((NOW + timedelta(days=1)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now=NOW)

    # when
    delay = retry.next_delay_seconds(policy=SEED_POLICY, attempt_number=1, retry_after_seconds=retry_after,
                                     jitter_ratio=0.1, retry_after_max_seconds=3600, rng=random.Random(9))

    # then
    assert retry_after == 86400.0
    assert delay == 3600.0
