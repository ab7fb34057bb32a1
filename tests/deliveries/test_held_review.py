"""Review of held deliveries (commit 5e3088f).

1. The lock the beat sweep's hold takes on paused and disabled endpoints. The README and the
   docstring say ``FOR SHARE``; the hold takes ``FOR UPDATE`` (``select_for_update``), which
   conflicts with the ``FOR KEY SHARE`` every insert of a delivery takes on its endpoint (the
   foreign-key check, at commit) and ``lock_endpoints`` takes for replays and health alerts.
2. ``claim.high_priority_due`` counts held rows the priority claim skips."""
import threading
import time
from contextlib import contextmanager

import pytest
from django.db import OperationalError, connection, connections, transaction

from deliveries import services as delivery_services
from deliveries.models import Delivery
from deliveries.services import claim
from endpoints import services as endpoint_services
from endpoints.models import WebhookEndpoint
from events import services as event_services
from events.models import EventType
from tests.conftest import due_deliveries, locked_elsewhere, wait_until

POSTGRESQL_ONLY = pytest.mark.skipif("connection.vendor != 'postgresql'")


def _endpoint(receiver, name, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"), events=["lead.*"],
                                          secret="whsec_held_review_secret_0123456789", **fields)


def _slow_hold_trigger(seconds: float) -> None:
    """A test-only trigger that keeps the sweep's hold transaction open ``seconds`` (the time its
    UPDATE of 20,000 rows takes in production, ~0.7 s a pass in the commit's own numbers)."""
    with connection.cursor() as cursor:
        cursor.execute(f"""
            CREATE OR REPLACE FUNCTION review_slow_hold() RETURNS trigger AS $$
            BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$ LANGUAGE plpgsql""")
        cursor.execute("""
            CREATE TRIGGER review_slow_hold BEFORE UPDATE ON deliveries_delivery FOR EACH ROW
            WHEN (NEW.held AND NOT OLD.held) EXECUTE FUNCTION review_slow_hold()""")


def _drop_slow_hold_trigger() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS review_slow_hold ON deliveries_delivery")
        cursor.execute("DROP FUNCTION IF EXISTS review_slow_hold()")


def _hold_is_sleeping() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                       "AND datname = current_database()")
        return cursor.fetchone()[0] > 0


@contextmanager
def _slow_hold_under_way():
    """The sweep's hold (``hold_and_release``) running in another thread, its transaction kept
    open 3 s by ``_slow_hold_trigger``; yields the dict its result lands in (``"hold"``) once the
    hold is sleeping inside that transaction, and waits for it and drops the trigger after."""
    _slow_hold_trigger(3)
    result = {}

    def sweep():
        try:
            result["hold"] = delivery_services.hold_and_release()
        finally:
            connections.close_all()

    thread = threading.Thread(target=sweep)
    thread.start()
    try:
        wait_until(_hold_is_sleeping, timeout=10, interval=0.02)
        yield result
    finally:
        thread.join(15)
        _drop_slow_hold_trigger()


@POSTGRESQL_ONLY
def test_hold_does_not_block_publishing_to_a_paused_endpoint(transactional_db, event_types, receiver):
    # given: a paused endpoint with a due delivery, and the sweep's hold transaction under way
    paused = _endpoint(receiver, "paused", status="paused")
    due_deliveries([paused], 1)
    with _slow_hold_under_way() as result:
        # when: an event routed to the paused endpoint is published meanwhile
        started = time.monotonic()
        error = None
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '500ms'")
                published = event_services.publish(event_type="lead.created", data={"n": 1})
        except OperationalError as exc:  # lock_timeout: the publish waited for the sweep
            error, published = exc, None
        waited = time.monotonic() - started

    # then: the publish did not wait for the sweep (its foreign-key check needs only KEY SHARE)
    assert error is None, f"publish waited {waited:.2f} s for the sweep's endpoint lock: {error}"
    assert Delivery.objects.filter(event__event_id=published.event.event_id, endpoint=paused).count() == 1
    assert result["hold"] == (1, 0)


@POSTGRESQL_ONLY
def test_hold_is_not_skipped_for_an_endpoint_a_replay_is_writing_to(transactional_db, event_types, receiver):
    # given: a paused endpoint with 3 due deliveries, locked by a replay's writes to it
    # (lock_endpoints: FOR KEY SHARE, as replays and the health alerts' recipients take it)
    paused = _endpoint(receiver, "paused", status="paused")
    ids = [d.pk for d in due_deliveries([paused], 3)]

    # when
    with locked_elsewhere(lock=lambda: endpoint_services.lock_endpoints(endpoint_ids=[paused.pk])):
        held, released = delivery_services.hold_and_release()

    # then: KEY SHARE does not stop a status change (lock_endpoints' docstring), so it need not make
    # the sweep skip the endpoint: the rows are held
    assert (held, released) == (3, 0)
    assert list(Delivery.objects.filter(pk__in=ids).values_list("held", flat=True)) == [True] * 3


