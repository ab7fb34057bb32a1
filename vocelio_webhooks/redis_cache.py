"""The raw redis-py client behind Django's Redis cache, for the few counters that need more than
the cache API offers (atomic scripts, several commands in one round trip)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis


def raw_client() -> tuple[redis.Redis, Callable[[str], str]] | None:
    """``(client, make_key)`` for the default cache when it is Redis, else ``None``.

    ``client`` is the redis-py client Django's ``RedisCache`` would use for a write: the cache's
    connection pool, its server (the first of ``LOCATION``) and ``OPTIONS``. ``make_key`` turns a
    cache key into the stored one (``KEY_PREFIX``, version), so values written here and through
    ``django.core.cache.cache`` are the same keys. Integers are stored by Django's Redis serializer
    as plain numbers, so ``INCR`` on them works either way.

    Kept on the cache object (one per thread): Django builds a new redis-py client for every cache
    call (``RedisCacheClient.get_client``), which costs ~0.06 ms of CPU, at every API request
    (the rate limit) and every publish and batch (the wake-up counter). Relies on Django's
    ``RedisCache._cache`` (its ``RedisCacheClient``), unchanged from Django 4.0 to 5.2.
    """
    cache = caches["default"]
    if not isinstance(cache, RedisCache):
        return None
    client = getattr(cache, "_vocelio_raw_client", None)
    if client is None:
        client = cache._vocelio_raw_client = cache._cache.get_client(write=True)
    return client, cache.make_key
