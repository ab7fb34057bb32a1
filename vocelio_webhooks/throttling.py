"""Per-API-key request throttling (DRF throttle class; issue 5, "throttled per key").

Two budgets per key, per minute: ``WEBHOOK_PUBLISH_RATE_PER_MINUTE`` for requests that need the
``events:publish`` scope (publishing, adding event types) and ``WEBHOOK_API_RATE_PER_MINUTE``
for everything else, so a busy publisher does not lock itself out of reading its deliveries.
``0`` switches a budget off. Over budget the API answers 429 ``RATE_LIMITED`` with
``Retry-After`` (``vocelio_webhooks.api.exception_handler``).

Why not DRF's ``SimpleRateThrottle``: it stores one timestamp per request in the cache and
rewrites the whole list on every request (6,000 floats per key at the publish rate). This class
keeps two integers per key instead (a sliding-window counter: this minute's count plus the
previous minute's, weighted by how much of it still overlaps the last 60 s), which also works
as an atomic ``INCR`` on Redis. The counters live in Django's default cache (Redis when
``REDIS_URL`` is set, else the database), so every gunicorn worker shares one budget.

On Redis a request costs one round trip (``_count_redis``): this window's counter is incremented
first and the previous window's read in the same pipeline; a refused request takes its count back
(a second round trip, only when refusing). Through the cache API it took three (``MGET``, then
``EXISTS`` and ``INCR``) and two new redis-py clients, ~12 % of a publish's CPU (issue 7).
"""
import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from . import redis_cache
from .models import Scope
from .permissions import required_scopes_for

WINDOW_SECONDS = 60


def window_wait_seconds(*, limit: int, current: int, previous: int, elapsed: float) -> float:
    """Seconds until one more request fits a sliding-window budget of ``limit`` per
    ``WINDOW_SECONDS``, given this window's ``current`` count, the previous window's
    ``previous`` count and the seconds ``elapsed`` since this window began. 0 when it fits now.

    The estimate is ``previous × (1 − elapsed / window) + current`` (Cloudflare's sliding
    window counter). Pure function.
    """
    if previous * (1 - elapsed / WINDOW_SECONDS) + current + 1 <= limit:
        return 0.0
    if current + 1 > limit:
        # Not before the next window, where this window's count becomes the weighted one.
        until_next = WINDOW_SECONDS - elapsed
        later = WINDOW_SECONDS * (1 - (limit - 1) / current) if current else 0.0
        return until_next + max(0.0, later)
    # Within this window, once enough of the previous one has slid out.
    return max(0.0, WINDOW_SECONDS * (1 - (limit - current - 1) / previous) - elapsed)


logger = logging.getLogger(__name__)


class ApiKeyRateThrottle(BaseThrottle):
    """Throttle keyed by API key (id and prefix). Requests without an API key (``/health``, the
    docs) are not throttled here; they are refused or served before any key is involved."""

    def allow_request(self, request, view) -> bool:
        self._wait = None
        principal = request.user
        key_id = getattr(principal, "api_key_id", None)
        if key_id is None:
            return True
        publishing = Scope.EVENTS_PUBLISH.value in (required_scopes_for(request, view) or ())
        bucket = "publish" if publishing else "api"
        limit = settings.WEBHOOK_PUBLISH_RATE_PER_MINUTE if publishing else settings.WEBHOOK_API_RATE_PER_MINUTE
        if limit <= 0:
            return True
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        base = f"throttle:{bucket}:{key_id}.{getattr(principal, 'prefix', '')}"
        current_key, previous_key = f"{base}:{window}", f"{base}:{window - 1}"
        try:
            return self._count(limit=limit, now=now, window=window, current_key=current_key, previous_key=previous_key)
        except Exception:  # a cache (Redis) outage must not take the API down with it
            logger.warning("Rate-limit cache unavailable; request allowed unthrottled", exc_info=True)
            return True

    def _count(self, *, limit: int, now: float, window: int, current_key: str, previous_key: str) -> bool:
        redis_and_key = redis_cache.raw_client()
        if redis_and_key is not None:
            return self._count_redis(*redis_and_key, limit=limit, elapsed=now - window * WINDOW_SECONDS,
                                     current_key=current_key, previous_key=previous_key)
        counts = cache.get_many([current_key, previous_key])
        wait = window_wait_seconds(
            limit=limit, current=counts.get(current_key, 0), previous=counts.get(previous_key, 0),
            elapsed=now - window * WINDOW_SECONDS,
        )
        if wait > 0:
            self._wait = wait
            return False
        try:
            cache.incr(current_key)
        except ValueError:
            # First request of this window (or a race with another worker: then count on it).
            if not cache.add(current_key, 1, timeout=2 * WINDOW_SECONDS + 5):
                cache.incr(current_key)
        return True

    def _count_redis(self, client, make_key, *, limit: int, elapsed: float, current_key: str,
                     previous_key: str) -> bool:
        """Count this request in one round trip: ``INCR`` this window's counter (and set its
        expiry) and ``GET`` the previous window's, in one pipeline. The decision is
        ``window_wait_seconds`` on the count before this request, as in ``_count``; a refused
        request is taken back with ``DECR``. Between the two, a concurrent request of the same key
        sees one more than was allowed, so at the very edge of the budget it may be refused where
        a check-then-increment would have let it through; never the other way round. If the
        ``DECR`` fails, the request is still refused (logged): the over-count lasts until the window
        slides out."""
        current_key, previous_key = make_key(current_key), make_key(previous_key)
        pipe = client.pipeline(transaction=False)
        pipe.incr(current_key)
        pipe.expire(current_key, 2 * WINDOW_SECONDS + 5)
        pipe.get(previous_key)
        current, _, previous = pipe.execute()
        wait = window_wait_seconds(limit=limit, current=current - 1, previous=int(previous or 0), elapsed=elapsed)
        if wait > 0:
            self._wait = wait
            try:
                client.decr(current_key)
            except Exception:  # the refusal stands; the window then counts this request too
                logger.warning("Could not take back a refused request's count", exc_info=True)
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
