"""A slow endpoint's backlog: ``make bench-slow`` (``bench/slow_endpoint.py``).

One endpoint whose receiver answers after ``--delay`` seconds (2) and three fast ones subscribe to
``lead.created``; ``--events`` events (150) are published at once. With the in-flight cap
(``WEBHOOK_ENDPOINT_MAX_IN_FLIGHT``, 10) the slow endpoint can take at most cap ÷ delay
deliveries per second (5); the script prints how long its backlog took and the rate achieved.
Runs the service's worker **and beat** (the sweep matters here) on PostgreSQL and Redis
(``DATABASE_URL``/``REDIS_URL``; default the local ``vocelio_bench_slow`` database, dropped and
re-created, and Redis db 11, flushed). A benchmark: it asserts nothing.
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://vocelio:vocelio@127.0.0.1:5432/vocelio_bench_slow")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/11")

from bench.run import RUN_DIR, Proc, flush_broker, reset_database  # noqa: E402 — after the environment defaults above

ARRIVALS: dict[str, list[float]] = {}
_lock = threading.Lock()


def _handler(delay: float):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.startswith("/slow"):
                time.sleep(delay)
            with _lock:
                ARRIVALS.setdefault(self.path, []).append(time.time())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds the slow receiver takes to answer")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    reset_database()
    flush_broker()
    Proc("migrate", [sys.executable, "manage.py", "migrate", "-v0"]).popen.wait(timeout=300)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(args.delay))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    procs = [Proc("worker", [sys.executable, "-m", "celery", "-A", "vocelio_webhooks", "worker", "-Q",
                             "priority,maintenance,deliveries,retries", "-c", "2", "--loglevel", "WARNING",
                             "-n", "bench-slow@%h"]),
             Proc("beat", [sys.executable, "-m", "celery", "-A", "vocelio_webhooks", "beat", "--loglevel", "WARNING",
                           "-s", str(RUN_DIR / "beat-schedule")])]
    try:
        time.sleep(6)
        import django

        django.setup()
        from django.conf import settings

        from endpoints.models import WebhookEndpoint
        from events import services as event_services

        for name in ("slow", "fast1", "fast2", "fast3"):
            WebhookEndpoint.objects.create(name=name, url=f"{base}/{name}", events=["lead.created"], timeout_seconds=10,
                                           secret="whsec_bench_slow_secret_0123456789")
        started = time.time()
        for n in range(args.events):
            event_services.publish(event_type="lead.created", data={"n": n}, event_id=f"evt_slow_{n}")
        while time.time() - started < args.timeout and len(ARRIVALS.get("/slow", [])) < args.events:
            time.sleep(0.5)
        with _lock:
            result = {path: {"received": len(times), "last_s": round(max(times) - started, 1)}
                      for path, times in sorted(ARRIVALS.items())}
        slow = result.get("/slow", {"received": 0, "last_s": None})
        cap = settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT
        print(json.dumps(result))
        if slow["last_s"]:
            print(f"slow endpoint: {slow['received']} deliveries in {slow['last_s']} s = "
                  f"{slow['received'] / slow['last_s']:.1f}/s "
                  f"(at most {cap / args.delay:g}/s: cap {cap} / {args.delay:g} s)")
        return 0
    finally:
        for proc in procs:
            proc.stop()
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
