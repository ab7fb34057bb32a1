"""Publishing: store an event and fan it out to one delivery per matching endpoint."""
import contextlib
import functools
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models.sql import InsertQuery
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery
from endpoints import routing as endpoint_routing
from endpoints.filters import FilterValidationError, evaluate_filters, shared_evaluation
from endpoints.models import WebhookEndpoint
from events.models import Environment, Event, EventType
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.errors import Conflict, ServiceUnavailable, ValidationFailed

logger = logging.getLogger(__name__)
EVENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}\Z")


@dataclass(frozen=True)
class PublishResult:
    """``created`` is False when ``event_id`` had been published before (in the same
    environment): ``event`` and ``deliveries`` are then the first publication's (replays left
    out), and nothing new was created."""

    event: Event
    created: bool
    deliveries: list[Delivery] = field(default_factory=list)
    matched_endpoints: int = 0
    filtered_out: int = 0


def generate_event_id() -> str:
    """``evt_`` + 24 hex characters."""
    return f"evt_{secrets.token_hex(12)}"


def publish(
    *,
    event_type: str,
    data: dict[str, Any],
    event_id: str | None = None,
    timestamp: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    environment: str | None = None,
    back_pressure: bool = True,
) -> PublishResult:
    """Publish an event (``POST /events/publish``).

    Atomically: the ``Event`` row (idempotent on ``event_id``) and one ``pending`` ``Delivery`` per
    endpoint of the same environment whose ``events`` patterns match, whose payload ``filters``
    match (``endpoints.filters.evaluate_filters``; a filtered-out endpoint gets no delivery and is
    counted in ``filtered_out``) and whose status is ``active`` or ``paused`` (a paused endpoint's
    deliveries wait; a disabled endpoint gets none). Wake-ups are enqueued after commit; if the
    broker is down they are logged and the sweep sends them. ``timestamp`` defaults to now and
    ``environment`` to ``WEBHOOK_DEFAULT_ENVIRONMENT``. Raises ``ValidationFailed`` (400) for an
    unknown event type, environment or malformed ``event_id``, and ``Conflict`` (409
    ``EVENT_ID_CONFLICT``) when ``event_id`` was published in another environment (``_duplicate``),
    and ``ServiceUnavailable`` (503 ``QUEUE_FULL``) while ``WEBHOOK_MAX_QUEUE_SIZE`` deliveries wait
    (``_queue_full``), unless ``back_pressure`` is False: the service's own alerts (``system.*``
    events about an endpoint disabled, a backlog) pass, as they matter most when the queue is full,
    and are few (throttled per endpoint, one per alert state change).

    Cost (issue 7): event types and endpoints come from the per-process routing cache
    (``endpoints.routing``, one primary-key SELECT of its version when nothing changed), and the
    idempotency check is the unique index itself: the INSERT is tried and a duplicate falls back to
    the first publication. So a new event costs that SELECT and one INSERT statement on
    PostgreSQL (``_store``). An endpoint deleted between the routing read and the INSERT fails the
    INSERT's foreign key; the publish is then routed once more on a fresh snapshot.
    """
    for attempt in (1, 2):
        routing = endpoint_routing.current()
        type_route = routing.event_types.get(event_type)
        if type_route is None:
            raise ValidationFailed(
                f"Unknown event type {event_type!r}. Create it first (see GET /event-types).",
                details={"event_type": event_type}, code="UNKNOWN_EVENT_TYPE",
            )
        environment = environment or settings.WEBHOOK_DEFAULT_ENVIRONMENT
        if environment not in Environment.values:
            raise ValidationFailed(
                f"Unknown environment {environment!r}.", details={"allowed": Environment.values},
                code="VALIDATION_ERROR",
            )
        if event_id is not None and not EVENT_ID_RE.match(event_id):
            raise ValidationFailed(
                "event_id must be 1-255 characters: letters, digits, '_', '.', ':' or '-'.",
                details={"event_id": event_id}, code="VALIDATION_ERROR",
            )
        event_id = event_id or generate_event_id()
        queue_full = _queue_full() if back_pressure else None
        if queue_full is not None:
            # A repeat of an event_id creates nothing, so it is answered (200, the first
            # publication) even while new events are refused.
            existing = _published(event_id)
            if existing is not None:
                return _duplicate(existing, environment=environment)
            raise queue_full
        # The type as loaded with .only(): its other fields (category, ...) load on first access.
        type_row = EventType.from_db(connection.alias, ["id", "name", "is_high_priority"],
                                     [type_route.id, type_route.name, type_route.is_high_priority])
        event = Event(event_id=event_id, event_type=type_row, timestamp=timestamp or timezone.now(), data=data,
                      metadata=metadata or {}, environment=environment)
        subscribed = routing.subscribed(environment=environment, event_type=type_route.name)
        # No filter (null or []) matches everything: the envelope is only built when one is needed.
        envelope = None
        endpoints = []
        with shared_evaluation():  # a long field is indexed once for every endpoint's filters
            for endpoint in subscribed:
                if endpoint.filters is not None and endpoint.filters != []:
                    envelope = envelope or filter_envelope(event)
                    if not _filters_match(endpoint, envelope):
                        continue
                endpoints.append(endpoint)
        try:
            deliveries = _store(event=event, endpoint_ids=[e.id for e in endpoints], now=timezone.now())
            break
        except IntegrityError:
            # event_id was published before (or a concurrent publish of it won): answer the first.
            existing = _published(event_id)
            if existing is not None:
                return _duplicate(existing, environment=environment)
            # Else an endpoint (or the event type) was deleted between the routing read and the
            # INSERT (its foreign key failed): route once more on a fresh snapshot.
            if attempt == 2:
                raise
    # After commit (at once when _store committed by itself): wake-ups, not one task per delivery;
    # each claims a batch of whatever is due (issue 7).
    delivery_services.enqueue_wakeups_on_commit(
        deliveries=sum(1 for e in endpoints if e.status == WebhookEndpoint.Status.ACTIVE),
        queue="priority" if type_route.is_high_priority else None,
    )
    return PublishResult(
        event=event, created=True, deliveries=deliveries, matched_endpoints=len(endpoints),
        filtered_out=len(subscribed) - len(endpoints),
    )


