"""Isolation benchmark (issue 4): does one hanging endpoint delay deliveries to healthy ones?

Run: ``make bench-isolation`` (or ``.venv/bin/python bench/isolation.py``). It uses the configured
database and broker (``DATABASE_URL`` / ``REDIS_URL``; SQLite and the filesystem broker otherwise),
creates a scratch database, starts a real receiver on 127.0.0.1 and a real Celery worker (as the
Procfile does), and runs two scenarios, each several times:

* ``baseline`` — ten healthy endpoints, every event fans out to all of them;
* ``hanging`` — the same plus one endpoint that accepts the connection and never answers (its
  timeout is 5 s, so every attempt holds a worker slot for 5 s).

It publishes events at a steady rate and measures, for the healthy endpoints only, the time from
publish to the receiver seeing the request. The target: the median with a hanging endpoint is
within 2x of the baseline median. Results are printed and written to ``bench/results/``.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RUN_DIR = Path(tempfile.mkdtemp(prefix="vocelio-bench-"))
os.environ.setdefault("VOCELIO_VAR_DIR", str(RUN_DIR))
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
os.environ.setdefault("WEBHOOK_ALLOWED_PRIVATE_CIDRS", "127.0.0.1/32")
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vocelio_webhooks.settings")


def _scratch_database() -> None:
    """Point DATABASE_URL at a scratch database: a new PostgreSQL database next to the configured
    one, or a SQLite file in the run folder."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        base, _, name = url.rpartition("/")
        scratch = f"vocelio_bench_{os.getpid()}"
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
            conn.execute(f'CREATE DATABASE "{scratch}"')
        os.environ["DATABASE_URL"] = f"{base}/{scratch}"
        os.environ["VOCELIO_BENCH_DROP_DB"] = f"{url}|{scratch}"
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{RUN_DIR / 'bench.sqlite3'}"


class Receiver:
    """Records (endpoint path, event id) → arrival time; ``/hang`` never answers."""

    def __init__(self):
        self.arrivals: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path == "/hang":
                    time.sleep(3600)
                    return
                with receiver.lock:
                    receiver.arrivals.setdefault((self.path, self.headers.get("X-Vocelio-Event-Id")), time.time())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_worker(log_path: Path, concurrency: int) -> subprocess.Popen:
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "vocelio_webhooks", "worker", "-Q",
         "priority,deliveries,retries,maintenance", "-c", str(concurrency), "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    time.sleep(4)
    if proc.poll() is not None:
        raise RuntimeError(log_path.read_text())
    return proc


def run_scenario(*, receiver: Receiver, hanging: bool, events: int, rate_per_second: float, healthy: int) -> dict:
    from django.core.management import call_command

    from deliveries.models import Delivery
    from endpoints import services as endpoint_services
    from endpoints.models import WebhookEndpoint
    from events import services as event_services

    call_command("flush", "--noinput", verbosity=0)
    call_command("migrate", verbosity=0)  # the flush removed the seeded event types
    from events.catalog import EVENT_TYPES
    from events.models import EventType

    for entry in EVENT_TYPES:
        EventType.objects.update_or_create(name=entry["name"], defaults={"category": entry["category"]})
    for n in range(healthy):
        endpoint_services.create_endpoint(data={"name": f"healthy-{n}", "url": f"{receiver.base}/ok{n}",
                                                "events": ["*"], "timeout_seconds": 5})
    if hanging:
        endpoint_services.create_endpoint(data={"name": "hanging", "url": f"{receiver.base}/hang", "events": ["*"],
                                                "timeout_seconds": 5})
    receiver.arrivals.clear()
    published: dict[str, float] = {}
    interval = 1.0 / rate_per_second
    start = time.time()
    for n in range(events):
        event_id = f"evt_bench_{'h' if hanging else 'b'}_{n}_{int(start)}"
        published[event_id] = time.time()
        event_services.publish(event_type="lead.created", data={"n": n}, event_id=event_id)
        time.sleep(max(0.0, start + (n + 1) * interval - time.time()))
    expected = events * healthy
    deadline = time.time() + 120
    while len(receiver.arrivals) < expected and time.time() < deadline:
        time.sleep(0.2)
    latencies = [arrived - published[event_id] for (_, event_id), arrived in receiver.arrivals.items()
                 if event_id in published]
    Delivery.objects.all().delete()
    WebhookEndpoint.objects.all().delete()
    return {
        "delivered": len(latencies), "expected": expected,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p95_ms": round(statistics.quantiles(latencies, n=20)[18] * 1000, 1) if len(latencies) > 20 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--rate", type=float, default=2.0, help="events published per second")
    parser.add_argument("--healthy", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "4")))
    args = parser.parse_args()

    _scratch_database()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    receiver = Receiver()
    worker = start_worker(RUN_DIR / "worker.log", args.concurrency)
    results = {"baseline": [], "hanging": []}
    try:
        for _ in range(args.runs):
            for scenario in ("baseline", "hanging"):
                results[scenario].append(run_scenario(receiver=receiver, hanging=scenario == "hanging",
                                                      events=args.events, rate_per_second=args.rate,
                                                      healthy=args.healthy))
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
    summary = {}
    for scenario, runs in results.items():
        p50s = [r["p50_ms"] for r in runs if r["p50_ms"] is not None]
        summary[scenario] = {"median_p50_ms": statistics.median(p50s) if p50s else None,
                             "min_p50_ms": min(p50s, default=None), "max_p50_ms": max(p50s, default=None),
                             "runs": runs}
    ratio = (summary["hanging"]["median_p50_ms"] / summary["baseline"]["median_p50_ms"]
             if summary["baseline"]["median_p50_ms"] and summary["hanging"]["median_p50_ms"] else None)
    report = {
        "benchmark": "isolation", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "broker": settings.CELERY_BROKER_URL.split(":", 1)[0], "host": socket.gethostname(),
        "args": vars(args), "summary": summary, "ratio_hanging_to_baseline_p50": ratio, "target_ratio": 2.0,
    }
    print(f"{'scenario':<10} {'median p50 ms':>14} {'min':>8} {'max':>8}  delivered")
    for scenario in ("baseline", "hanging"):
        row = summary[scenario]
        delivered = sum(r["delivered"] for r in row["runs"]), sum(r["expected"] for r in row["runs"])
        print(f"{scenario:<10} {row['median_p50_ms']!s:>14} {row['min_p50_ms']!s:>8} {row['max_p50_ms']!s:>8}  "
              f"{delivered[0]}/{delivered[1]}")
    print(f"ratio hanging/baseline (median of p50s): {ratio:.2f} (target <= 2.0)" if ratio else "ratio: n/a")
    out = ROOT / "bench" / "results" / f"isolation-{int(time.time())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"results: {out}")
    drop = os.environ.get("VOCELIO_BENCH_DROP_DB")
    if drop:
        from django.db import connections

        connections.close_all()
        import psycopg

        url, scratch = drop.split("|")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
