"""The benchmark suite: ``make bench`` (``BENCH_ARGS="--quick"`` for a short run).

It uses PostgreSQL and Redis (``DATABASE_URL`` / ``REDIS_URL``; defaults: the local
``vocelio_bench`` database, which is dropped and re-created, and Redis db 9, which is flushed),
starts a fast receiver on 127.0.0.1 (``bench/receiver.py``), the service's Celery worker(s) as the
Procfile does, and for the publish API a gunicorn web process, then runs the scenarios of issue 7,
each the median of ``--runs`` runs with min and max:

1. ``throughput`` — events × endpoints published as fast as ``--publishers`` processes can, end to
   end: deliveries/s from the first publish to the last receipt, and publish-to-receipt latency
   p50/p95/p99;
2. ``raw`` — the same payloads, signed, sent to the same receiver by a plain ``requests`` sender with
   the same number of processes as the worker: the machine's limit; the ratio 1/2 (runs of 1 and 2
   alternate, 1 2 2 1 1 2 …; the verdict is on the ratio of the medians, each pair's is printed too);
3. ``naive`` — one Celery task per delivery doing single-row writes (``bench/naive.py``); ratio 1/3;
4. ``publish_api`` — ``POST /events/publish`` at 50 concurrent keep-alive clients, 1/10/100 endpoints
   (closed loop), and 4b at fixed offered rates (``--api-rates``, open loop) with 10 endpoints
   (``publish_open`` runs 4b alone);
5. ``fanout`` — one event to 1,000 endpoints: seconds until all are delivered;
6. ``cost`` — SQL statements per successful delivery (in-process, amortised) and the worker's RSS over
   a long run (``--rss-deliveries``, 100,000 by default);
7. ``isolation`` — healthy-endpoint latency with one hanging endpoint among ten healthy ones vs without;
8. ``priority`` — high-priority probe events published while a backlog of ordinary deliveries drains:
   their latency with the type's ``is_high_priority`` on, and off as the control.

Results are printed as a table and written to ``bench/results/bench-<time>.json``. A benchmark,
never a test: nothing here asserts; the targets are printed next to the numbers.
"""
import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RUN_DIR = Path(tempfile.mkdtemp(prefix="vocelio-bench-"))
os.environ.setdefault("DATABASE_URL", "postgres://vocelio:vocelio@127.0.0.1:5432/vocelio_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("VOCELIO_VAR_DIR", str(RUN_DIR))
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
os.environ.setdefault("WEBHOOK_ALLOWED_PRIVATE_CIDRS", "127.0.0.1/32")
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
os.environ.setdefault("WEBHOOK_PUBLISH_RATE_PER_MINUTE", "0")  # the API throttle is not what we measure
os.environ.setdefault("WEBHOOK_API_RATE_PER_MINUTE", "0")
# Publish back-pressure (503 QUEUE_FULL above 10,000 waiting deliveries) would stop the long runs,
# which publish faster than two cores deliver: the benchmark measures the engine, not the limit.
os.environ.setdefault("WEBHOOK_MAX_QUEUE_SIZE", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vocelio_webhooks.settings")
PAYLOAD_NOTES = "x" * 700  # with the envelope and headers: a ~1 KB signed JSON POST, as in the issue


# --- infrastructure ----------------------------------------------------------------------------
def migrated_postgres(parser, why: str = "") -> None:
    """For the in-process bench scripts: refuse anything but PostgreSQL (``parser.error``, with
    ``why`` after the usual message), then drop and re-create the bench database, set Django up
    and migrate."""
    if not os.environ["DATABASE_URL"].startswith(("postgres://", "postgresql://")):
        parser.error(f"needs PostgreSQL: set DATABASE_URL=postgres://…{why}")
    reset_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fresh_tables(endpoints: int, base: str = "http://127.0.0.1:9") -> list:
    """Empty tables and broker, the ``lead.created`` type, and ``endpoints`` endpoints on ``base``
    (by default a port nobody listens on: for scripts where no worker sends). Returns them."""
    from events.models import EventType

    clean_tables()
    flush_broker()
    EventType.objects.get_or_create(name="lead.created")
    return make_endpoints(base, endpoints)


def reset_database() -> None:
    """Drop and re-create the bench database (PostgreSQL), or use a fresh SQLite file."""
    url = os.environ["DATABASE_URL"]
    if not url.startswith(("postgres://", "postgresql://")):
        os.environ["DATABASE_URL"] = f"sqlite:///{RUN_DIR / 'bench.sqlite3'}"
        return
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()


class Proc:
    """A subprocess in its own process group, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, cmd: list[str], env: dict | None = None):
        self.log_path = RUN_DIR / f"{name}.log"
        with open(self.log_path, "w") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)

    def tree_rss_kb(self) -> int:
        """RSS of the process and its children (prefork pool), in KiB, from /proc."""
        pids = [self.popen.pid]
        children = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
        return total


def free_port() -> int:
    """A port nobody listens on now (the kernel picks it): two bench runs at once never share one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_receiver() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.receiver"], cwd=ROOT, stdout=subprocess.PIPE,
                            start_new_session=True, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def receiver_get(base: str, path: str):
    with urllib.request.urlopen(f"{base}{path}", timeout=60) as response:
        return json.loads(response.read() or b"null")


def receiver_reset(base: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{base}/_reset", method="POST", data=b""), timeout=10).read()


def wait_for_arrivals(base: str, expected: int, timeout: float, stall_seconds: float = 30.0) -> int:
    """Wait until ``expected`` receipts, ``timeout`` seconds, or ``stall_seconds`` without a new one."""
    deadline = time.time() + timeout
    count, last_change = 0, time.time()
    while time.time() < deadline and time.time() - last_change < stall_seconds:
        now_count = receiver_get(base, "/_stats")["count"]
        if now_count != count:
            count, last_change = now_count, time.time()
        if count >= expected:
            break
        time.sleep(0.2)  # arrival times come from the receiver; polling less steals less CPU from the run
    return count


def start_worker(args, *, queues: str, include: str = "") -> Proc:
    cmd = [sys.executable, "-m", "celery", "-A", "vocelio_webhooks", "worker", "-Q", queues, "-c", str(args.workers),
           "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n",
           f"bench-{queues.split(',')[0]}@%h"]
    if include:
        cmd += ["-I", include]
    proc = Proc(f"worker-{queues.split(',')[0]}", cmd)
    time.sleep(5)
    if proc.popen.poll() is not None:
        raise RuntimeError(proc.log_path.read_text())
    return proc


def clean_tables() -> None:
    """Empty deliveries, events, endpoints and their health between runs (event types stay)."""
    from django.db import connection

    from deliveries.models import Delivery, DeliveryAttempt
    from endpoints.models import EndpointHealth, RateLimitWindow, WebhookEndpoint
    from events.models import Event

    models = [DeliveryAttempt, Delivery, Event, RateLimitWindow, EndpointHealth, WebhookEndpoint]
    if connection.vendor == "postgresql":
        tables = ", ".join(f'"{m._meta.db_table}"' for m in models)
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {tables} CASCADE")
    else:
        for model in models:
            model.objects.all().delete()


def make_endpoints(base: str, count: int, *, prefix: str = "ep", events: tuple[str, ...] = ("lead.created",),
                   **extra) -> list:
    from endpoints import services as endpoint_services
    from endpoints.models import WebhookEndpoint

    rows = []
    for n in range(count):
        rows.append(WebhookEndpoint(name=f"{prefix}-{n}", url=f"{base}/{prefix}{n}", events=list(events),
                                    secret=f"whsec_bench_secret_{n:06d}_abcdef", **extra))
        if n == 0:
            endpoint_services.validate_endpoint(rows[-1])  # the bench's endpoints are ones the API would accept
    return WebhookEndpoint.objects.bulk_create(rows)


def event_data(n: int) -> dict:
    return {"lead_id": f"lead_{n}", "campaign_id": "camp_42", "score": n % 100, "notes": PAYLOAD_NOTES}


# --- publishers (forked processes) -------------------------------------------------------------
def _publish_slice(kind: str, event_ids: list[str], run_tag: str, out: multiprocessing.Queue) -> None:
    from django.db import connections

    connections.close_all()
    times: dict[str, float] = {}
    try:
        _publish_events(kind, event_ids, times)
    finally:
        out.put(times)  # whatever was published, so the parent never waits for a dead child


def _publish_events(kind: str, event_ids: list[str], times: dict[str, float]) -> None:
    if kind == "naive":
        from bench import naive
        from endpoints.models import WebhookEndpoint
        from events.models import EventType

        event_type = EventType.objects.get(name="lead.created")
        endpoints = list(WebhookEndpoint.objects.all())
        for n, event_id in enumerate(event_ids):
            times[event_id] = time.time()
            naive.publish(event_type=event_type, data=event_data(n), event_id=event_id, endpoints=endpoints)
    else:
        from events import services as event_services

        for n, event_id in enumerate(event_ids):
            times[event_id] = time.time()
            event_services.publish(event_type="lead.created", data=event_data(n), event_id=event_id)


def publish_all(kind: str, events: int, publishers: int, tag: str) -> dict[str, float]:
    from django.db import connections

    connections.close_all()
    event_ids = [f"evt_{tag}_{n}" for n in range(events)]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_publish_slice, args=(kind, event_ids[i::publishers], tag, out))
             for i in range(publishers)]
    for proc in procs:
        proc.start()
    times = {}
    for _ in procs:
        times.update(out.get(timeout=600))
    for proc in procs:
        proc.join(timeout=30)
    return times


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure_delivery(kind: str, base: str, args, *, events: int, endpoints: int, tag: str,
                     rss_of: Proc | None = None) -> dict:
    """Publish ``events`` to ``endpoints`` and wait for every receipt: deliveries/s and latency."""
    clean_tables()
    make_endpoints(base, endpoints)
    receiver_reset(base)
    expected = events * endpoints
    rss_samples = []
    stop = threading.Event()
    if rss_of is not None:
        def sample():
            while not stop.is_set():
                rss_samples.append((receiver_get(base, "/_stats")["count"], rss_of.tree_rss_kb()))
                stop.wait(1.0)
        threading.Thread(target=sample, daemon=True).start()
    published = publish_all(kind, events, args.publishers, tag)
    got = wait_for_arrivals(base, expected, timeout=args.timeout)
    stop.set()
    arrivals = receiver_get(base, "/_dump")
    first_publish = min(published.values())
    last_arrival = max((t for _, _, t in arrivals), default=first_publish)
    latencies = [(t - published[e]) * 1000 for _, e, t in arrivals if e in published]
    result = {
        "delivered": got, "expected": expected,
        "deliveries_per_s": round(got / (last_arrival - first_publish), 1) if got else 0.0,
        "publish_s": round(max(published.values()) - first_publish, 2),
        "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }
    if rss_samples:
        result["rss_kb_samples"] = rss_samples
    return result


# --- scenario 2: the raw sender ----------------------------------------------------------------
def _raw_slice(jobs: list[tuple], threads: int, out: multiprocessing.Queue) -> None:
    import requests

    from deliveries.services.building import build_envelope, encode_body
    from endpoints import signing

    class FakeType:  # the envelope builder reads event.event_type.name only
        name = "lead.created"

    class FakeEvent:
        def __init__(self, event_id, n):
            from django.utils import timezone

            self.event_id, self.event_type, self.timestamp = event_id, FakeType, timezone.now()
            self.data, self.metadata = event_data(n), {}

    def worker(chunk):
        session = requests.Session()
        for n, (url, secret, event_id, delivery_id) in chunk:
            body = encode_body(build_envelope(event=FakeEvent(event_id, n), retry_count=0))
            now = int(time.time())
            headers = {"Content-Type": "application/json", "X-Vocelio-Event-Id": event_id,
                       "X-Vocelio-Delivery-Id": delivery_id, "X-Vocelio-Timestamp": str(now)}
            headers.update(signing.signature_headers(
                method="hmac_sha256", secrets_=[secret], api_key="", msg_id=event_id, delivery_id=delivery_id,
                event_id=event_id, event_type="lead.created", timestamp=now, body=body))
            session.post(url, data=body, headers=headers, timeout=(5, 15), allow_redirects=False).close()

    indexed = list(enumerate(jobs))
    pool = [threading.Thread(target=worker, args=(indexed[i::threads],)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    out.put(len(jobs))


def measure_raw(base: str, args, *, events: int, endpoints: int, tag: str) -> dict:
    receiver_reset(base)
    jobs = [(f"{base}/raw{e}", f"whsec_bench_secret_{e:06d}_abcdef", f"evt_{tag}_{n}", f"dlv_{n}_{e}")
            for n in range(events) for e in range(endpoints)]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    started = time.time()
    procs = [ctx.Process(target=_raw_slice, args=(jobs[i::args.workers], args.raw_threads, out))
             for i in range(args.workers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        out.get(timeout=600)
    for proc in procs:
        proc.join(timeout=30)
    got = wait_for_arrivals(base, len(jobs), timeout=30)
    last = max((t for _, _, t in receiver_get(base, "/_dump")), default=started)
    return {"delivered": got, "expected": len(jobs), "deliveries_per_s": round(got / (last - started), 1)}


# --- scenario 4: publish API -------------------------------------------------------------------
async def _post_publish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, key: str, event_id: str,
                        n: int) -> bytes:
    """Send one ``POST /events/publish`` on a keep-alive connection; returns the response head."""
    body = json.dumps({"event_type": "lead.created", "event_id": event_id, "data": event_data(n)}).encode()
    request = (f"POST /events/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    writer.write(request)
    return await read_answer(reader)


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """Read one HTTP/1.1 answer (head, then a ``Content-Length`` body, dropped); returns the head."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return head


def _accepted(head: bytes) -> bool:
    return head.startswith((b"HTTP/1.1 202", b"HTTP/1.0 202"))


async def closed_loop(port: int, clients: int, seconds: float, send, accepted) -> tuple[list[float], int]:
    """Closed loop: ``clients`` keep-alive connections to 127.0.0.1:``port``, each sending its next
    request (``await send(reader, writer, client, n)``, which returns the response head) when the
    last one answered, for ``seconds``. Returns the latencies (milliseconds) and how many answers
    ``accepted(head)`` refused."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client(number: int):
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            head = await send(reader, writer, number, n)
            latencies.append((time.perf_counter() - started) * 1000)
            if not accepted(head):
                errors += 1
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            n += 1
        writer.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    return latencies, errors


async def _api_load(port: int, key: str, clients: int, seconds: float, tag: str) -> tuple[list[float], int]:
    """Scenario 4's closed loop: publishes (``_post_publish``), a 202 accepted."""
    return await closed_loop(
        port, clients, seconds,
        lambda reader, writer, number, n: _post_publish(reader, writer, key=key, event_id=f"evt_{tag}_{number}_{n}",
                                                        n=n),
        _accepted)


IDLE_REUSE_SECONDS = 1.0  # below gunicorn's 2 s keep-alive, so a reused connection is still open


async def _api_open_loop(port: int, key: str, rate: float, seconds: float, tag: str) -> dict:
    """Open loop: request ``n`` is sent at ``start + n / rate`` whether or not earlier ones have
    answered (a keep-alive connection idle for less than ``IDLE_REUSE_SECONDS`` is reused, else a
    new one opened), so a slow answer never delays the next send. Latency is counted from the
    scheduled send time, so a scheduler that fell behind shows up in it instead of hiding (no
    coordinated omission). A reused connection the server closed meanwhile is retried once on a
    new one, as HTTP clients (urllib3) do; anything else is an error."""
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    latencies: list[float] = []
    errors: list[str] = []
    opened = accepted = 0
    total = int(rate * seconds)
    start = loop.time() + 0.2
    finished_at = start

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        nonlocal opened
        while idle:
            reader, writer, since = idle.pop()
            if loop.time() - since < IDLE_REUSE_SECONDS:
                return reader, writer, True
            writer.close()
        opened += 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return reader, writer, False

    async def send(n: int) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer, reused = await connection()
        try:
            return await _post_publish(reader, writer, key=key, event_id=f"evt_{tag}_{n}", n=n), reader, writer
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            if not reused:
                raise
        opened_reader, opened_writer = await asyncio.open_connection("127.0.0.1", port)
        return (await _post_publish(opened_reader, opened_writer, key=key, event_id=f"evt_{tag}_{n}", n=n),
                opened_reader, opened_writer)

    async def one(n: int) -> None:
        nonlocal accepted, finished_at
        scheduled = start + n / rate
        try:
            head, reader, writer = await asyncio.wait_for(send(n), timeout=30)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            errors.append(type(exc).__name__)
            return
        finished_at = max(finished_at, loop.time())
        latencies.append((loop.time() - scheduled) * 1000)
        if _accepted(head):
            accepted += 1
        else:
            errors.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
        if b"connection: close" in head.lower():
            writer.close()
        else:
            idle.append((reader, writer, loop.time()))

    # Warm-up, not measured: the first request of each gunicorn process loads what Django loads lazily.
    for _, reader, writer in await asyncio.gather(*(send(-1 - n) for n in range(8))):
        idle.append((reader, writer, loop.time()))
    start = loop.time() + 0.2
    finished_at = start
    tasks = []
    for n in range(total):
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    for _, writer, _ in idle:
        writer.close()
    # Achieved: accepted (202) answers per second, from the first scheduled send to the last answer.
    return {"offered_per_s": rate, "sent": total, "answered": len(latencies), "accepted": accepted,
            "errors": len(errors), "error_kinds": sorted(set(errors))[:5], "connections": opened,
            "achieved_per_s": round(accepted / max(finished_at - start, 1e-9), 1),
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
            "max_ms": round(max(latencies), 1) if latencies else None}


def measure_publish_open_loop(base: str, args, *, port: int, key: str, rate: float, endpoints: int, tag: str) -> dict:
    """Scenario 4b: publishes at a fixed offered ``rate`` (req/s) for ``--api-seconds``."""
    clean_tables()
    make_endpoints(base, endpoints)
    return asyncio.run(_api_open_loop(port, key, rate, args.api_seconds, tag))


def measure_publish_api(base: str, args, *, port: int, key: str, endpoints: int, tag: str) -> dict:
    clean_tables()
    make_endpoints(base, endpoints)
    latencies, errors = asyncio.run(_api_load(port, key, args.api_clients, args.api_seconds, tag))
    return {"requests": len(latencies), "errors": errors, "requests_per_s": round(len(latencies) / args.api_seconds, 1),
            "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1)}


# --- scenario 5: fan-out -----------------------------------------------------------------------
def measure_fanout(base: str, args, *, endpoints: int, tag: str) -> dict:
    from events import services as event_services

    clean_tables()
    make_endpoints(base, endpoints)
    receiver_reset(base)
    started = time.time()
    event_services.publish(event_type="lead.created", data=event_data(0), event_id=f"evt_{tag}")
    got = wait_for_arrivals(base, endpoints, timeout=args.timeout)
    last = max((t for _, _, t in receiver_get(base, "/_dump")), default=started)
    return {"delivered": got, "expected": endpoints, "seconds": round(last - started, 3)}


# --- scenario 6: SQL statements per delivery (in-process) --------------------------------------
def measure_sql(base: str, *, events: int, endpoints: int, tag: str) -> dict:
    """Deliver ``events × endpoints`` deliveries in this process through the engine's own entry point
    and count the SQL statements it sends, in every thread (the polling for the recorder thread's
    last writes is counted too, so the figure is an upper bound)."""
    from django.utils import timezone

    from deliveries import services as delivery_services
    from deliveries.models import Delivery
    from events.models import Event, EventType

    clean_tables()
    rows = make_endpoints(base, endpoints)
    receiver_reset(base)
    event_type = EventType.objects.get(name="lead.created")
    stored = Event.objects.bulk_create([Event(event_id=f"evt_{tag}_{n}", event_type=event_type, data=event_data(n),
                                              timestamp=timezone.now()) for n in range(events)])
    now = timezone.now()
    Delivery.objects.bulk_create([Delivery(event=e, endpoint=p, next_attempt_at=now) for e in stored for p in rows])
    ids = list(Delivery.objects.order_by("id").values_list("id", flat=True))
    # Count in every thread (the batch engine's recorder thread has its own connection): wrap the
    # cursor class itself for the duration.
    from django.db.backends import utils as db_utils

    calls = itertools.count()
    original = db_utils.CursorWrapper._execute_with_wrappers

    def counting(self, *args, **kwargs):
        next(calls)
        return original(self, *args, **kwargs)

    db_utils.CursorWrapper._execute_with_wrappers = counting
    started = time.time()
    try:
        if hasattr(delivery_services, "deliver_due_batch"):  # the batch engine (issue 7)
            while delivery_services.deliver_due_batch().claimed:
                pass
            deadline = time.time() + 60
            while Delivery.objects.filter(status=Delivery.Status.IN_FLIGHT).exists() and time.time() < deadline:
                time.sleep(0.05)  # sends left to the recorder thread
        else:
            for delivery_id in ids:
                delivery_services.attempt_delivery(delivery_id=delivery_id)
        elapsed = time.time() - started
        count = next(calls)
    finally:
        db_utils.CursorWrapper._execute_with_wrappers = original
    succeeded = Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count()
    return {"deliveries": len(ids), "succeeded": succeeded, "statements": count,
            "statements_per_delivery": round(count / max(succeeded, 1), 2),
            "in_process_deliveries_per_s": round(succeeded / elapsed, 1)}


# --- scenario 7: isolation ---------------------------------------------------------------------
def measure_isolation(base: str, args, *, hanging: bool, tag: str) -> dict:
    from events import services as event_services

    clean_tables()
    make_endpoints(base, 10, prefix="ok", timeout_seconds=5)
    if hanging:
        from endpoints.models import WebhookEndpoint

        WebhookEndpoint.objects.create(name="hanging", url=f"{base}/hang", events=["lead.created"], timeout_seconds=5,
                                       secret="whsec_bench_secret_hanging_abcdef")
    receiver_reset(base)
    published = {}
    interval = 1.0 / args.isolation_rate
    start = time.time()
    for n in range(args.isolation_events):
        event_id = f"evt_{tag}_{n}"
        published[event_id] = time.time()
        event_services.publish(event_type="lead.created", data=event_data(n), event_id=event_id)
        time.sleep(max(0.0, start + (n + 1) * interval - time.time()))
    expected = args.isolation_events * 10
    got = wait_for_arrivals(base, expected, timeout=args.timeout)
    latencies = [(t - published[e]) * 1000 for p, e, t in receiver_get(base, "/_dump") if p != "/hang"]
    return {"delivered": got, "expected": expected, "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1)}


# --- scenario 8: priority queues --------------------------------------------------------------
PROBE_TYPE = "bench.urgent"  # the probes' event type; its is_high_priority flag is what scenario 8 toggles


def _latency_stats(prefix: str, latencies: list[float]) -> dict:
    if not latencies:
        return {f"{prefix}_p50_ms": None, f"{prefix}_p95_ms": None, f"{prefix}_max_ms": None}
    return {f"{prefix}_p50_ms": round(percentile(latencies, 50), 1),
            f"{prefix}_p95_ms": round(percentile(latencies, 95), 1),
            f"{prefix}_max_ms": round(max(latencies), 1)}


def measure_priority(base: str, args, *, high: bool, tag: str) -> dict:
    """A backlog of ordinary ``lead.created`` deliveries, then ``--priority-probes`` probe events of
    type ``bench.urgent`` (``is_high_priority`` = ``high``) to the same endpoints, spread over the
    backlog's remaining lifetime; publish-to-receipt latency of the probes and of the backlog.

    The spacing is estimated from the delivery rate seen in the first second after the backlog was
    published (60 % of the remaining drain time / probes, between 20 ms and 2 s), so the probes land
    while deliveries still wait on a fast or a slow machine; ``waiting_at_probe`` records, for each
    probe, how many deliveries had been published and not yet received when it was published."""
    from events import services as event_services
    from events.models import EventType

    clean_tables()
    EventType.objects.update_or_create(name=PROBE_TYPE, defaults={
        "category": "bench", "is_high_priority": high, "description": "benchmark probe (scenario 8)"})
    endpoints = args.endpoints
    make_endpoints(base, endpoints, events=("lead.created", PROBE_TYPE))
    receiver_reset(base)
    backlog_events = max(1, args.priority_backlog // endpoints)
    backlog_expected = backlog_events * endpoints
    backlog = publish_all("engine", backlog_events, args.publishers, tag)
    seen_at, seen = time.time(), receiver_get(base, "/_stats")["count"]
    time.sleep(1.0)
    now_count = receiver_get(base, "/_stats")["count"]
    rate = max((now_count - seen) / (time.time() - seen_at), 1.0)
    probe_count = max(1, args.priority_probes)
    spacing = min(max(0.6 * (backlog_expected - now_count) / rate / probe_count, 0.02), 2.0)

    probes: dict[str, float] = {}
    waiting: list[int] = []
    start = time.time()
    for k in range(probe_count):
        waiting.append(backlog_expected + len(probes) * endpoints - receiver_get(base, "/_stats")["count"])
        event_id = f"evt_{tag}_probe_{k}"
        probes[event_id] = time.time()
        event_services.publish(event_type=PROBE_TYPE, data=event_data(k), event_id=event_id)
        time.sleep(max(0.0, start + (k + 1) * spacing - time.time()))
    expected = backlog_expected + len(probes) * endpoints
    got = wait_for_arrivals(base, expected, timeout=args.timeout)
    arrivals = receiver_get(base, "/_dump")
    probe_latencies = [(t - probes[e]) * 1000 for _, e, t in arrivals if e in probes]
    per_probe: dict[str, float] = {}  # the slowest of each probe's deliveries, in publish order
    for _, e, t in arrivals:
        if e in probes:
            per_probe[e] = max(per_probe.get(e, 0.0), (t - probes[e]) * 1000)
    backlog_latencies = [(t - backlog[e]) * 1000 for _, e, t in arrivals if e in backlog]
    return {"high_priority": high, "delivered": got, "expected": expected, "backlog_deliveries": backlog_expected,
            "probe_deliveries": len(probe_latencies), "probe_spacing_s": round(spacing, 3),
            "drain_rate_per_s": round(rate, 1), "waiting_at_probe": waiting,
            "probes_while_waiting": sum(1 for w in waiting if w > 0),
            "per_probe_max_ms": [round(per_probe[e], 1) if e in per_probe else None for e in probes],
            # The last probe has no later high-priority wake-up to pick up what its own left behind.
            "last_probe_ms": sorted(round((t - probes[e]) * 1000, 1) for _, e, t in arrivals if e == event_id),
            "last_probe_max_ms": per_probe.get(event_id) and round(per_probe[event_id], 1),
            **_latency_stats("probe", probe_latencies), **_latency_stats("backlog", backlog_latencies)}


# --- summary -----------------------------------------------------------------------------------
def summarise(runs: list[dict], key: str) -> dict:
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True,
                         text=True).stdout
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "load_avg": os.getloadavg(), "git": rev.strip(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main() -> int:
    parser = argparse.ArgumentParser(description="Vocelio Webhooks benchmark suite (issue 7).")
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer runs (a few minutes)")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--events", type=int, help="events per throughput run")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (also the raw sender's)")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--raw-threads", type=int, default=4)
    parser.add_argument("--api-clients", type=int, default=50)
    parser.add_argument("--api-seconds", type=float)
    parser.add_argument("--fanout-endpoints", type=int, default=1000)
    parser.add_argument("--rss-deliveries", type=int)
    parser.add_argument("--isolation-events", type=int)
    parser.add_argument("--isolation-rate", type=float, default=4.0)
    parser.add_argument("--api-rates", default="10,25,50", help="offered req/s of the open-loop publish API (4b)")
    parser.add_argument("--priority-backlog", type=int, default=3000,
                        help="ordinary deliveries queued before the high-priority probes (8)")
    parser.add_argument("--priority-probes", type=int, default=20, help="high-priority probe events (8)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the last receipt")
    parser.add_argument("--only", default="throughput,raw,naive,publish_api,fanout,cost,isolation,priority",
                        help="comma-separated scenarios (publish_open: only 4b of publish_api)")
    args = parser.parse_args()
    quick = args.quick
    args.runs = args.runs or (2 if quick else 3)
    args.events = args.events or (300 if quick else 2000)
    args.api_seconds = args.api_seconds or (5.0 if quick else 15.0)
    args.rss_deliveries = args.rss_deliveries or (10_000 if quick else 100_000)
    args.isolation_events = args.isolation_events or (12 if quick else 40)
    only = set(args.only.split(","))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the workers
    reset_database()
    flush_broker()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    receiver, base = start_receiver()
    results: dict = {"machine": machine(), "args": vars(args), "database": settings.DATABASES["default"]["ENGINE"],
                     "scenarios": {}}
    scenarios = results["scenarios"]
    procs: list[Proc] = []
    try:
        worker = None
        if only & {"throughput", "publish_api", "publish_open", "fanout", "cost", "isolation", "priority"}:
            worker = start_worker(args, queues="priority,maintenance,deliveries,retries")
            procs.append(worker)
        # Scenarios 1 and 2 alternate run by run, in the order 1 2 2 1 1 2 …, so each pair is
        # measured a minute apart at most (on a shared VM the raw sender alone swung by a third
        # between invocations) and neither always runs in the other's wake (PostgreSQL's
        # checkpoint or autovacuum after scenario 1's writes). The verdict is on the ratio of the
        # medians; the pairs' ratios are printed too.
        throughput_runs, raw_runs = [], []
        for r in range(args.runs):
            steps = ["throughput", "raw"] if r % 2 == 0 else ["raw", "throughput"]
            for step in steps:
                if step == "throughput" and "throughput" in only:
                    throughput_runs.append(measure_delivery("engine", base, args, events=args.events,
                                                            endpoints=args.endpoints, tag=f"t{r}"))
                if step == "raw" and "raw" in only:
                    raw_runs.append(measure_raw(base, args, events=args.events, endpoints=args.endpoints,
                                                tag=f"r{r}"))
        if throughput_runs:
            scenarios["throughput"] = {"runs": throughput_runs, **{k: summarise(throughput_runs, k) for k in
                                                                   ("deliveries_per_s", "p50_ms", "p95_ms", "p99_ms")}}
        if raw_runs:
            scenarios["raw"] = {"runs": raw_runs, "deliveries_per_s": summarise(raw_runs, "deliveries_per_s")}
        if throughput_runs and raw_runs:
            pairs = [{"ratio": round(t["deliveries_per_s"] / w["deliveries_per_s"], 3)}
                     for t, w in zip(throughput_runs, raw_runs) if w["deliveries_per_s"]]
            scenarios["ratio_1_2_paired"] = {"runs": pairs, "ratio": summarise(pairs, "ratio")}
        if "naive" in only:
            naive_worker = start_worker(args, queues="naive", include="bench.naive")
            try:
                runs = [measure_delivery("naive", base, args, events=args.events, endpoints=args.endpoints,
                                         tag=f"n{r}") for r in range(args.runs)]
            finally:
                naive_worker.stop()
            scenarios["naive"] = {"runs": runs, **{k: summarise(runs, k) for k in ("deliveries_per_s", "p50_ms")}}
        if only & {"publish_api", "publish_open"}:
            from vocelio_webhooks import services as key_services

            key = key_services.create_api_key(name=f"bench-{time.time()}", scopes=["*"]).raw_key
            port = free_port()
            web = Proc("web", [sys.executable, "-m", "gunicorn", "vocelio_webhooks.wsgi", "--bind",
                               f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
                               "--access-logfile", "/dev/null"])
            procs.append(web)
            time.sleep(4)
            if "publish_api" in only:
                scenarios["publish_api"] = {}
                for count in (1, 10, 100):
                    runs = [measure_publish_api(base, args, port=port, key=key, endpoints=count, tag=f"a{count}_{r}")
                            for r in range(args.runs)]
                    scenarios["publish_api"][str(count)] = {
                        "runs": runs, **{k: summarise(runs, k) for k in ("requests_per_s", "p50_ms", "p99_ms")}}
            scenarios["publish_open"] = {}
            for rate in (float(r) for r in args.api_rates.split(",")):
                runs = [measure_publish_open_loop(base, args, port=port, key=key, rate=rate, endpoints=10,
                                                  tag=f"o{rate:g}_{r}") for r in range(args.runs)]
                scenarios["publish_open"][f"{rate:g}"] = {
                    "runs": runs, **{k: summarise(runs, k) for k in ("achieved_per_s", "p50_ms", "p99_ms", "errors")}}
            web.stop()
        if "fanout" in only:
            runs = [measure_fanout(base, args, endpoints=args.fanout_endpoints, tag=f"f{r}") for r in range(args.runs)]
            scenarios["fanout"] = {"runs": runs, "seconds": summarise(runs, "seconds")}
        if "cost" in only:
            if worker is not None:  # counted in this process only: the worker must not take the deliveries
                worker.stop()
                procs.remove(worker)
            runs = [measure_sql(base, events=100, endpoints=10, tag=f"s{r}") for r in range(args.runs)]
            worker = start_worker(args, queues="priority,maintenance,deliveries,retries")
            procs.append(worker)
            scenarios["sql"] = {"runs": runs, "statements_per_delivery": summarise(runs, "statements_per_delivery")}
            rss_run = measure_delivery("engine", base, args, events=args.rss_deliveries // args.endpoints,
                                       endpoints=args.endpoints, tag="rss", rss_of=worker)
            samples = rss_run.pop("rss_kb_samples", [])
            warm = [kb for done, kb in samples if done >= args.rss_deliveries * 0.2]
            scenarios["rss"] = {"run": rss_run, "samples": samples,
                                "after_warmup_kb": warm[0] if warm else None, "end_kb": warm[-1] if warm else None,
                                "min_kb": min(warm, default=None), "max_kb": max(warm, default=None),
                                "drift_pct": round((max(warm) - min(warm)) / warm[0] * 100, 1) if warm else None}
        if "isolation" in only:
            runs = {"baseline": [], "hanging": []}
            for r in range(args.runs):
                for name in runs:
                    runs[name].append(measure_isolation(base, args, hanging=name == "hanging", tag=f"i{name}{r}"))
            scenarios["isolation"] = {name: {"runs": rs, "p50_ms": summarise(rs, "p50_ms")}
                                      for name, rs in runs.items()}
        if "priority" in only:
            runs = {"high": [], "control": []}
            for r in range(args.runs):
                # Alternate which goes first, so neither always meets a warmer (or busier) machine.
                for name in (("control", "high") if r % 2 == 0 else ("high", "control")):
                    runs[name].append(measure_priority(base, args, high=name == "high", tag=f"p{name}{r}"))
            keys = ("probe_p50_ms", "probe_p95_ms", "probe_max_ms", "backlog_p50_ms", "backlog_p95_ms",
                    "backlog_max_ms", "probes_while_waiting", "last_probe_max_ms")
            scenarios["priority"] = {name: {"runs": rs, **{k: summarise(rs, k) for k in keys}}
                                     for name, rs in runs.items()}
    finally:
        for proc in reversed(procs):
            proc.stop()
        receiver.terminate()
        receiver.wait(timeout=10)
        # Also after a failure: the scenarios that ran are kept.
        print_table(results)
        out = ROOT / "bench" / "results" / f"bench-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        if out.exists():  # another bench run finished in the same second
            out = out.with_name(f"{out.stem}-{os.getpid()}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, default=str))
        print(f"results: {out.relative_to(ROOT)}  (logs: {RUN_DIR})")
    return 0


def _fmt(summary: dict | None) -> str:
    if not summary or summary.get("median") is None:
        return "n/a"
    return f"{summary['median']:g} [{summary['min']:g}..{summary['max']:g}]"


def print_table(results: dict) -> None:
    s = results["scenarios"]
    rows = []
    if "throughput" in s:
        t = s["throughput"]
        rows.append(("1 throughput deliveries/s", _fmt(t["deliveries_per_s"]), ""))
        rows.append(("1 latency p50/p95/p99 ms", " / ".join(_fmt(t[k]) for k in ("p50_ms", "p95_ms", "p99_ms")), ""))
    if "raw" in s:
        rows.append(("2 raw sender deliveries/s", _fmt(s["raw"]["deliveries_per_s"]), ""))
    if "naive" in s:
        rows.append(("3 naive baseline deliveries/s", _fmt(s["naive"]["deliveries_per_s"]), ""))
    if "throughput" in s and "raw" in s and s["raw"]["deliveries_per_s"]["median"]:
        ratio = s["throughput"]["deliveries_per_s"]["median"] / s["raw"]["deliveries_per_s"]["median"]
        rows.append(("  ratio 1/2 (of the medians)", f"{ratio:.2f}",
                     ">= 0.5 " + ("met" if ratio >= 0.5 else "NOT met")))
        if "ratio_1_2_paired" in s:
            paired = s["ratio_1_2_paired"]["ratio"]
            rows.append(("  ratio 1/2 per pair of runs (1 2, 2 1, ...)", _fmt(paired), ""))
    if "throughput" in s and "naive" in s and s["naive"]["deliveries_per_s"]["median"]:
        ratio = s["throughput"]["deliveries_per_s"]["median"] / s["naive"]["deliveries_per_s"]["median"]
        rows.append(("  ratio 1/3", f"{ratio:.2f}", ">= 3 " + ("met" if ratio >= 3 else "NOT met")))
    for count, row in s.get("publish_api", {}).items():
        p99 = row["p99_ms"]["median"]
        target = ("p99 <= 25 ms " + ("met" if p99 is not None and p99 <= 25 else "NOT met")) if count == "10" else ""
        rows.append((f"4 publish API, {count} endpoint(s): req/s", _fmt(row["requests_per_s"]), ""))
        rows.append(("  p50 / p99 ms", f"{_fmt(row['p50_ms'])} / {_fmt(row['p99_ms'])}", target))
    for rate, row in s.get("publish_open", {}).items():
        rows.append((f"4b publish API open loop, 10 endpoints, {rate} req/s offered: achieved req/s",
                     _fmt(row["achieved_per_s"]), f"errors {_fmt(row['errors'])}"))
        rows.append(("  p50 / p99 ms", f"{_fmt(row['p50_ms'])} / {_fmt(row['p99_ms'])}", ""))
    if "fanout" in s:
        sec = s["fanout"]["seconds"]["median"]
        rows.append(("5 fan-out 1 event -> endpoints, s", _fmt(s["fanout"]["seconds"]),
                     "<= 3 s " + ("met" if sec is not None and sec <= 3 else "NOT met")))
    if "sql" in s:
        per = s["sql"]["statements_per_delivery"]["median"]
        rows.append(("6 SQL statements per delivery", _fmt(s["sql"]["statements_per_delivery"]),
                     "<= 3 " + ("met" if per is not None and per <= 3 else "NOT met")))
    if "rss" in s and s["rss"]["drift_pct"] is not None:
        r = s["rss"]
        rows.append((f"6 worker RSS KiB after warm-up..end ({r['run']['delivered']} deliveries)",
                     f"{r['after_warmup_kb']}..{r['end_kb']} (min {r['min_kb']}, max {r['max_kb']})",
                     f"drift {r['drift_pct']}% (+-10 %) " + ("met" if r["drift_pct"] <= 10 else "NOT met")))
    if "isolation" in s:
        base_p50 = s["isolation"]["baseline"]["p50_ms"]["median"]
        hang_p50 = s["isolation"]["hanging"]["p50_ms"]["median"]
        both = f"{_fmt(s['isolation']['baseline']['p50_ms'])} / {_fmt(s['isolation']['hanging']['p50_ms'])}"
        rows.append(("7 isolation p50 ms baseline / hanging", both,
                     (f"ratio {hang_p50 / base_p50:.2f} (<= 2)" if base_p50 and hang_p50 else "")))
    if "priority" in s:
        high, control = s["priority"]["high"], s["priority"]["control"]
        triple = " / ".join(_fmt(high[k]) for k in ("probe_p50_ms", "probe_p95_ms", "probe_max_ms"))
        ratio = ""
        if high["probe_p95_ms"]["median"] is not None and control["probe_p95_ms"]["median"]:
            value = high["probe_p95_ms"]["median"] / control["probe_p95_ms"]["median"]
            ratio = (f"high << ordinary: p95 {value:.2f}x the control's (<= 0.5) "
                     + ("met" if value <= 0.5 else "NOT met"))
        backlog = high["runs"][0]["backlog_deliveries"] if high["runs"] else "?"
        rows.append((f"8 priority: high-priority probes amid {backlog} ordinary, p50/p95/max ms", triple, ratio))
        rows.append(("  same probes, is_high_priority off (control)",
                     " / ".join(_fmt(control[k]) for k in ("probe_p50_ms", "probe_p95_ms", "probe_max_ms")), ""))
        rows.append(("  the ordinary backlog (high run), p50/p95/max ms",
                     " / ".join(_fmt(high[k]) for k in ("backlog_p50_ms", "backlog_p95_ms", "backlog_max_ms")), ""))
        rows.append(("  the last probe's slowest delivery (high / control), ms",
                     f"{_fmt(high['last_probe_max_ms'])} / {_fmt(control['last_probe_max_ms'])}", ""))
        rows.append(("  probes published while deliveries waited (high / control)",
                     f"{_fmt(high['probes_while_waiting'])} / {_fmt(control['probes_while_waiting'])}", ""))
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"\n{'scenario':<{width}}  {'median [min..max]':<40}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<40}  {target}")


if __name__ == "__main__":
    sys.exit(main())