def _store(*, event: Event, endpoint_ids: list[int], now: datetime) -> list[Delivery]:
    """Insert ``event`` and one ``pending`` delivery of it per endpoint id (due ``now``), atomically;
    return the deliveries, ordered by id. Raises ``IntegrityError`` when ``event.event_id`` exists.

    PostgreSQL outside a transaction: ONE statement (the event INSERT and the deliveries INSERT
    in a data-modifying ``WITH``), which PostgreSQL commits on its own, durably
    (``synchronous_commit`` stays on), before it answers: one round trip instead of four (BEGIN,
    two INSERTs, COMMIT), and the same all-or-nothing guarantee. Inside a caller's transaction it
    runs in a savepoint. Elsewhere (SQLite): the two INSERTs in ``transaction.atomic``.

    The delivery rows differ only in ``endpoint_id``, so they are one ``INSERT ... SELECT`` over
    the ids (``unnest`` / ``json_each``) whose other columns are the values Django prepares for one
    template ``Delivery`` (defaults, ``auto_now``): a column added to the model later is filled as
    ``bulk_create`` would fill it. ``bulk_create`` prepares every field of every row in Python,
    ~90 µs a row here (9 ms for 100 endpoints); this costs about the same for 1 row or 1,000.
    """
    vendor = connection.vendor
    if vendor == "postgresql":
        event_sql, event_params = _event_insert_sql(event)
        columns, selected, params, values = _delivery_columns(event=event, now=now, vendor=vendor)
        table, endpoint_column, event_column = _delivery_names()
        sql = (f"WITH ev AS ({event_sql} RETURNING id), "
               f"d AS (INSERT INTO {table} ({', '.join(columns)}, {event_column}, {endpoint_column}) "
               f"SELECT {', '.join(selected)}, ev.id, ids.value FROM ev, unnest(%s::bigint[]) AS ids(value) "
               f"RETURNING id, {endpoint_column}) "
               "SELECT ev.id, d.id, d.endpoint_id FROM ev LEFT JOIN d ON true")
        savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
        with savepoint, connection.cursor() as cursor:
            cursor.execute(sql, [*event_params, *params, list(endpoint_ids)])
            rows = cursor.fetchall()
        event.pk = rows[0][0]
        event._state.adding, event._state.db = False, connection.alias
        return _delivery_objects(event=event, created=[(pk, e) for _, pk, e in rows if pk is not None], values=values)
    with transaction.atomic():
        event.save(force_insert=True)
        if not endpoint_ids:
            return []
        if vendor != "sqlite":
            return Delivery.objects.bulk_create(
                [Delivery(event=event, endpoint_id=endpoint_id, next_attempt_at=now) for endpoint_id in endpoint_ids])
        columns, selected, params, values = _delivery_columns(event=event, now=now, vendor=vendor)
        table, endpoint_column, event_column = _delivery_names()
        sql = (f"INSERT INTO {table} ({', '.join(columns)}, {event_column}, {endpoint_column}) "
               f"SELECT {', '.join(selected)}, %s, ids.value FROM json_each(%s) AS ids "
               f"RETURNING id, {endpoint_column}")
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, event.pk, json.dumps(endpoint_ids)])
            created = cursor.fetchall()
    return _delivery_objects(event=event, created=created, values=values)


