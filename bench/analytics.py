"""Analytics benchmark (issue 6): overview and 30-day trends with 1,000,000 attempts stored.

Run: ``make bench-analytics`` (or ``.venv/bin/python bench/analytics.py [--attempts N] [--runs N]``).
Needs ``DATABASE_URL`` pointing at PostgreSQL (the claim is about PostgreSQL; seeding uses
``COPY``): it creates a scratch database next to it (``<name>_bench``, dropped at the end unless
``--keep``; ``--reuse`` skips seeding when a kept one is already filled).

Steps: seed 30 days of traffic with ``COPY`` — 20 endpoints in three environments, six event
types, a daily traffic curve, 1-3 deliveries per event, retries with backoff, one flaky endpoint and
one that times out, replays — until exactly ``--attempts`` attempts exist; roll everything up
(``analytics.services.rebuild_rollups``), time one steady-state roll-up run (what the beat task
does each minute); then time each query ``--runs`` times and print median/min/max:
``overview`` over 30 days and over 24 hours, ``trends`` over 30 days by hour and by day, and by
minute over 24 hours. Results go to ``bench/results/analytics-<timestamp>.json``.
"""
import argparse
import io
import json
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RUN_DIR = Path(tempfile.mkdtemp(prefix="vocelio-bench-analytics-"))
os.environ.setdefault("VOCELIO_VAR_DIR", str(RUN_DIR))
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vocelio_webhooks.settings")

ENVIRONMENTS = ("production", "production", "production", "staging", "development")
EVENT_TYPES = ("lead.created", "call.started", "call.ended", "call.answered", "lead.updated", "call.missed")
DAYS = 30
# Share of a day's traffic per UTC hour: quiet nights, a busy working day.
HOURLY_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 10, 11, 11, 10, 8, 6, 5, 4, 3, 2, 1]


def _scratch_database(reuse: bool) -> None:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        base, _, name = url.rpartition("/")
        scratch = f"{name.split('?')[0]}_bench"
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,)).fetchone()
            if exists and not reuse:
                conn.execute(f'DROP DATABASE "{scratch}"')
            if not exists or not reuse:
                conn.execute(f'CREATE DATABASE "{scratch}"')
        os.environ["DATABASE_URL"] = f"{base}/{scratch}"
        os.environ["VOCELIO_BENCH_DROP_DB"] = f"{url}|{scratch}"
    else:
        raise SystemExit("bench/analytics.py needs DATABASE_URL=postgres://… (it seeds with COPY).")


def _traffic(*, attempts_target: int, now: datetime, endpoints: list[tuple[int, str, str]],
             type_ids: dict[str, int], rng: random.Random):
    """Yield (event row, [(delivery row, [attempt rows])]) until ``attempts_target`` attempts."""
    start = now - timedelta(days=DAYS)
    by_environment: dict[str, list] = {}
    for endpoint in endpoints:
        by_environment.setdefault(endpoint[1], []).append(endpoint)
    flaky, slow = endpoints[0][0], endpoints[1][0]
    made = 0
    event_number = 0
    hours = list(range(24))
    while made < attempts_target:
        day = rng.randrange(DAYS + 1)  # day 0 starts at midnight before ``start``; day DAYS is today
        hour = rng.choices(hours, HOURLY_WEIGHTS)[0]
        at = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            days=day, hours=hour, seconds=rng.random() * 3600)
        if at >= now - timedelta(seconds=30) or at < start:
            continue
        environment = rng.choice(ENVIRONMENTS)
        kind = rng.choice(EVENT_TYPES)
        event_number += 1
        event = (event_number, f"evt_bench_{event_number}", type_ids[kind], at, environment)
        targets = rng.sample(by_environment[environment], k=min(len(by_environment[environment]), rng.randint(1, 3)))
        deliveries = []
        for endpoint_id, _, url in targets:
            created = at + timedelta(milliseconds=rng.randint(1, 50))
            failure_p = 0.45 if endpoint_id == flaky else 0.03
            attempts = []
            moment = created
            status = "dead_lettered"
            for number in range(1, 6):
                moment = moment + timedelta(milliseconds=rng.randint(5, 80)) if number == 1 else (
                    moment + timedelta(seconds=2 ** (number - 1) + rng.random()))
                if endpoint_id == slow and rng.random() < 0.3:
                    duration, code, error_class, outcome = 15000, None, "timeout", "retry"
                elif rng.random() < failure_p:
                    code = rng.choice((500, 502, 503, 429))
                    duration, error_class, outcome = int(rng.lognormvariate(5.5, 0.6)), f"http_{code}", "retry"
                elif rng.random() < 0.005:
                    duration, code, error_class, outcome = int(rng.lognormvariate(4.5, 0.5)), 404, "http_404", "failed"
                else:
                    duration, code, error_class, outcome = int(rng.lognormvariate(4.8, 0.7)), 200, "", "succeeded"
                if outcome == "retry" and number == 5:
                    outcome = "failed"
                attempts.append((number, url, code, duration, error_class, outcome, moment))
                if outcome == "succeeded":
                    status = "succeeded"
                    break
                if outcome == "failed":
                    status = "failed" if code == 404 else "dead_lettered"
                    break
            if made + len(attempts) > attempts_target:
                attempts = attempts[: attempts_target - made]
                status = "retrying" if attempts and attempts[-1][5] == "retry" else status
            if not attempts:
                status = "pending"
            made += len(attempts)
            deliveries.append(((endpoint_id, status, len(attempts), created, rng.random() < 0.01,
                                attempts[-1][6] if attempts else None, attempts[-1][2] if attempts else None),
                               attempts))
            if made >= attempts_target:
                break
        yield event, deliveries


