"""The batch worker's claim (issue 7; the overview is ``deliveries.services.batch``'s docstring):
take up to a batch of due deliveries with one ``UPDATE … RETURNING`` (``claim_due``), at most
``WEBHOOK_ENDPOINT_MAX_IN_FLIGHT`` requests' worth per endpoint (``endpoints_at_cap_sql``, also
the sweep's definition of "at its cap"), load them with their events and endpoints
(``_claim_deliveries``, ``_attach``), and give back those a gate holds (``_release``).
"""
import functools
import logging
import time

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from deliveries.models import Delivery
from deliveries.services import wakeups
from endpoints.models import WebhookEndpoint

logger = logging.getLogger(__name__)

# PostgreSQL advisory lock key serialising claims (see claim_due); any constant unique to this use.
CLAIM_LOCK_KEY = 0x766F63656C696F  # "vocelio"
# How stale the count of active endpoints that picks the claim's statement may be (_active_endpoints).
ACTIVE_COUNT_SECONDS = 30.0


def endpoints_at_cap_sql() -> str:
    """A ``SELECT`` of the ids of endpoints with ``WEBHOOK_ENDPOINT_MAX_IN_FLIGHT`` ×
    ``batch_max_events`` deliveries in flight, without parameters (the cap is an integer setting,
    the status a constant), for ``NOT IN``: the one definition of "at its cap" for the claim and
    the sweep. In-flight rows are few, so it is one small grouped scan."""
    delivery, endpoint = Delivery._meta.db_table, WebhookEndpoint._meta.db_table
    return (f"SELECT f.endpoint_id FROM {delivery} f JOIN {endpoint} fe ON fe.id = f.endpoint_id "
            f"WHERE f.status = '{Delivery.Status.IN_FLIGHT.value}' GROUP BY f.endpoint_id, fe.batch_max_events "
            f"HAVING COUNT(*) >= {int(settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT)} * fe.batch_max_events")


def _claim_sql(vendor: str, high_priority_only: bool, returning: str = "id") -> str:
    from events.models import Event, EventType

    delivery = Delivery._meta.db_table
    endpoint = WebhookEndpoint._meta.db_table
    priority = (f"JOIN {Event._meta.db_table} ev ON ev.id = d.event_id "
                f"JOIN {EventType._meta.db_table} et ON et.id = ev.event_type_id AND et.is_high_priority"
                if high_priority_only else "")
    lock = "FOR UPDATE OF d SKIP LOCKED" if vendor == "postgresql" else ""
    # The claim lasts the endpoint's timeout + WEBHOOK_CLAIM_MARGIN_SECONDS, as in the single path.
    seconds = f"((SELECT t.timeout_seconds FROM {endpoint} t WHERE t.id = {delivery}.endpoint_id) + %(margin)s)"
    if vendor == "postgresql":
        claimed_until = f"%(now)s + {seconds} * INTERVAL '1 second'"
    else:
        claimed_until = f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', %(now)s, '+' || {seconds} || ' seconds')"
    # The inner scan takes the oldest due rows (index delivery_claim_order_idx) of endpoints not at
    # their cap already: otherwise one slow endpoint with more than %(scan)s older due rows would
    # fill every scan and the claim would take nothing at all (the in-flight rows are few, the
    # NOT IN is one hashed lookup). The window function then keeps at most (cap × batch_max_events
    # - in flight) per endpoint: the cap counts requests, and a batching endpoint's request
    # carries up to batch_max_events deliveries.
    return f"""
        UPDATE {delivery} SET status = %(in_flight)s, claimed_until = {claimed_until}, updated_at = %(now)s
        WHERE id IN (
            SELECT c.id FROM (
                SELECT s.id, s.endpoint_id, s.next_attempt_at, s.batch_max_events,
                       ROW_NUMBER() OVER (PARTITION BY s.endpoint_id ORDER BY s.next_attempt_at, s.id) AS rn
                FROM (
                    SELECT d.id, d.endpoint_id, d.next_attempt_at, e.batch_max_events FROM {delivery} d
                    JOIN {endpoint} e ON e.id = d.endpoint_id AND e.status = %(active)s {priority}
                    WHERE d.status IN (%(pending)s, %(retrying)s) AND NOT d.held AND d.attempt_count >= 0
                      AND d.next_attempt_at <= %(now)s
                      AND d.endpoint_id NOT IN ({endpoints_at_cap_sql()})
                    ORDER BY d.next_attempt_at, d.id LIMIT %(scan)s {lock}
                ) s
            ) c
            WHERE c.rn <= %(cap)s * c.batch_max_events - (SELECT COUNT(*) FROM {delivery} f
                                     WHERE f.endpoint_id = c.endpoint_id AND f.status = %(in_flight)s)
            ORDER BY c.next_attempt_at, c.id LIMIT %(limit)s
        ) AND status IN (%(pending)s, %(retrying)s) AND next_attempt_at <= %(now)s
        RETURNING {returning}"""


