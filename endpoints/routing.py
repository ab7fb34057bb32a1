"""The routing configuration of publishing, cached per process and invalidated by the database.

``events.services.publish`` needs, for every event, the event type by name and the endpoints of
the event's environment that may receive it (id, event patterns, status, payload filters).
Reading them from the database on every publish costs two queries and an ORM object per
endpoint; they change rarely. This module keeps them in memory as plain tuples and dicts
(issue 7: "caching of endpoint configuration ... with correct invalidation on change").

Invalidation: the database keeps a version number in the one-row table
``endpoints_routing_version``. Triggers installed by migration ``endpoints 0008`` change it in
the same transaction as any change that can alter routing:

* ``endpoints_webhookendpoint``: every INSERT, DELETE and TRUNCATE, and every UPDATE that changes
  ``events``, ``status``, ``filters`` or ``environment`` (updates of other columns, such as the
  health and circuit-breaker bookkeeping of other code, leave the version alone);
* ``events_eventtype``: every INSERT, UPDATE, DELETE and TRUNCATE.

Because the database does it, nothing can bypass it: ``queryset.update()``, ``bulk_create``, the
admin, raw SQL, a ``psql`` session and other processes (web workers, Celery workers) all move the
version. ``current()`` reads the version with one primary-key SELECT and rebuilds the snapshot when
it differs from the cached one; the version is read before the endpoints, so a change committed
in between only makes the next call rebuild again. A publish therefore sees every change
committed before its version read (which happens after the request arrived).

The version is never reused, even after a rollback: PostgreSQL takes it from a sequence
(``nextval`` is not rolled back), SQLite from ``random()`` (64 bits). So a snapshot built inside a
transaction that later rolled back (tests do this all the time) can never be mistaken for the
committed state, which compares by equality, not order.

Safety net: if the triggers are missing (another database vendor, or a future SQLite migration
that rebuilt the endpoints table, which drops its triggers), caching is switched off for the
process and every call reads the database, with an error in the log. The test suite asserts the
triggers exist after all migrations.
"""
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from endpoints.filters import event_type_matches

logger = logging.getLogger(__name__)

VERSION_TABLE = "endpoints_routing_version"
ENDPOINT_TABLE = "endpoints_webhookendpoint"
EVENT_TYPE_TABLE = "events_eventtype"
# The endpoint columns publishing routes on; an UPDATE of any other column does not move the version.
ROUTING_COLUMNS = ("events", "status", "filters", "environment")
ROUTED_STATUSES = ("active", "paused")  # WebhookEndpoint.Status values that receive deliveries

_SQLITE_TRIGGERS = ("endpoints_routing_endpoint_insert", "endpoints_routing_endpoint_delete",
                    "endpoints_routing_endpoint_update", "endpoints_routing_eventtype_insert",
                    "endpoints_routing_eventtype_delete", "endpoints_routing_eventtype_update")


# PostgreSQL triggers: (name, table, timing). Statement-level for inserts, deletes and truncates
# (one bump per statement, however many rows); row-level with WHEN for endpoint updates, so only a
# change of a routing column pays for a bump.
_PG_TRIGGER_DEFS = (
    ("endpoints_routing_endpoint_rows", ENDPOINT_TABLE, "AFTER INSERT OR DELETE", "FOR EACH STATEMENT"),
    ("endpoints_routing_endpoint_update", ENDPOINT_TABLE, "AFTER UPDATE",
     "FOR EACH ROW WHEN (" + " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in ROUTING_COLUMNS) + ")"),
    ("endpoints_routing_endpoint_truncate", ENDPOINT_TABLE, "AFTER TRUNCATE", "FOR EACH STATEMENT"),
    ("endpoints_routing_eventtype_rows", EVENT_TYPE_TABLE, "AFTER INSERT OR UPDATE OR DELETE", "FOR EACH STATEMENT"),
    ("endpoints_routing_eventtype_truncate", EVENT_TYPE_TABLE, "AFTER TRUNCATE", "FOR EACH STATEMENT"),
)


