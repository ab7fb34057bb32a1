"""Shared fixtures: an API client with a real key, a real HTTP receiver on 127.0.0.1 and a real
Celery worker process on the test database and the configured broker (Redis in CI, the embedded
filesystem broker otherwise). No part of our own stack is mocked."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session):
    """With ``VOCELIO_REQUIRE_SERVICES=1`` (CI) a missing PostgreSQL or Redis fails the run at once
    instead of letting tests fall back to SQLite or skip."""
    if os.environ.get("VOCELIO_REQUIRE_SERVICES") != "1":
        return
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        pytest.exit(f"VOCELIO_REQUIRE_SERVICES=1 but the database engine is {engine}; set DATABASE_URL", returncode=3)
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.exit("VOCELIO_REQUIRE_SERVICES=1 but the broker is not Redis; set REDIS_URL", returncode=3)
    parts = urlsplit(settings.CELERY_BROKER_URL)
    try:
        socket.create_connection((parts.hostname, parts.port or 6379), timeout=3).close()
    except OSError as exc:
        pytest.exit(f"VOCELIO_REQUIRE_SERVICES=1 but Redis is unreachable: {exc}", returncode=3)


def pytest_collection_modifyitems(items):
    """Run the tests that use the live Celery worker last, in their collected order otherwise.

    Runs after pytest-django's own reorder (its hook is ``tryfirst``; the sort is stable). The
    worker is stopped before every other test (``_no_live_worker_unless_asked``) and a restart
    costs about 8 s (a 6-7 s warm shutdown, a 1-2 s start); in file order the suite went from
    worker to in-process tests 11 times, grouped it starts once."""
    items.sort(key=lambda item: bool({"worker", "celery_worker_process"} & set(getattr(item, "fixturenames", ()))))


def pytest_sessionfinish(session, exitstatus):
    """Remove this run's runtime folder (kept when tests failed, for the worker log)."""
    if exitstatus == 0 and Path(settings.VAR_DIR).name.startswith("run-"):
        shutil.rmtree(settings.VAR_DIR, ignore_errors=True)


# --- receiver -------------------------------------------------------------------------------
@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.time()
    client_port: int = 0  # the sender's side of the connection: one value per keep-alive connection

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1. ``script(path, [(status, headers, body), …])`` sets the
    answers for a path in order (the last one repeats); the default answer is 200. Every request
    is recorded in ``requests``."""

    base_url: str = ""
    requests: list[ReceivedRequest] = field(default_factory=list)
    scripts: dict[str, list] = field(default_factory=dict)
    hang_seconds: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cond: threading.Condition = field(default=None)

    def __post_init__(self):
        self.cond = threading.Condition(self.lock)

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def script(self, path: str, answers: list) -> None:
        with self.lock:
            self.scripts[path] = [a if isinstance(a, tuple) else (a, {}, b"") for a in answers]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.scripts.clear()
            self.hang_seconds.clear()

    def next_answer(self, path: str):
        with self.lock:
            answers = self.scripts.get(path)
            if not answers:
                return 200, {}, b'{"ok":true}'
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def record(self, request: ReceivedRequest) -> None:
        with self.cond:
            self.requests.append(request)
            self.cond.notify_all()

    def for_path(self, path: str) -> list[ReceivedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]

    def wait_for(self, count: int, path: str = "/hook", timeout: float = 20.0) -> list[ReceivedRequest]:
        """Wait until ``count`` requests reached ``path``; returns them (fails the test on timeout)."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests if r.path.split("?")[0] == path]
                if len(got) >= count:
                    return got
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise AssertionError(f"receiver got {len(got)} of {count} requests on {path} in {timeout}s")
                self.cond.wait(remaining)