def _per_endpoint_claim_sql(returning: str) -> str:
    """PostgreSQL's ordinary claim while some endpoint is at its in-flight cap and there are at
    most ``WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS`` active endpoints (``_claim``): each active
    endpoint with room under its cap gives its own oldest due rows (index
    ``delivery_endpoint_due_idx``, at most its room and ``%(limit)s``), and the oldest
    ``%(limit)s`` of those are claimed. Its cost grows with the endpoints that have room times
    what each gives (up to ~50 ms with 1,000 endpoints of 50 due rows each, the review), never with
    the rows waiting for an endpoint at its cap, which the oldest-first scan of ``_claim_sql``
    walks at every claim (26–38 ms a claim behind 100,000 of them, 3–5 ms here;
    ``bench/paused_backlog.py --capped``).

    Only the chosen rows are locked (``FOR UPDATE SKIP LOCKED`` by primary key, re-checking that
    they are still due), not every row read: locking all of them wrote up to 50,000 row locks
    (2.8 MB of WAL) a claim in the review's fan-out shapes. The re-check is written as one
    ``(…) IS TRUE`` so that no partial index's condition follows from it: as plain conditions they
    let the planner read every due row through an index to find the chosen ones.

    The plan is pinned, not left to statistics (with few endpoints the planner walked
    ``delivery_claim_order_idx`` inside the per-endpoint subquery, filtering on the endpoint: the
    very walk this avoids): that index's condition includes ``attempt_count >= 0``, always true,
    which this statement does not state, so PostgreSQL cannot use it here; of the indexes left,
    only ``delivery_endpoint_due_idx`` gives the order without a sort, which the claim's
    transaction turns off (with sequential scans). The ids are collected once (``ARRAY(…)``) and
    updated by primary key alone: a condition on status or time in the ``UPDATE`` let the
    planner scan every due row for them."""
    delivery, endpoint = Delivery._meta.db_table, WebhookEndpoint._meta.db_table
    seconds = f"((SELECT t.timeout_seconds FROM {endpoint} t WHERE t.id = {delivery}.endpoint_id) + %(margin)s)"
    return f"""
        UPDATE {delivery} SET status = %(in_flight)s, claimed_until = %(now)s + {seconds} * INTERVAL '1 second',
               updated_at = %(now)s
        WHERE id = ANY(ARRAY(
            SELECT l.id FROM {delivery} l
            WHERE l.id = ANY(ARRAY(
                SELECT c.id FROM (
                    SELECT e.id AS endpoint_id, %(cap)s * e.batch_max_events - COALESCE(f.n, 0) AS room
                    FROM {endpoint} e LEFT JOIN (
                        SELECT endpoint_id, COUNT(*) AS n FROM {delivery} WHERE status = %(in_flight)s
                        GROUP BY endpoint_id) f ON f.endpoint_id = e.id
                    WHERE e.status = %(active)s AND %(cap)s * e.batch_max_events > COALESCE(f.n, 0)
                ) r CROSS JOIN LATERAL (
                    SELECT d.id, d.next_attempt_at FROM {delivery} d
                    WHERE d.endpoint_id = r.endpoint_id AND d.status IN (%(pending)s, %(retrying)s) AND NOT d.held
                      AND d.next_attempt_at <= %(now)s
                    ORDER BY d.endpoint_id, d.next_attempt_at, d.id LIMIT GREATEST(LEAST(r.room, %(limit)s), 0)
                ) c
                ORDER BY c.next_attempt_at, c.id LIMIT %(limit)s
            )) AND (l.status IN (%(pending)s, %(retrying)s) AND NOT l.held AND l.next_attempt_at <= %(now)s) IS TRUE
            FOR UPDATE OF l SKIP LOCKED
        ))
        RETURNING {returning}"""


# (monotonic time, active endpoints) of the last count: the claim picks its statement by it.
_active_endpoints_seen: tuple[float, int] = (float("-inf"), 0)


def _active_endpoints() -> int:
    """Active endpoints, counted at most every ``ACTIVE_COUNT_SECONDS`` per process."""
    global _active_endpoints_seen
    seen_at, count = _active_endpoints_seen
    if time.monotonic() - seen_at > ACTIVE_COUNT_SECONDS:
        count = WebhookEndpoint.objects.filter(status=WebhookEndpoint.Status.ACTIVE).count()
        _active_endpoints_seen = (time.monotonic(), count)
    return count


