"""The worker's batch loop in process (``make bench-lane``): what one worker process spends per
delivery, with the send lane (``deliveries/services/lane.py``) and with one thread per send.

Publishes ``--events`` events to ``--endpoints`` endpoints on the bench receiver, then runs
``deliver_due_batch`` in a loop until nothing is due, and prints the process's CPU time (all its
threads) and wall time per delivery, and the PostgreSQL backend's CPU time per delivery. Rounds
alternate the two modes (lane, threads, lane, …), so both see the same machine. "threads" hands
every send of a batch to a thread of its own at once, as the engine did before the lane (it sets
``LANE_SLOW_MS`` to 0, so every receiver counts as known-slow). Needs
PostgreSQL; like ``bench/run.py`` it uses ``DATABASE_URL`` / ``REDIS_URL`` or by default the local
``vocelio_bench`` database, which is dropped and re-created, and Redis db 9, which is flushed before
every round. A benchmark: nothing here asserts.
"""
import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import run as bench  # sets the bench's environment defaults first


def _backend_cpu_seconds(connection) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=_positive, default=1000, help="events per round (each to every endpoint)")
    parser.add_argument("--endpoints", type=_positive, default=10)
    parser.add_argument("--rounds", type=_positive, default=6, help="rounds in all, the modes alternating")
    args = parser.parse_args()
    bench.migrated_postgres(parser, " (it reads the backend's CPU time)")
    from django.db import connection

    from deliveries.services import batch, lane
    from events import services as event_services
    from events.models import EventType

    receiver, url = bench.start_receiver()
    slow_ms = lane.LANE_SLOW_MS
    results: dict[str, list[tuple[float, float, float]]] = {"lane": [], "threads": []}
    try:
        for n in range(args.rounds):
            mode = "lane" if n % 2 == 0 else "threads"
            # LANE_SLOW_MS 0: every endpoint counts as known-slow, so every send gets its own thread
            lane.LANE_SLOW_MS = slow_ms if mode == "lane" else 0
            bench.clean_tables()
            EventType.objects.get_or_create(name="lead.created")
            bench.make_endpoints(url, args.endpoints)
            for i in range(args.events):
                event_services.publish(event_type="lead.created", data=bench.event_data(i), event_id=f"loop-{n}-{i}")
            bench.flush_broker()
            backend_before = _backend_cpu_seconds(connection)
            cpu_before, wall_before, delivered = time.process_time(), time.perf_counter(), 0
            while claimed := batch.deliver_due_batch(rearm=False).claimed:
                delivered += claimed
            per = 1000 / delivered
            results[mode].append(((time.process_time() - cpu_before) * per, (time.perf_counter() - wall_before) * per,
                                  (_backend_cpu_seconds(connection) - backend_before) * per))
            print(f"round {n + 1} {mode:7s} {delivered} deliveries: worker CPU {results[mode][-1][0]:.3f} ms, "
                  f"wall {results[mode][-1][1]:.3f} ms, PostgreSQL backend CPU {results[mode][-1][2]:.3f} ms "
                  "per delivery", flush=True)
    finally:
        receiver.kill()
        shutil.rmtree(bench.RUN_DIR, ignore_errors=True)  # bench/run.py's log folder: nothing of ours in it
    for mode, rows in results.items():
        if rows:
            cpu, wall, backend = (f"{statistics.median(c):.3f} [{min(c):.3f}..{max(c):.3f}]" for c in zip(*rows))
            print(f"{mode:7s} median [min..max] of {len(rows)}: worker CPU {cpu} ms, wall {wall} ms, "
                  f"PostgreSQL backend CPU {backend} ms per delivery")


if __name__ == "__main__":
    main()
