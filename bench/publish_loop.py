"""``events.services.publish`` in process: CPU and wall time per publish of a ~1 KB event to
``--endpoints`` (10) endpoints, ``--events`` (2,000) publishes after 200 to warm up (the routing
cache, the compiled statements). Needs PostgreSQL; like ``bench/run.py`` it uses
``DATABASE_URL`` / ``REDIS_URL`` or by default the local ``vocelio_bench`` database, which is
dropped and re-created, and Redis db 9. Wake-ups are counted in Redis but no worker runs, so
nothing is sent. A benchmark: nothing here asserts.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import run as bench  # sets the bench's environment defaults first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=10)
    args = parser.parse_args()
    bench.migrated_postgres(parser)
    from events import services as event_services

    bench.fresh_tables(args.endpoints)  # never sent to: no worker runs
    for n in range(200):
        event_services.publish(event_type="lead.created", data=bench.event_data(n), event_id=f"warm-{n}")
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(args.events):
        event_services.publish(event_type="lead.created", data=bench.event_data(n), event_id=f"pub-{n}")
    per = 1000 / args.events
    print(f"{args.events} publishes to {args.endpoints} endpoints: CPU {(time.process_time() - cpu) * per:.3f} ms, "
          f"wall {(time.perf_counter() - wall) * per:.3f} ms per publish")
    bench.flush_broker()


if __name__ == "__main__":
    main()
