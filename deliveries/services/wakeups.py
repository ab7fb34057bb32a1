"""Wake-ups: the Celery tasks that make due deliveries go out (issue 7), and their queues.

``enqueue_wakeup`` enqueues one ``deliver_due`` task (a batch of whatever is due) unless
``WEBHOOK_MAX_PENDING_WAKEUPS`` of its queue already wait in the broker: the count lives in Redis,
one atomic Lua script per operation (``_COUNT_WAKEUP_LUA``, ``_UNCOUNT_WAKEUP_LUA``); a task
uncounts itself when it starts (``wakeup_started``), ``priority_wakeup_waiting`` reads the count of
the ``priority`` queue and ``forget_pending_wakeups`` resets the counts after a purge.
``enqueue_delivery`` and ``enqueue_on_commit`` wake one delivery (``deliver``). The queue names are ``QUEUE_*``.

The counter's key and expiry (``_PENDING_WAKEUPS_KEY``, ``_PENDING_WAKEUPS_TTL_SECONDS``) are read
only in this module: a test that changes one patches it here.
"""
import functools
import logging

from django.conf import settings
from django.db import transaction

from deliveries.tasks import deliver as deliver_task
from deliveries.tasks import deliver_due as deliver_due_task
from vocelio_webhooks import redis_cache

logger = logging.getLogger(__name__)


QUEUE_FIRST_ATTEMPTS = "deliveries"
QUEUE_PRIORITY = "priority"
QUEUE_RETRIES = "retries"


def enqueue_delivery(delivery_id: int, countdown: float | None = None, queue: str | None = None) -> None:
    """Enqueue the per-delivery ``deliver`` task for ``delivery_id`` (a retry's countdown in
    seconds, a replay, the sweep); a broker failure is logged, not raised: the sweep re-enqueues.

    Queues (served in this order by workers on Redis): ``priority`` (first attempts of
    high-priority event types), ``deliveries`` (first attempts), ``retries`` — so a backlog of
    retries to a failing endpoint never delays fresh deliveries to healthy ones.
    """
    try:
        deliver_task.apply_async((delivery_id,), countdown=countdown or None, queue=queue or QUEUE_FIRST_ATTEMPTS)
    except Exception:  # any broker error; the database still holds the delivery
        logger.warning("Could not enqueue delivery %s; the sweep will pick it up", delivery_id, exc_info=True)


# Wake-ups waiting in the broker, counted per queue in Redis (the cache) so that publishing a
# burst of events does not enqueue one Celery task per event: see ``enqueue_wakeup``. The key goes
# through the cache's ``make_key`` (so "vocelio:1:deliveries:wakeups-pending:<queue>").
_PENDING_WAKEUPS_KEY = "deliveries:wakeups-pending:{queue}"
# The counter starts again from zero at most this long after it was first counted (the expiry is
# set when the key has none and never pushed back), so a wake-up lost without starting (a purged
# broker, a SIGKILLed worker) cannot suppress others for longer than this.
_PENDING_WAKEUPS_TTL_SECONDS = 10

# Each counter operation is ONE Lua script, atomic in Redis. Django's ``incr``/``decr`` are EXISTS
# then INCRBY: a key expiring between the two was re-created by INCRBY without an expiry, and an
# over-count then never reset (at the limit, publishing stopped enqueuing wake-ups for good).
# KEYS[1] counter; ARGV[1] limit, ARGV[2] expiry (s). Returns 1: enqueue, 0: the limit waits already.
_COUNT_WAKEUP_LUA = """
local waiting = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if waiting > tonumber(ARGV[1]) then
    redis.call('DECR', KEYS[1])
    return 0
end
return 1
"""
# KEYS[1] counter. Decrements an existing counter above zero; never creates the key.
_UNCOUNT_WAKEUP_LUA = """
local waiting = tonumber(redis.call('GET', KEYS[1]))
if waiting and waiting > 0 then
    return redis.call('DECR', KEYS[1])
end
return 0
"""


def _pending_wakeups_redis():
    """``(client, make_key)`` for counting waiting wake-ups in the Redis cache, or ``None`` (no
    counting, every wake-up enqueued) when ``WEBHOOK_MAX_PENDING_WAKEUPS`` is 0 or less or the cache
    is not Redis: a per-process or database cache cannot count atomically for every process."""
    if settings.WEBHOOK_MAX_PENDING_WAKEUPS <= 0:
        return None
    return redis_cache.raw_client()