def _ts(moment: datetime | None) -> str:
    return "\\N" if moment is None else moment.isoformat()


def seed(*, attempts_target: int, now: datetime) -> dict:
    """Write endpoints, events, deliveries and exactly ``attempts_target`` attempts."""
    from django.db import connection

    from endpoints.models import WebhookEndpoint
    from events.models import EventType

    for name in EVENT_TYPES:
        EventType.objects.get_or_create(name=name, defaults={"category": name.split(".")[0]})
    type_ids = dict(EventType.objects.filter(name__in=EVENT_TYPES).values_list("name", "id"))
    endpoints = []
    for n in range(20):
        environment = ("production", "staging", "development")[0 if n < 12 else 1 if n < 17 else 2]
        url = f"https://receiver-{n}.example.com/hooks"
        row = WebhookEndpoint.objects.create(name=f"receiver-{n}", url=url, events=["*"], environment=environment)
        endpoints.append((row.pk, environment, url))
    rng = random.Random(20260302)
    began = time.monotonic()
    events, deliveries, attempts = io.StringIO(), io.StringIO(), io.StringIO()
    counts = {"events": 0, "deliveries": 0, "attempts": 0}
    delivery_id = attempt_id = 0

    def flush() -> None:
        with connection.cursor() as cursor:
            for table, buffer, columns in (
                ("events_event", events, ("id, event_id, event_type_id, timestamp, data, metadata, environment, "
                                         "received_at")),
                ("deliveries_delivery", deliveries, ("id, event_id, endpoint_id, status, attempt_count, "
                 "next_attempt_at, last_attempt_at, last_status_code, last_error, completed_at, is_replay, "
                 "created_at, updated_at")),
                ("deliveries_deliveryattempt", attempts, ("id, delivery_id, attempt_number, url, http_method, "
                 "request_headers, request_body, request_body_sha256, request_body_size, response_status_code, "
                 "response_headers, response_body, duration_ms, error_class, error_message, outcome, started_at, "
                 "created_at")),
            ):
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    copy.write(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()

    for event, fan_out in _traffic(attempts_target=attempts_target, now=now, endpoints=endpoints,
                                   type_ids=type_ids, rng=rng):
        event_id, public_id, type_id, at, environment = event
        counts["events"] += 1
        events.write(f"{event_id}\t{public_id}\t{type_id}\t{_ts(at)}\t{{}}\t{{}}\t{environment}\t{_ts(at)}\n")
        for (endpoint_id, status, attempt_count, created, is_replay, last_at, last_code), rows in fan_out:
            delivery_id += 1
            counts["deliveries"] += 1
            final = status in ("succeeded", "failed", "dead_lettered")
            deliveries.write(
                    f"{delivery_id}\t{event_id}\t{endpoint_id}\t{status}\t{attempt_count}\t"
                    f"{_ts(None if final else now)}\t{_ts(last_at)}\t{last_code or chr(92) + 'N'}\t\t"
                    f"{_ts(last_at if final else None)}\t{'t' if is_replay else 'f'}\t{_ts(created)}\t"
                    f"{_ts(last_at or created)}\n")
            for number, url, code, duration, error_class, outcome, moment in rows:
                attempt_id += 1
                counts["attempts"] += 1
                attempts.write(
                        f"{attempt_id}\t{delivery_id}\t{number}\t{url}\tPOST\t{{}}\t\t{'0' * 64}\t0\t"
                        f"{code or chr(92) + 'N'}\t{{}}\t\t{duration}\t{error_class}\t"
                        f"{'HTTP ' + str(code) if code and code >= 300 else ('read timed out' if code is None else '')}"
                        f"\t{outcome}\t{_ts(moment)}\t{_ts(moment)}\n")
        if attempts.tell() > 32_000_000:  # COPY in slices of ~100k attempts
            flush()
    flush()
    with connection.cursor() as cursor:
        for table in ("events_event", "deliveries_delivery", "deliveries_deliveryattempt"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
            cursor.execute(f"ANALYZE {table}")
    counts["seconds"] = round(time.monotonic() - began, 1)
    return counts


def timed(function, runs: int) -> dict:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        function()
        samples.append((time.perf_counter() - began) * 1000)
    return {"median_ms": round(statistics.median(samples), 1), "min_ms": round(min(samples), 1),
            "max_ms": round(max(samples), 1), "runs": runs, "samples_ms": [round(s, 1) for s in samples]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept scratch database (skip seeding)")
    args = parser.parse_args()

    _scratch_database(args.reuse)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from analytics import queries
    from analytics import services as analytics_services
    from analytics.models import AttemptRollup, ErrorRollup, RollupState
    from deliveries.models import DeliveryAttempt

    call_command("migrate", verbosity=0)
    now = datetime.now(UTC)
    report: dict = {"benchmark": "analytics", "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "database": connection.vendor, "host": socket.gethostname(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "args": vars(args)}
    if args.reuse and DeliveryAttempt.objects.exists():
        latest = DeliveryAttempt.objects.order_by("-created_at").values_list("created_at", flat=True).first()
        now = latest + timedelta(seconds=31)  # keep the seeded window "now"
        report["seed"] = {"reused": True, "attempts": DeliveryAttempt.objects.count()}
    else:
        print(f"seeding {args.attempts:,} attempts over {DAYS} days …", flush=True)
        report["seed"] = seed(attempts_target=args.attempts, now=now)
    print(f"seed: {report['seed']}", flush=True)

    RollupState.objects.all().delete()
    began = time.monotonic()
    rebuild = analytics_services.rebuild_rollups(now=now)
    report["rollup_rebuild"] = {"seconds": round(time.monotonic() - began, 1), "rows_written": rebuild.rows_written,
                                "watermark": rebuild.watermark.isoformat()}
    began = time.monotonic()
    analytics_services.rollup_delivery_stats(now=now)
    report["rollup_steady_run_ms"] = round((time.monotonic() - began) * 1000, 1)
    report["rollup_rows"] = {
        level: {"attempt_rollups": AttemptRollup.objects.filter(granularity=level).count(),
                "error_rollups": ErrorRollup.objects.filter(granularity=level).count()}
        for level in ("minute", "hour", "day")
    }
    print(f"roll-up rebuild: {report['rollup_rebuild']}; steady run: {report['rollup_steady_run_ms']} ms; "
          f"rows: {report['rollup_rows']}", flush=True)

    month, day = now - timedelta(days=DAYS), now - timedelta(hours=24)
    cases = {
        "overview_30d": lambda: queries.overview(start=month, end=now),
        "overview_24h": lambda: queries.overview(start=day, end=now),
        "overview_30d_one_endpoint": lambda: queries.overview(
            start=month, end=now, endpoint_id=AttemptRollup.objects.values_list("endpoint_id", flat=True).first()),
        "trends_30d_hour": lambda: queries.trends(start=month, end=now, bucket="hour", forecast_buckets=24, now=now),
        "trends_30d_day": lambda: queries.trends(start=month, end=now, bucket="day", forecast_buckets=7, now=now),
        "trends_24h_minute": lambda: queries.trends(start=day, end=now, bucket="minute", forecast_buckets=60, now=now),
    }
    overview = queries.overview(start=month, end=now)
    report["check"] = {"attempts_in_overview_30d": overview["attempts"]["total"],
                       "attempts_stored": DeliveryAttempt.objects.count(),
                       "success_rate": overview["success_rate"], "response_time_ms": overview["response_time_ms"],
                       "forecast_30d_hour": {k: v for k, v in queries.trends(
                           start=month, end=now, bucket="hour", forecast_buckets=24, now=now)["forecast"].items()
                           if k != "buckets"}}
    report["queries"] = {}
    print(f"{'query':<28} {'median ms':>10} {'min':>8} {'max':>8}")
    for name, function in cases.items():
        result = timed(function, args.runs)
        report["queries"][name] = result
        print(f"{name:<28} {result['median_ms']:>10} {result['min_ms']:>8} {result['max_ms']:>8}", flush=True)
    print(f"check: {json.dumps(report['check'])}")
    out = ROOT / "bench" / "results" / f"analytics-{int(time.time())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"results: {out}")
    drop = os.environ.get("VOCELIO_BENCH_DROP_DB")
    if drop and not args.keep:
        from django.db import connections

        connections.close_all()
        import psycopg

        url, scratch = drop.split("|")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
