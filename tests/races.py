"""A helper for race tests on PostgreSQL: run some work in a transaction on another thread (its own
connection) and keep that transaction open until another session waits on one of its locks."""
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection, connections, transaction


@dataclass
class HeldTransaction:
    """``outcome``: ``{"result": …}`` or ``{"error": repr}`` of the work, and ``"blocked"``: whether
    another session waited on this transaction before it committed."""

    thread: threading.Thread
    ready: threading.Event
    other_done: threading.Event
    outcome: dict = field(default_factory=dict)

    def join(self, timeout: float = 20.0) -> dict:
        self.other_done.set()
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), "the held transaction never ended"
        return self.outcome


def hold_in_transaction(work: Callable[[], object], *, wait_seconds: float = 10.0) -> HeldTransaction:
    """Start a thread that runs ``work()`` inside ``transaction.atomic()`` and, before committing,
    polls until some session is blocked by this one (``pg_blocking_pids``), for at most
    ``wait_seconds`` or until ``join()`` says the other side finished without waiting. Returns once
    ``work()`` ran (or failed). The caller then starts the competing operation in its own thread
    (the main one) and calls ``join()``."""
    ready, other_done = threading.Event(), threading.Event()
    held = HeldTransaction(thread=None, ready=ready, other_done=other_done)  # type: ignore[arg-type]

    def run():
        try:
            with transaction.atomic():
                held.outcome["result"] = work()
                ready.set()
                held.outcome["blocked"] = _wait_until_someone_waits_on_me(other_done, wait_seconds)
        except Exception as exc:  # noqa: BLE001 — the test reports it
            held.outcome["error"] = repr(exc)
        finally:
            ready.set()
            connections.close_all()

    held.thread = threading.Thread(target=run, daemon=True)
    held.thread.start()
    assert ready.wait(timeout=20), "the held transaction never got going"
    return held


def _wait_until_someone_waits_on_me(other_done: threading.Event, wait_seconds: float) -> bool:
    deadline = time.time() + wait_seconds
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        while time.time() < deadline and not other_done.is_set():
            # pg_stat_activity is a snapshot taken once per transaction unless cleared
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid])
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.02)
    return False
