"""What this machine's web stack can serve at most: issue 7's scenario 4 load (``--clients`` (50)
closed-loop keep-alive clients, each sending its next request when the last one answered) against
gunicorn as ``bench/run.py`` starts it (2 workers x 4 threads, no Celery worker, so nothing is
delivered and the web processes have the cores to themselves, less the load generator's share),
for two requests:

- ``GET /health``: an unauthenticated DRF ``APIView`` returning ``{"status": "ok"}``, no database
  and no Redis: the floor that Django + DRF + gunicorn set on any endpoint of this service;
- ``POST /events/publish`` with ``--endpoints`` (10) matching endpoints: the real publish.

For each, the median [min..max] over ``--runs`` (3) rounds of ``--seconds`` (10) of requests/s and
p50 / p99 latency (milliseconds), and what Little's law asks of a closed loop: with N clients each
always waiting on one request, throughput x mean latency = N, so a p99 of ``--target-ms`` (25) ms
needs at least ``clients / target`` requests/s (2,000/s for 50 clients at 25 ms).

Uses PostgreSQL and Redis like ``bench/run.py`` (``DATABASE_URL`` / ``REDIS_URL``, by default the
local ``vocelio_bench`` database, dropped and re-created, and Redis db 9), with the per-key API
budgets off as in scenario 4. Prints a table and writes ``bench/results/web-ceiling-<time>.json``.
A benchmark: nothing here asserts.
"""
import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import run as bench  # sets the bench's environment defaults first


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    """One ``GET path`` on a keep-alive connection; returns the response head (body read and dropped)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return await bench.read_answer(reader)


def _summary(port: int, clients: int, seconds: float, send, expect: bytes) -> dict:
    """One round of ``bench.closed_loop``: requests/s, errors (a status line not starting with
    ``expect``), p50 and p99 (milliseconds)."""
    latencies, errors = asyncio.run(
        bench.closed_loop(port, clients, seconds, send, lambda head: head.startswith(expect)))
    return {"requests_per_s": round(len(latencies) / seconds, 1), "errors": errors,
            "p50_ms": round(bench.percentile(latencies, 50), 1), "p99_ms": round(bench.percentile(latencies, 99), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--target-ms", type=float, default=25.0)
    args = parser.parse_args()
    bench.migrated_postgres(parser)
    from vocelio_webhooks import services as key_services

    bench.fresh_tables(args.endpoints)  # never sent to: no worker runs
    key = key_services.create_api_key(name=f"ceiling-{time.time()}", scopes=["*"]).raw_key
    port = bench.free_port()
    # As in bench/run.py's scenario 4: the per-key budgets are off (WEBHOOK_*_RATE_PER_MINUTE=0).
    web = bench.Proc("web", [sys.executable, "-m", "gunicorn", "vocelio_webhooks.wsgi", "--bind",
                             f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "--access-logfile", "/dev/null"])
    cases = {
        "GET /health (no authentication, no database)":
            (lambda r, w, c, n: _get(r, w, "/health"), b"HTTP/1.1 200"),
        f"POST /events/publish, {args.endpoints} endpoints":
            (lambda r, w, c, n: bench._post_publish(r, w, key=key, event_id=f"evt_{tag}_{c}_{n}", n=n),
             b"HTTP/1.1 202"),
    }
    results: dict[str, list[dict]] = {name: [] for name in cases}
    tag = "warm"
    try:
        time.sleep(4)
        for send, expect in cases.values():  # warm-up: each gunicorn process loads lazily
            _summary(port, 8, 1.0, send, expect)
        for run in range(args.runs):
            for name, (send, expect) in cases.items():
                tag = f"c{run}_{time.time_ns()}"
                if name.startswith("POST"):  # each round starts from 10 endpoints and no deliveries
                    bench.fresh_tables(args.endpoints)
                results[name].append(_summary(port, args.clients, args.seconds, send, expect))
    finally:
        web.stop()
        bench.flush_broker()
    needed = args.clients / (args.target_ms / 1000)
    print(f"{args.clients} closed-loop clients, {args.runs} x {args.seconds:g} s, gunicorn 2 x 4, no worker; "
          f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")

    def med(runs: list[dict], field: str) -> str:
        values = [r[field] for r in runs]
        return f"{statistics.median(values):g} [{min(values):g}..{max(values):g}]"

    for name, runs in results.items():
        errors = sum(r["errors"] for r in runs)
        print(f"  {name:50s} {med(runs, 'requests_per_s')} req/s; p50 {med(runs, 'p50_ms')} ms, "
              f"p99 {med(runs, 'p99_ms')} ms"
              f"{f'; {errors} errors' if errors else ''}")
    print(f"  p99 <= {args.target_ms:g} ms with {args.clients} closed-loop clients needs >= {needed:,.0f} req/s "
          f"(Little's law: clients / latency)")
    out = bench.ROOT / "bench" / "results" / f"web-ceiling-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": bench.machine(), "args": vars(args), "needed_per_s": needed,
                               "cases": results}, indent=1))
    print(f"results: {out.relative_to(bench.ROOT)}")


if __name__ == "__main__":
    main()