def _postgresql_sql() -> list[str]:
    insert_row = (f"INSERT INTO {VERSION_TABLE} (id, version) VALUES (1, nextval('endpoints_routing_version_seq')) "
                  "ON CONFLICT (id) DO NOTHING")
    return [
        "CREATE SEQUENCE IF NOT EXISTS endpoints_routing_version_seq",
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (id smallint PRIMARY KEY CHECK (id = 1), version bigint NOT NULL)",
        insert_row,
        f"""CREATE OR REPLACE FUNCTION endpoints_bump_routing_version() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE {VERSION_TABLE} SET version = nextval('endpoints_routing_version_seq') WHERE id = 1;
                RETURN NULL;
            END $$""",
        *(f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table, _, _ in _PG_TRIGGER_DEFS),
        *(f"CREATE TRIGGER {name} {timing} ON {table} {level} EXECUTE FUNCTION endpoints_bump_routing_version()"
          for name, table, timing, level in _PG_TRIGGER_DEFS),
    ]


def _sqlite_sql() -> list[str]:
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in ROUTING_COLUMNS)
    bump = f"BEGIN UPDATE {VERSION_TABLE} SET version = random() WHERE id = 1; END"
    # SQLite has no TRUNCATE; a DELETE without WHERE runs row by row when the table has triggers.
    return [
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)",
        f"INSERT OR IGNORE INTO {VERSION_TABLE} (id, version) VALUES (1, random())",
        *(f"DROP TRIGGER IF EXISTS {name}" for name in _SQLITE_TRIGGERS),
        f"CREATE TRIGGER endpoints_routing_endpoint_insert AFTER INSERT ON {ENDPOINT_TABLE} {bump}",
        f"CREATE TRIGGER endpoints_routing_endpoint_delete AFTER DELETE ON {ENDPOINT_TABLE} {bump}",
        f"CREATE TRIGGER endpoints_routing_endpoint_update AFTER UPDATE ON {ENDPOINT_TABLE} WHEN {changed} {bump}",
        f"CREATE TRIGGER endpoints_routing_eventtype_insert AFTER INSERT ON {EVENT_TYPE_TABLE} {bump}",
        f"CREATE TRIGGER endpoints_routing_eventtype_delete AFTER DELETE ON {EVENT_TYPE_TABLE} {bump}",
        f"CREATE TRIGGER endpoints_routing_eventtype_update AFTER UPDATE ON {EVENT_TYPE_TABLE} {bump}",
    ]


def install_version_triggers(schema_editor) -> None:
    """Create (or re-create: every statement is idempotent) the version table and its triggers.

    Called by migration ``endpoints 0008``. A later migration that makes SQLite rebuild the
    endpoints or event-type table (SQLite drops a table's triggers with it) must call it again.
    Other database vendors get nothing, and ``current()`` then never caches.
    """
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": _postgresql_sql, "sqlite": _sqlite_sql}.get(vendor)
    if statements is None:
        logger.warning("No routing version triggers for %s: the routing cache stays off", vendor)
        return
    for statement in statements():
        schema_editor.execute(statement, params=None)


def remove_version_triggers(schema_editor) -> None:
    """Undo ``install_version_triggers`` (migration ``endpoints 0008`` backwards)."""
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for name, table, _, _ in _PG_TRIGGER_DEFS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}", params=None)
        for statement in ("DROP FUNCTION IF EXISTS endpoints_bump_routing_version()",
                          f"DROP TABLE IF EXISTS {VERSION_TABLE}",
                          "DROP SEQUENCE IF EXISTS endpoints_routing_version_seq"):
            schema_editor.execute(statement, params=None)
    elif vendor == "sqlite":
        for name in _SQLITE_TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}", params=None)
        schema_editor.execute(f"DROP TABLE IF EXISTS {VERSION_TABLE}", params=None)