def high_priority_due() -> bool:
    """True when a delivery of a high-priority event type to an active endpoint is due now and
    not held (the priority claim skips held rows until the sweep releases them)."""
    return Delivery.objects.filter(
        status__in=Delivery.DUE_STATUSES, held=False, next_attempt_at__lte=timezone.now(),
        endpoint__status=WebhookEndpoint.Status.ACTIVE, event__event_type__is_high_priority=True,
    ).exists()


def claim_due(*, limit: int, high_priority_only: bool = False) -> list[int]:
    """Claim up to ``limit`` due deliveries (one statement, see ``deliveries.services.batch``'s
    docstring); returns their ids in ascending order (oldest first: ``UPDATE … RETURNING`` itself
    promises no order).
    ``high_priority_only`` claims only deliveries of high-priority event types (a wake-up from the
    ``priority`` queue), so they overtake a backlog of ordinary ones.
    The claim lasts the endpoint's timeout plus ``WEBHOOK_CLAIM_MARGIN_SECONDS``; after that the
    sweep makes an abandoned delivery due again (at-least-once)."""
    return sorted(row[0] for row in _claim(limit=limit, high_priority_only=high_priority_only, returning="id"))


def _claim(*, limit: int, high_priority_only: bool, returning: str) -> list[tuple]:
    """The claim of ``claim_due``; returns the claimed rows' ``returning`` columns (SQL), unordered."""
    if limit <= 0:
        return []
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = {"in_flight": Delivery.Status.IN_FLIGHT, "pending": Delivery.Status.PENDING,
              "retrying": Delivery.Status.RETRYING, "active": WebhookEndpoint.Status.ACTIVE, "now": now,
              "margin": settings.WEBHOOK_CLAIM_MARGIN_SECONDS, "scan": limit * 4, "limit": limit,
              "cap": settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT}
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":  # SQLite has one writer at a time: claims are serial already
            cursor.execute(_claim_sql(connection.vendor, high_priority_only, returning), params)
            return cursor.fetchall()
        # Claims run one at a time (a transaction advisory lock, held for one statement of a few
        # ms): each counts the endpoint's in-flight rows in its own snapshot, so two claims at once
        # could both fill the same endpoint's cap (the bench saw 4 in flight at a cap of 2). The
        # lock ends with the claim's commit, so the next claim sees it, and nothing (an exception,
        # a time limit) can leave the lock held by a pooled connection.
        with transaction.atomic():
            # Same statement, no extra round trip: for this transaction only, an ordinary claim
            # steers the planner to read the due rows in delivery_claim_order_idx order and stop
            # after %(scan)s usable ones. Without it, on a table whose statistics say there is
            # little to do (never analyzed, freshly truncated, or analyzed before the backlog
            # grew) PostgreSQL joins from the endpoints and sorts the whole backlog at every
            # claim: 11 ms at 10,000 due rows and growing, under the claim lock. With sorts
            # disabled it still sorts where it must (the window, the final order: at most
            # %(scan)s rows); the high costs this gives the plan must not start JIT compilation
            # (hundreds of ms), hence jit off too. Paused endpoints' due rows, older than the
            # active ones, would be walked at every claim (~0.9 ms per 1,000): the sweep holds them
            # (sweep.hold_and_release), out of the index. A priority claim is not steered: its
            # rows are the newest, so the walk would cross the backlog.
            # The per-endpoint statement (_per_endpoint_claim_sql) is used when some endpoint is at
            # its cap, the one case where the scan walks rows it cannot take (asked in the same
            # round trip); it is steered too, and reads nothing but by index (on a table that looks
            # small it updated its ids by scanning the whole table).
            may_per_endpoint = (not high_priority_only
                                and 0 < _active_endpoints() <= settings.WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS)
            steer = ("" if high_priority_only
                     else ", set_config('enable_sort', 'off', true), set_config('jit', 'off', true)")
            if may_per_endpoint:
                steer += f", set_config('enable_seqscan', 'off', true), EXISTS ({endpoints_at_cap_sql()})"
            cursor.execute(f"SELECT pg_advisory_xact_lock(%s){steer}", [CLAIM_LOCK_KEY])
            per_endpoint = may_per_endpoint and cursor.fetchone()[-1]
            cursor.execute(_per_endpoint_claim_sql(returning) if per_endpoint
                           else _claim_sql(connection.vendor, high_priority_only, returning), params)
        # The rows are already here (client-side cursor); turning them into Python values
        # after the commit keeps that work out of the lock every claim waits for.
        return cursor.fetchall()