def test_high_priority_due_ignores_a_held_delivery_the_priority_claim_skips(event_types, receiver):
    # given: a high-priority delivery held while its endpoint was paused; the endpoint resumed
    # since, and the sweep that releases it not run yet
    EventType.objects.filter(name="lead.created").update(is_high_priority=True)
    endpoint = _endpoint(receiver, "resumed", status="paused")
    due_deliveries([endpoint], 1)
    assert delivery_services.hold_and_release() == (1, 0)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(status="active")

    # when
    claimed = delivery_services.claim_due(limit=50, high_priority_only=True)
    due = claim.high_priority_due()

    # then: the priority claim takes nothing, so "due" must say so too; else every priority
    # wake-up re-arms itself (batch._rearm, PRIORITY_RECHECK_SECONDS) until the next sweep
    assert (claimed, due) == ([], False)


@POSTGRESQL_ONLY
def test_hold_does_not_block_a_replay_of_a_delivery_it_is_holding(transactional_db, event_types, receiver):
    # given: a paused endpoint's due delivery, and the sweep's hold transaction holding it
    paused = _endpoint(receiver, "paused", status="paused")
    [original] = due_deliveries([paused], 1)
    with _slow_hold_under_way() as result:
        # when: a replay of its event to the paused endpoint (replay_of: the original) commits meanwhile
        error, replayed = None, []
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '500ms'")
                replayed = delivery_services.create_replays(targets=[delivery_services.ReplayTarget(
                    event_pk=original.event_id, endpoint_id=paused.pk, replay_of_id=original.pk)])
        except OperationalError as exc:  # lock_timeout: the replay's foreign-key check waited for the sweep
            error = exc

    # then: the foreign-key check on replay_of needs only KEY SHARE on the original, which the
    # hold's own row lock need not refuse (FOR NO KEY UPDATE, as on the endpoints)
    assert error is None, f"the replay waited for the sweep's lock on the original delivery: {error}"
    assert Delivery.objects.filter(pk__in=replayed, replay_of=original).count() == 1
    assert result["hold"] == (1, 0)


@POSTGRESQL_ONLY
def test_release_does_not_wait_for_a_held_row_locked_elsewhere(transactional_db, event_types, receiver):
    # given: two deliveries held while their endpoint was paused, the endpoint resumed since, and
    # one of the two rows locked by another transaction (any UPDATE of it: a retry, a delete's detach)
    endpoint = _endpoint(receiver, "resumed", status="paused")
    first, second = due_deliveries([endpoint], 2)
    assert delivery_services.hold_and_release() == (2, 0)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(status="active")

    # when: the sweep's hold and release, not allowed to wait for a lock longer than 500 ms
    with locked_elsewhere(Delivery.objects.filter(pk=first.pk)):
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '500ms'")
        try:
            result = delivery_services.hold_and_release()
        except OperationalError as exc:
            result = exc
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")

    # then: as documented ("the sweep never waits for a lock: a row or endpoint someone else holds
    # is left to the next sweep"), the locked row is left and the other released; the release's
    # UPDATE waited instead, and with it the rest of the sweep (expired claims, overdue enqueues)
    assert result == (0, 1), f"the release waited for the locked row: {result}"
    assert list(Delivery.objects.filter(pk__in=[first.pk, second.pk]).order_by("pk")
                .values_list("held", flat=True)) == [True, False]


@POSTGRESQL_ONLY
def test_migrating_again_repairs_an_interrupted_0004(transactional_db):
    # given: deliveries at 0003, and 0004 interrupted during an index build: CREATE INDEX
    # CONCURRENTLY waits for every older transaction (here one holding a snapshot), and a
    # statement_timeout (or a cancelled deploy) stops it there
    from django.core.management import call_command
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.recorder import MigrationRecorder

    def applied() -> set[str]:
        return set(MigrationRecorder.Migration.objects.filter(app="deliveries").values_list("name", flat=True))

    def unapplied() -> list[str]:
        executor = MigrationExecutor(connection)
        return [m.name for m, _ in executor.migration_plan(executor.loader.graph.leaf_nodes())]

    call_command("migrate", "deliveries", "0003", verbosity=0)

    def old_snapshot():  # run by another session, inside its transaction
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SELECT count(*) FROM django_migrations")

    try:
        with locked_elsewhere(lock=old_snapshot):
            with connection.cursor() as cursor:
                cursor.execute("SET statement_timeout = '2s'")
            with pytest.raises(OperationalError):
                call_command("migrate", "deliveries", verbosity=0)
            interrupted = applied()
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")

        # when: the deploy runs migrate again (0003's docstring: "running migrate again repairs it")
        try:
            call_command("migrate", "deliveries", verbosity=0)
            error = None
        except Exception as exc:  # noqa: BLE001 - the error is the finding
            error = exc

        # then
        assert error is None, f"migrate again after an interruption (applied: {sorted(interrupted)}) failed: {error}"
        assert unapplied() == []
    finally:
        # leave the test database as the other tests expect it
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
        if unapplied():
            with connection.cursor() as cursor:
                cursor.execute("DROP INDEX IF EXISTS delivery_claim_order_idx")
                cursor.execute("ALTER TABLE deliveries_delivery DROP COLUMN IF EXISTS held")
        call_command("migrate", verbosity=0)