def _handler_for(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            receiver.record(ReceivedRequest(self.command, self.path, dict(self.headers.items()), body, time.time(),
                                            self.client_address[1]))
            hang = receiver.hang_seconds.get(self.path.split("?")[0])
            if hang:
                time.sleep(hang)
            status, headers, payload = receiver.next_answer(self.path.split("?")[0])
            payload = payload if isinstance(payload, bytes) else str(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, *args):
            pass

    return Handler


class _ReceiverServer(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5. A batch opening more connections at once, on a
    # busy machine, can overflow it; the kernel resends a dropped SYN 1 s later (the likely cause
    # of one send seen arriving 1.04 s late in test_batch_engine under load).
    request_queue_size = 128


@pytest.fixture(scope="session")
def _receiver_server():
    receiver = Receiver()
    server = _ReceiverServer(("127.0.0.1", 0), _handler_for(receiver))
    server.daemon_threads = True
    receiver.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()


@pytest.fixture
def receiver(_receiver_server) -> Receiver:
    _receiver_server.reset()
    yield _receiver_server
    _receiver_server.reset()


# --- worker ---------------------------------------------------------------------------------
def _purge_broker() -> None:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        return
    from vocelio_webhooks.celery import app

    with app.connection_for_write() as conn:
        for queue in ("priority", "deliveries", "retries", "maintenance"):
            with suppress(Exception):  # the queue may not exist yet (kombu/redis raise many types)
                conn.default_channel.queue_purge(queue)
    from deliveries.services.wakeups import forget_pending_wakeups

    forget_pending_wakeups()  # the purged wake-ups will never start


# The queues, in the order the Procfile's worker consumes them: the test worker takes the same.
PROCFILE_QUEUES = re.search(r"--queues (\S+)", (ROOT / "Procfile").read_text()).group(1)


class WorkerProcess:
    """A ``celery worker`` subprocess on the test database. ``stop()`` is a warm shutdown (SIGTERM,
    SIGKILL after 15 s); ``start()`` may be called again after it, appending to the same log."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
               "VOCELIO_TEST_DB_NAME": str(settings.DATABASES["default"]["NAME"])}
        # Only this start's lines count: the log keeps the " ready." of any earlier start.
        start_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.log = open(self.log_path, "a")  # noqa: SIM115 — open while the worker runs; stop() closes it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "vocelio_webhooks", "worker",
             "-Q", PROCFILE_QUEUES,
             "-c", "2", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log_path.read_text()[-3000:]}")
            if " ready." in self.log_path.read_text()[start_offset:]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"celery worker not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGTERM to the main process only, as systemd or Docker send it: a warm shutdown, which
            # stops consuming, lets the pool finish its running tasks, then ends the pool. (SIGTERM
            # to the whole group killed the pool processes mid-task and left the main process
            # waiting for them, 9-15 s.)
            os.kill(self.proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):  # then the SIGKILL below ends it
                self.proc.wait(timeout=15)
            with suppress(ProcessLookupError):  # whatever is left of the group (all of it after a timeout)
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


@pytest.fixture(scope="session", autouse=True)
def _flush_survives_a_deadlock_with_the_worker():
    """Retry a transactional test's database flush that PostgreSQL aborted as a deadlock victim.

    The flush TRUNCATEs every table in one statement while the session's worker may be running a
    claim that a test's stray wake-up started; each can hold a lock the other waits for, and
    PostgreSQL aborts one of them. An aborted claim is retried by Celery; an aborted flush used to
    fail the test's teardown. The flush is one transaction, so running it again is clean."""
    from django.db import OperationalError
    from django.db.backends.base.operations import BaseDatabaseOperations

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        for attempt in range(5):
            try:
                return original(self, sql_list)
            except OperationalError as exc:
                if "deadlock detected" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    BaseDatabaseOperations.execute_sql_flush = original


_SESSION_WORKER = pytest.StashKey[WorkerProcess]()


@pytest.fixture(scope="session")
def celery_worker_process(request, django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker for the whole session, started after the test database exists.

    It runs only while tests that ask for it (``worker`` or this fixture) run: before any other
    test ``_no_live_worker_unless_asked`` stops it, and ``worker`` starts it again."""
    _purge_broker()
    log_path = Path(settings.VAR_DIR) / "test-worker.log"
    log_path.write_text("")
    worker = WorkerProcess(log_path)
    worker.start()
    request.config.stash[_SESSION_WORKER] = worker
    yield worker
    worker.stop()


@pytest.fixture(autouse=True)
def _no_live_worker_unless_asked(request):
    """Stop the session's worker (warm shutdown) before a test that did not ask for it.

    Such a test runs deliveries in-process (``run_wakeup``, ``sweep_due_deliveries``, …) and
    counts what they claimed and sent; the wake-ups those calls enqueue (``deliver_due``, sweeps)
    would otherwise reach the live worker, which claimed the same due rows at the same moment,
    with its own settings (the test's ``settings`` overrides are in-process only), and wrote
    heartbeats besides: on SQLite about 1 run in 3 of the batch tests lost a claim or a receipt
    to it. A warm shutdown lets the worker finish the task it is running (a SIGSTOP could freeze
    it holding the database's write lock); ``worker`` purges the broker and starts it again."""
    if "worker" in request.fixturenames or "celery_worker_process" in request.fixturenames:
        return
    session_worker = request.config.stash.get(_SESSION_WORKER, None)
    if session_worker is not None and session_worker.running:
        session_worker.stop()


@pytest.fixture(autouse=True)
def _forget_receiver_speeds():
    """Each test starts with the send lane's memory of answer times empty: on SQLite a rolled-back
    test's endpoint ids come again, and a late answer from an earlier test would order a lane."""
    from deliveries.services import lane

    lane._last_duration_ms.clear()


@pytest.fixture(autouse=True)
def _forget_noted_successes():
    """Each test starts with this process's memory of noted successes empty (the live worker
    keeps its own): a rolled-back test's endpoint ids come again, and a note from an earlier test
    would hold the next one back for a minute (``endpoints.services.note_successes``)."""
    from endpoints import services as endpoint_services

    endpoint_services._successes_noted.clear()


@pytest.fixture
def worker(celery_worker_process, transactional_db):
    """Use in delivery tests: a live worker plus committed (transactional) database access.

    If a test without it stopped the session's worker, it is started again here, after a purge
    of the broker, so the wake-ups those tests left queued never reach it.

    At teardown it waits until no delivery is in flight, so the worker's last write cannot
    collide with the database flush between tests.
    """
    if not celery_worker_process.running:
        _purge_broker()
        celery_worker_process.start()
    yield celery_worker_process
    from deliveries.models import Delivery

    deadline = time.time() + 30
    while Delivery.objects.filter(status=Delivery.Status.IN_FLIGHT).exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)  # the worker commits the attempt and the delivery together; let it finish


def _kill_worker(worker: WorkerProcess) -> None:
    """Stop a worker at once (SIGKILL to its process group): a warm shutdown of an idle worker on
    the embedded broker can take seconds."""
    if worker.running:
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait()
    worker.stop()


@contextmanager
def own_worker_process(session_worker: WorkerProcess, *, log_name: str, env: dict[str, str] | None = None):
    """A worker of a test's own, in place of the session's, for a test that signals its worker or
    starts it with other settings. Use from a fixture that has ``celery_worker_process`` (passed
    as ``session_worker``) and ``transactional_db``.

    Kills the session's worker; starts one logging to ``VAR_DIR/<log_name>`` (emptied first), with
    ``env`` added to its environment only (this process's is restored once it started), and
    yields it. At exit, while it still runs, waits (30 s at most) until no delivery is in flight,
    so its last write cannot collide with the flush after the test; then kills it and starts the
    session's worker again (``start`` waits until it is ready)."""
    from deliveries.models import Delivery

    _kill_worker(session_worker)
    log_path = Path(settings.VAR_DIR) / log_name
    log_path.write_text("")
    worker = WorkerProcess(log_path)
    try:
        saved = {name: os.environ.get(name) for name in env or {}}
        os.environ.update(env or {})
        try:
            worker.start()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        yield worker
        if worker.running:
            wait_until(lambda: not Delivery.objects.filter(status=Delivery.Status.IN_FLIGHT).exists(), timeout=30)
    finally:
        _kill_worker(worker)
        session_worker.start()


# --- data and API -------------------------------------------------------------------------
@pytest.fixture
def event_types(db):
    """The seed's event type catalog (a transactional test's flush removes the migrated rows)."""
    from events.catalog import EVENT_TYPES
    from events.models import EventType

    for entry in EVENT_TYPES:
        EventType.objects.update_or_create(
            name=entry["name"], defaults={"category": entry["category"], "description": entry["description"],
                                          "sample_data": entry["sample_data"]},
        )


@pytest.fixture
def api_key(db) -> str:
    """A full-access key (scope ``*``, every environment, no expiry)."""
    from vocelio_webhooks import services as key_services

    return key_services.create_api_key(name="tests", scopes=["*"]).raw_key


@pytest.fixture
def api(api_key, event_types):
    """A DRF test client authenticated with a real API key."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


def due_deliveries(endpoints, count: int, *, prefix: str = "evt_due", **fields) -> list:
    """``count`` ``lead.created`` events (``data`` ``{"n": n}``, ids ``<prefix>_<nnn>_<random>``),
    each with one delivery to every endpoint of ``endpoints``, due now; ``fields`` override the
    delivery's columns. Returns the ``Delivery`` rows, event by event, in ``endpoints`` order."""
    import secrets

    from django.utils import timezone

    from deliveries.models import Delivery
    from events.models import Event, EventType

    event_type = EventType.objects.get(name="lead.created")
    now = timezone.now()
    deliveries = []
    for n in range(count):
        event = Event.objects.create(event_id=f"{prefix}_{n:03d}_{secrets.token_hex(4)}", event_type=event_type,
                                     timestamp=now, data={"n": n})
        deliveries += [Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=now, **fields)
                       for endpoint in endpoints]
    return deliveries


@contextmanager
def refused_by_database(table: str, operation: str, *, when: str | None = None, message: str = "refused by the test"):
    """While inside, the database refuses every ``operation`` (``INSERT``, ``UPDATE``, ``DELETE``)
    on ``table`` (only on rows matching ``when``, an SQL condition on ``NEW``/``OLD`` that reads
    the same on PostgreSQL and SQLite) with an error carrying ``message``: a trigger, as a
    permission, a constraint or a full disk would refuse it, so nothing of our stack is replaced.
    Removed on the way out (in a test's transaction, the rollback removes it anyway)."""
    from django.db import DatabaseError, connection

    name = f"test_refuse_{table}_{operation.lower()}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION '{message}'; "
                           f"END $$ LANGUAGE plpgsql")
            cursor.execute(f"CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW"
                           f"{f' WHEN ({when})' if when else ''} EXECUTE FUNCTION {name}()")
        else:
            cursor.execute(f"CREATE TRIGGER {name} BEFORE {operation} ON {table}{f' WHEN {when}' if when else ''} "
                           f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
    try:
        yield
    finally:
        with suppress(DatabaseError), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}; DROP FUNCTION IF EXISTS {name}()")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


@contextmanager
def locked_elsewhere(queryset=None, *, lock=None):
    """Hold ``SELECT … FOR UPDATE`` on the rows of ``queryset`` (or whatever locks ``lock()``
    takes, a callable) in another thread's transaction (another session) for the duration of the
    ``with`` block, at most 10 s; a ``transactional_db`` test, so the rows are committed and
    visible to that session."""
    from django.db import connections, transaction

    locked, finish = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                lock() if lock is not None else list(queryset.select_for_update())
                locked.set()
                finish.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(10), "the other session could not lock the rows"
        yield
    finally:
        finish.set()
        thread.join(10)


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns a truthy value; fails on timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s")


def page_assets(html: str) -> list[str]:
    """The URLs a page loads code and styles from: every ``<script src>`` and ``<link href>``.

    Tests that a page works offline assert on these rather than searching the whole page for
    "cdn", which also matches random tokens (a CSRF token once contained "cdn")."""
    return re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"', html)


def is_external(url: str) -> bool:
    """Whether ``url`` points at another host (``https://…``, ``http://…`` or ``//…``)."""
    return bool(re.match(r"(?:[a-z][a-z0-9+.-]*:)?//", url, re.IGNORECASE))


def assert_seed_error(response, status_code: int, code: str) -> dict:
    """Assert ``response`` is the seed's error document (``{"error": {"code", "message",
    "details"}}``, nothing else) with ``status_code`` and ``code``; returns the ``error`` object."""
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]



@pytest.fixture
def audit_entries_refused(transactional_db):
    """The database refuses every audit-log INSERT (a trigger raising), for as long as the test
    runs: a real failure after the audited change was written, to show both roll back together."""
    from django.db import connection

    from vocelio_webhooks.models import AuditLogEntry

    table = AuditLogEntry._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("CREATE FUNCTION test_refuse_audit() RETURNS trigger AS $$ BEGIN "
                           "RAISE EXCEPTION 'audit log unavailable'; END $$ LANGUAGE plpgsql")
            cursor.execute(f"CREATE TRIGGER test_refuse_audit BEFORE INSERT ON {table} "
                           "FOR EACH ROW EXECUTE FUNCTION test_refuse_audit()")
        else:
            cursor.execute(f"CREATE TRIGGER test_refuse_audit BEFORE INSERT ON {table} "
                           "BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END")
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER test_refuse_audit ON {table}")
            cursor.execute("DROP FUNCTION test_refuse_audit()")
        else:
            cursor.execute("DROP TRIGGER test_refuse_audit")