@functools.cache
def _returned_fields() -> tuple | None:
    """The delivery fields a claim can return and build ``Delivery`` instances from as they are
    (``Model.from_db``), or ``None`` when that is not safe: off PostgreSQL (SQLite hands back
    timestamps as text), or once a field needs converting from its database value (JSON, say),
    which only a queryset does."""
    fields = tuple(Delivery._meta.concrete_fields)
    if connection.vendor != "postgresql" or any(hasattr(f, "from_db_value") for f in fields):
        return None
    return fields


def _claim_deliveries(*, limit: int, high_priority_only: bool) -> tuple[int, list[Delivery]]:
    """Claim up to ``limit`` due deliveries (``claim_due``) and load them with their events and
    endpoints (``_attach``). Returns ``(claimed, deliveries)``: ``deliveries`` may be fewer than
    ``claimed`` (an endpoint or event deleted meanwhile, see ``_attach``).

    On PostgreSQL the claim's ``UPDATE … RETURNING`` hands back the whole delivery rows, as they
    are after the claim, so there is no separate read of them (one statement and ~1.5 ms of
    client CPU less per batch of 50, issue 7); elsewhere the claimed ids are read back."""
    fields = _returned_fields()
    if fields is None:
        ids = claim_due(limit=limit, high_priority_only=high_priority_only)
        return len(ids), _attach(list(Delivery.objects.filter(pk__in=ids).order_by("next_attempt_at", "id")))
    quote = connection.ops.quote_name
    rows = _claim(limit=limit, high_priority_only=high_priority_only,
                  returning=", ".join(quote(f.column) for f in fields))
    names = [f.attname for f in fields]
    deliveries = [Delivery.from_db(connection.alias, names, row) for row in rows]
    deliveries.sort(key=lambda d: (d.next_attempt_at, d.pk))
    return len(rows), _attach(deliveries)


def _attach(deliveries: list[Delivery]) -> list[Delivery]:
    """The claimed ``deliveries`` (oldest first) with their events (each with its event type) and
    endpoints (each with its ``EndpointHealth`` row, or ``None``, in ``batch._health``), as two reads
    per batch: each endpoint, event and event type is read once and shared by its deliveries
    (decrypting an endpoint's secrets and decoding its JSON fields cost more than the delivery row
    itself, and the deliveries of one event, a fan-out, would otherwise decode its ``data`` once
    each; the batch never changes them; the event type's ``sample_data`` is not read at all). Read
    after the claim, so the configuration is the current one. A delivery whose endpoint was
    deleted since the claim is left out: its claim expires and the sweep cancels it
    (``attempt_delivery``); so is one whose event was deleted meanwhile (its delivery row goes
    with it)."""
    from events.models import Event

    events = Event.objects.select_related("event_type").defer("event_type__sample_data").in_bulk(
        {d.event_id for d in deliveries})
    endpoints = WebhookEndpoint.objects.select_related("health").in_bulk(
        {d.endpoint_id for d in deliveries if d.endpoint_id})
    kept = []
    for delivery in deliveries:
        endpoint, event = endpoints.get(delivery.endpoint_id), events.get(delivery.event_id)
        if endpoint is not None and event is not None:
            delivery.event, delivery.endpoint = event, endpoint
            kept.append(delivery)
    return kept


def _release(deliveries: list[Delivery], *, until, reason: str) -> None:
    """Give claimed deliveries back (no attempt spent) until ``until`` and re-arm their wake-ups."""
    now = timezone.now()
    for first_attempt in (True, False):
        ids = [d.pk for d in deliveries if (d.attempt_count == 0) == first_attempt]
        if ids:
            Delivery.objects.filter(pk__in=ids, status=Delivery.Status.IN_FLIGHT).update(
                status=Delivery.Status.PENDING if first_attempt else Delivery.Status.RETRYING,
                next_attempt_at=until, claimed_until=None, updated_at=now)
    delay = max((until - now).total_seconds(), 0.05)
    if delay <= settings.WEBHOOK_COUNTDOWN_MAX_SECONDS:
        for delivery in deliveries:
            wakeups.enqueue_delivery(delivery.pk, countdown=delay,
                             queue=wakeups.QUEUE_RETRIES if delivery.attempt_count else wakeups.QUEUE_FIRST_ATTEMPTS)
    logger.debug("%s deliveries released (%s) until %s", len(deliveries), reason, until)