def _event_insert_sql(event: Event) -> tuple[str, list]:
    """``INSERT INTO events_event (...) VALUES (...)`` for ``event``, without RETURNING, and its
    parameters, as Django's insert compiler makes them (``pre_save``, so ``auto_now_add`` is set
    on ``event``; ``get_db_prep_save``, so JSON is adapted). The statement's text is the same for
    every event, so it is compiled once per process and vendor (``_event_insert_text``); only the
    parameters are worked out per publish (issue 7: ~0.05 ms a publish less). A value that is an
    expression (none of the model's fields makes one today) is compiled in full, as before."""
    fields = _event_fields()
    query = InsertQuery(Event)
    query.insert_values(fields, [event])
    compiler = query.get_compiler(connection=connection)
    params = [compiler.prepare_value(f, compiler.pre_save_val(f, event)) for f in fields]
    text = _event_insert_text(connection.vendor)
    if text is None or any(hasattr(value, "as_sql") for value in params):
        return _compile_event_insert(event)
    return text, params


def _compile_event_insert(event: Event) -> tuple[str, list]:
    query = InsertQuery(Event)
    query.insert_values(_event_fields(), [event])
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    return sql, list(params)


def _event_fields() -> list:
    return [f for f in Event._meta.local_concrete_fields if not f.primary_key]


@functools.cache
def _event_insert_text(vendor: str) -> str | None:
    """The event INSERT's text with one ``%s`` per field (``_event_fields``), compiled by Django
    from a throw-away event (each field gets the plain ``%s`` placeholder: none has its own
    ``get_placeholder``)."""
    sql, params = _compile_event_insert(Event(event_type_id=0, timestamp=timezone.now(), data={}, metadata={}))
    # A field whose value compiled to SQL (a db_default's DEFAULT) has no placeholder: not reusable.
    return sql if len(params) == len(_event_fields()) else None


def _delivery_names() -> tuple[str, str, str]:
    quote = connection.ops.quote_name
    return (quote(Delivery._meta.db_table), quote(Delivery._meta.get_field("endpoint").column),
            quote(Delivery._meta.get_field("event").column))


def _delivery_columns(*, event: Event, now: datetime, vendor: str) -> tuple[list[str], list[str], list, dict]:
    """Column names, SELECT expressions, parameters and Python values (by attname) of the columns
    every delivery of one publish shares (all but ``event_id`` and ``endpoint_id``). The names and
    expressions come from ``_delivery_shape`` (the same for every publish); the values are each
    field's ``pre_save`` on a template ``Delivery``, as ``save()`` would set them."""
    template = Delivery(event=event, next_attempt_at=now)
    fields, columns, selected = _delivery_shape(vendor)
    params, values = [], {}
    for f in fields:
        value = f.pre_save(template, add=True)  # sets auto_now(_add) on the template, as save() does
        values[f.attname] = value
        params.append(f.get_db_prep_save(value, connection))
    return list(columns), list(selected), params, values


@functools.cache
def _delivery_shape(vendor: str) -> tuple[tuple, tuple[str, ...], tuple[str, ...]]:
    """The shared delivery columns once per process and vendor: ``(fields, quoted column names,
    SELECT expressions)``. Quoting and ``cast_db_type`` cost ~0.1 ms a publish when redone each
    time (issue 7). Left out: the primary key, ``event_id`` and ``endpoint_id``, and fields with
    a ``db_default`` (a template's value for them is an expression: the database fills them)."""
    template = Delivery(next_attempt_at=timezone.now())
    fields = [f for f in Delivery._meta.concrete_fields
              if not (f.primary_key or f.attname in ("endpoint_id", "event_id"))
              and not hasattr(getattr(template, f.attname), "resolve_expression")]
    columns = tuple(connection.ops.quote_name(f.column) for f in fields)
    # PostgreSQL types an untyped literal in a SELECT list as text: cast it to the column's type.
    selected = tuple(f"CAST(%s AS {f.cast_db_type(connection)})" if vendor == "postgresql" else "%s" for f in fields)
    return tuple(fields), columns, selected


def _delivery_objects(*, event: Event, created: list[tuple[int, int]], values: dict) -> list[Delivery]:
    """``Delivery`` instances for the rows ``created`` as ``(id, endpoint_id)``, ordered by id, with
    the shared column ``values`` that were inserted."""
    event_field = Delivery._meta.get_field("event")
    deliveries = []
    for pk, endpoint_id in sorted(created):
        delivery = Delivery(**values, id=pk, event_id=event.pk, endpoint_id=endpoint_id)
        delivery._state.adding, delivery._state.db = False, connection.alias
        event_field.set_cached_value(delivery, event)
        deliveries.append(delivery)
    return deliveries