def enqueue_wakeup(queue: str | None = None, countdown: float | None = None) -> None:
    """Enqueue one ``deliver_due`` wake-up (a batch of whatever is due); a broker failure is logged,
    not raised: the sweep finds the due deliveries.

    Skipped when ``WEBHOOK_MAX_PENDING_WAKEUPS`` wake-ups of the same queue are already waiting
    in the broker (counted in Redis by one atomic Lua script; each ``deliver_due`` task uncounts
    itself when it starts, ``wakeup_started``): a waiting wake-up starts after the caller's commit
    and claims whatever is due then, so a further one would only claim what the waiting ones take
    anyway (issue 7: a Celery enqueue costs ~1.4 ms of CPU, a task ~2 ms, against ~1 ms to send a
    delivery). The counter expires ``_PENDING_WAKEUPS_TTL_SECONDS`` (10 s) after it was first
    counted, so an over-count (a wake-up lost to a purge or a killed worker) lasts 10 s at most. If
    Redis cannot be reached the wake-up is enqueued. ``countdown`` (seconds) delays its start.
    """
    queue = queue or QUEUE_FIRST_ATTEMPTS
    redis_and_key = _pending_wakeups_redis()
    counted = False
    if redis_and_key is not None:
        client, make_key = redis_and_key
        try:
            # register_script only hashes the source; the call is one EVALSHA (EVAL if not cached)
            allowed = client.register_script(_COUNT_WAKEUP_LUA)(
                keys=[make_key(_PENDING_WAKEUPS_KEY.format(queue=queue))],
                args=[settings.WEBHOOK_MAX_PENDING_WAKEUPS, _PENDING_WAKEUPS_TTL_SECONDS])
            if not allowed:
                return
            counted = True
        except Exception:  # counting is an optimisation: without Redis, enqueue
            logger.warning("Could not count waiting wake-ups; enqueuing one", exc_info=True)
    try:
        deliver_due_task.apply_async((queue == QUEUE_PRIORITY,), queue=queue, countdown=countdown)
    except Exception:  # any broker error; the database still holds the deliveries
        logger.warning("Could not enqueue a delivery wake-up; the sweep will pick the deliveries up", exc_info=True)
        if counted:
            wakeup_started(queue=queue)


def priority_wakeup_waiting() -> bool | None:
    """Whether a wake-up of the ``priority`` queue is waiting to start (its counter in Redis is
    above zero, see ``enqueue_wakeup``); ``None`` when that cannot be told: wake-ups are not
    counted (no Redis cache, ``WEBHOOK_MAX_PENDING_WAKEUPS`` ≤ 0) or Redis cannot be read. A
    priority re-check enqueued with a countdown counts as waiting too."""
    redis_and_key = _pending_wakeups_redis()
    if redis_and_key is None:
        return None
    client, make_key = redis_and_key
    try:
        return int(client.get(make_key(_PENDING_WAKEUPS_KEY.format(queue=QUEUE_PRIORITY))) or 0) > 0
    except Exception:  # the caller then stops draining, as if one waited
        logger.warning("Could not read the priority wake-up counter", exc_info=True)
        return None


def forget_pending_wakeups() -> None:
    """Reset the waiting wake-up counters (delete their keys); call after purging the broker's
    queues, whose wake-ups will never start (otherwise the counters would hold further ones back
    until they expire). Redis errors are logged, not raised."""
    redis_and_key = _pending_wakeups_redis()
    if redis_and_key is None:
        return
    client, make_key = redis_and_key
    try:
        client.delete(*(make_key(_PENDING_WAKEUPS_KEY.format(queue=q)) for q in (QUEUE_PRIORITY, QUEUE_FIRST_ATTEMPTS)))
    except Exception:  # the counters expire on their own
        logger.warning("Could not reset the waiting wake-up counters", exc_info=True)


def wakeup_started(*, queue: str) -> None:
    """Uncount one waiting wake-up of ``queue`` (``enqueue_wakeup``); called when a ``deliver_due``
    task starts, before it claims. One atomic Lua script: an existing counter above zero is
    decremented; a missing one (expired while this wake-up waited) is not re-created, so never
    below zero and never without expiry. Errors are logged, not raised."""
    redis_and_key = _pending_wakeups_redis()
    if redis_and_key is None:
        return
    client, make_key = redis_and_key
    try:
        client.register_script(_UNCOUNT_WAKEUP_LUA)(keys=[make_key(_PENDING_WAKEUPS_KEY.format(queue=queue))])
    except Exception:  # the counter expires on its own
        logger.warning("Could not uncount a wake-up", exc_info=True)


def enqueue_on_commit(delivery_id: int, countdown: float | None = None, queue: str | None = None) -> None:
    """Enqueue ``deliver(delivery_id)`` after the current transaction commits (STYLE.md rule 8)."""
    transaction.on_commit(functools.partial(enqueue_delivery, delivery_id, countdown, queue), robust=True)
