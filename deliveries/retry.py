"""Retry policy arithmetic: pure functions, no ORM.

Rules (Standard Webhooks, "Delivery success and failure"; the seed's "Retry Configuration" and
"Error Handling" table — "HTTP 5xx Errors: Retry"; STYLE.md rule 13): 2xx succeeds; every 5xx,
every status in the policy's ``retry_on_status_codes`` and every timeout or connection error
retries; anything else (3xx, 4xx not listed) fails at once.
"""
import email.utils
import random
from datetime import UTC, datetime

SUCCEEDED = "succeeded"
RETRY = "retry"
FAILED = "failed"


# Failures of ours, not the receiver's: sending the same request again cannot help.
NON_RETRYABLE_ERRORS = frozenset({"blocked_destination", "invalid_request", "signing_error", "template_error"})


def classify(*, status_code: int | None, error_class: str = "", policy: dict) -> str:
    """Return ``"succeeded"``, ``"retry"`` or ``"failed"`` for one attempt.

    ``status_code`` is the receiver's HTTP status, or ``None`` when no response arrived: timeouts,
    connection and TLS errors then retry, while the errors in ``NON_RETRYABLE_ERRORS`` fail.
    ``policy`` is a full retry policy (``WebhookEndpoint.effective_retry_policy``).
    """
    if status_code is None:
        return FAILED if error_class in NON_RETRYABLE_ERRORS else RETRY
    if 200 <= status_code < 300:
        return SUCCEEDED
    if status_code >= 500 or status_code in policy["retry_on_status_codes"]:
        return RETRY
    return FAILED


def backoff_seconds(*, policy: dict, attempt_number: int) -> float:
    """Delay before the attempt after ``attempt_number`` (1-based), without jitter.

    ``initial_delay_seconds × backoff_multiplier^(attempt_number − 1)``, capped at
    ``max_delay_seconds``: with the seed's defaults 1, 2, 4, 8 s after attempts 1–4, matching the
    seed's "Retry Schedule Example".
    """
    delay = policy["initial_delay_seconds"] * policy["backoff_multiplier"] ** max(attempt_number - 1, 0)
    return float(min(delay, policy["max_delay_seconds"]))


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3: delay-seconds or an
    HTTP-date). Returns ``None`` for a missing or unparseable value; a past date gives ``0.0``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def next_delay_seconds(
    *,
    policy: dict,
    attempt_number: int,
    retry_after_seconds: float | None,
    jitter_ratio: float,
    retry_after_max_seconds: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds from now until the next attempt.

    The backoff delay is stretched by a random ``0..jitter_ratio`` share (jitter only ever adds,
    so the seed's schedule is a floor and many failing deliveries do not retry in lock-step). A
    ``Retry-After`` from the receiver wins when it asks for longer, clamped to
    ``retry_after_max_seconds``.
    """
    rng = rng or random
    delay = backoff_seconds(policy=policy, attempt_number=attempt_number)
    delay *= 1.0 + rng.uniform(0.0, max(jitter_ratio, 0.0))
    if retry_after_seconds is not None:
        delay = max(delay, min(retry_after_seconds, retry_after_max_seconds))
    return delay