def _published(event_id: str) -> Event | None:
    return Event.objects.select_related("event_type").filter(event_id=event_id).first()


_queue_size_seen: tuple[float, int] = (0.0, 0)  # (monotonic time, waiting deliveries) of the last count


def _queue_full() -> ServiceUnavailable | None:
    """The error that refuses a publish (503 ``QUEUE_FULL``) while more than
    ``WEBHOOK_MAX_QUEUE_SIZE`` deliveries wait (``pending``/``retrying``), else ``None``:
    back-pressure instead of an unbounded backlog. The count is taken at most once a second per
    process, so the limit is approximate by one second's worth. Held deliveries (a paused or
    disabled endpoint's, ``deliveries.services.sweep.hold_and_release``) are not counted: they
    wait for their endpoint, not for the workers, and one paused receiver must not refuse every
    publish."""
    global _queue_size_seen
    limit = settings.WEBHOOK_MAX_QUEUE_SIZE
    if not limit:
        return None
    import time

    seen_at, waiting = _queue_size_seen
    if time.monotonic() - seen_at > 1.0:
        waiting = Delivery.objects.filter(status__in=Delivery.DUE_STATUSES, held=False).count()
        _queue_size_seen = (time.monotonic(), waiting)
    if waiting >= limit:
        return ServiceUnavailable(
            f"{waiting} deliveries are waiting, at or above WEBHOOK_MAX_QUEUE_SIZE ({limit}); retry shortly.",
            details={"waiting": waiting, "max_queue_size": limit}, code="QUEUE_FULL",
        )
    return None


def filter_envelope(event: Event) -> dict[str, Any]:
    """The event as payload filters see it: the seed's envelope fields, ``timestamp`` as ISO-8601."""
    return {
        "event_type": event.event_type.name,
        "event_id": event.event_id,
        "timestamp": delivery_services.format_timestamp(event.timestamp),
        "data": event.data,
        "metadata": event.metadata,
    }


def _filters_match(endpoint: endpoint_routing.EndpointRoute, envelope: dict[str, Any]) -> bool:
    """Payload filters of one endpoint. Filters stored before a validation rule tightened may no
    longer validate: such an endpoint gets nothing (filters decide who may see what) and a
    warning is logged, instead of the whole publish failing."""
    try:
        return evaluate_filters(endpoint.filters, envelope).matched
    except FilterValidationError as exc:
        logger.warning("Endpoint %s has invalid filters (%s); event not routed to it", endpoint.id, exc)
        return False


def _duplicate(event: Event, *, environment: str) -> PublishResult:
    """The answer to a repeated publish of ``event``'s ``event_id`` into ``environment``: the first
    publication and the deliveries it created (replays, added later by
    ``deliveries.services.replay``, are not part of it).

    ``event_id`` is unique across environments, so a repeat into ANOTHER environment cannot be
    the same publication: it raises ``Conflict`` (409 ``EVENT_ID_CONFLICT``) naming nothing of
    the existing event (a key limited to staging must not read production through this path).
    """
    if event.environment != environment:
        raise Conflict(
            "This event_id was already used for an event in another environment; publish with another event_id.",
            details={"event_id": event.event_id, "environment": environment}, code="EVENT_ID_CONFLICT",
        )
    deliveries = list(event.deliveries.filter(is_replay=False).order_by("id"))
    return PublishResult(event=event, created=False, deliveries=deliveries, matched_endpoints=len(deliveries))


def create_event_type(*, data: dict[str, Any], request=None) -> EventType:
    """Create a custom event type from validated ``data`` (``EventTypeSerializer``) and its audit
    entry (actor, IP and request id from ``request``), in one transaction: a failure of either
    leaves nothing written. Returns the new ``EventType``.

    Raises ``Conflict`` (409 ``CONFLICT``, ``details.fields.name``) when the name is taken, also
    when a concurrent request took it first: the request is well-formed but clashes with the
    current state, as a duplicate template name (``templates_app.services``) or an ``event_id``
    reused in another environment (``EVENT_ID_CONFLICT``) does."""
    name = data["name"]
    taken = Conflict(f"An event type named {name!r} already exists.", details={"fields": {"name": ["Already taken."]}})
    if EventType.objects.filter(name=name).exists():
        raise taken
    try:
        with transaction.atomic():
            event_type = EventType.objects.create(**data)
            audit_services.record_audit(request=request, action="create", obj=event_type)
    except IntegrityError as exc:
        if EventType.objects.filter(name=name).exists():
            raise taken from exc
        raise
    return event_type