def triggers_installed() -> bool:
    """True when the version table and every trigger that moves it exist in the database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = [name for name, _, _, _ in _PG_TRIGGER_DEFS]
            cursor.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname = ANY(%s)", [names])
            expected = len(names)
        elif connection.vendor == "sqlite":
            placeholders = ", ".join("%s" for _ in _SQLITE_TRIGGERS)
            cursor.execute(f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({placeholders})",
                           list(_SQLITE_TRIGGERS))
            expected = len(_SQLITE_TRIGGERS)
        else:
            return False
        return cursor.fetchone()[0] == expected and _read_version(cursor) is not None


@dataclass(frozen=True)
class EventTypeRoute:
    """An event type as publishing needs it."""

    id: int
    name: str
    is_high_priority: bool


@dataclass(frozen=True)
class EndpointRoute:
    """An endpoint that may receive deliveries (status ``active`` or ``paused``). ``filters`` is the
    stored JSON spec, shared by every thread: it is only read, never changed."""

    id: int
    patterns: tuple[str, ...]
    status: str
    filters: Any


@dataclass
class RoutingConfig:
    """One consistent snapshot of the routing configuration, labelled with the database version it
    was read at (``None``: not cached, read for one call only)."""

    version: int | None
    event_types: dict[str, EventTypeRoute]
    endpoints: dict[str, tuple[EndpointRoute, ...]]  # environment → routed endpoints, newest first
    _subscribed: dict[tuple[str, str], tuple[EndpointRoute, ...]] = field(default_factory=dict, repr=False)

    def subscribed(self, *, environment: str, event_type: str) -> tuple[EndpointRoute, ...]:
        """The endpoints of ``environment`` whose event patterns match ``event_type``
        (``endpoints.filters.event_type_matches``), payload filters not yet applied. Memoised per
        snapshot (a race between threads only computes the same tuple twice)."""
        key = (environment, event_type)
        found = self._subscribed.get(key)
        if found is None:
            found = tuple(e for e in self.endpoints.get(environment, ()) if event_type_matches(e.patterns, event_type))
            self._subscribed[key] = found
        return found


_cached: RoutingConfig | None = None
_enabled: bool | None = None  # None: triggers not checked yet in this process


def current() -> RoutingConfig:
    """The routing configuration as committed now (or as seen by the current transaction).

    One ``SELECT version`` per call while nothing changed; a full reload (two queries) after a
    change. Thread-safe: a snapshot is immutable once published and replaced whole.
    """
    global _cached, _enabled
    if _enabled is None:
        _enabled = triggers_installed()
        if not _enabled:
            logger.error("Routing version triggers are missing (run `manage.py migrate`; see endpoints/routing.py): "
                         "the routing configuration is read from the database on every publish")
    if not _enabled:
        return _load(version=None)
    with connection.cursor() as cursor:
        version = _read_version(cursor)
    snapshot = _cached
    if snapshot is not None and version is not None and snapshot.version == version:
        return snapshot
    snapshot = _load(version=version)
    if version is not None:
        _cached = snapshot  # one assignment: threads see the old snapshot or the new one, whole
    return snapshot


def _read_version(cursor) -> int | None:
    cursor.execute(f"SELECT version FROM {VERSION_TABLE} WHERE id = 1")
    row = cursor.fetchone()
    return None if row is None else row[0]


def _load(*, version: int | None) -> RoutingConfig:
    from endpoints.models import WebhookEndpoint
    from events.models import EventType

    event_types = {
        name: EventTypeRoute(id=pk, name=name, is_high_priority=high)
        for pk, name, high in EventType.objects.order_by().values_list("id", "name", "is_high_priority")
    }
    endpoints: dict[str, list[EndpointRoute]] = {}
    # The model's ordering (newest first), so deliveries are created in the order they always were.
    rows = (WebhookEndpoint.objects.filter(status__in=ROUTED_STATUSES)
            .values_list("id", "environment", "events", "status", "filters"))
    for pk, environment, patterns, status, filters in rows:
        endpoints.setdefault(environment, []).append(
            EndpointRoute(id=pk, patterns=tuple(patterns or ()), status=status, filters=filters))
    return RoutingConfig(version=version, event_types=event_types,
                         endpoints={env: tuple(routes) for env, routes in endpoints.items()})
