"""The claim with a paused endpoint's backlog in front of the active ones: milliseconds per claim
(``deliveries.services.claim.claim_due``, ``limit`` = ``WEBHOOK_BATCH_SIZE``) while
``--paused`` due deliveries of one paused endpoint are older than every due delivery of
``--endpoints`` active ones (``--events`` events each). A paused endpoint keeps receiving
deliveries (they wait for it), so in production that backlog grows with traffic for as long as it
is paused. The beat sweep runs first, as it would every few seconds. Each claimed batch is put back
as it was (not timed), so every claim sees the same rows. Where deliveries can be held (the sweep's
``hold_and_release``), the endpoint is then resumed and the sweeps that release its rows timed.
``--capped``: the backlog's endpoint stays active but at its in-flight cap (a slow receiver: its
slots are filled by live claims), so the claim must pass over its rows instead.
``WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS=0`` in the environment picks the oldest-first scan. Needs PostgreSQL; like
``bench/run.py`` it uses ``DATABASE_URL`` / ``REDIS_URL`` or by default the local
``vocelio_bench`` database, which is dropped and re-created. A benchmark: nothing here asserts.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import run as bench  # sets the bench's environment defaults first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paused", type=int, default=100_000, help="due deliveries of the paused endpoint")
    parser.add_argument("--endpoints", type=int, default=10, help="active endpoints")
    parser.add_argument("--events", type=int, default=1000, help="events published to the active endpoints")
    parser.add_argument("--claims", type=int, default=40)
    parser.add_argument("--capped", action="store_true",
                        help="the backlog's endpoint stays active, at its in-flight cap (a slow receiver), not paused")
    args = parser.parse_args()
    bench.migrated_postgres(parser)
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from deliveries.models import Delivery
    from deliveries.services.claim import claim_due
    from deliveries.services.sweep import sweep_due_deliveries
    from endpoints.models import WebhookEndpoint
    from events import services as event_services
    from events.models import EventType

    bench.clean_tables()
    bench.flush_broker()
    EventType.objects.get_or_create(name="lead.created")
    paused = bench.make_endpoints("http://127.0.0.1:9", 1, prefix="paused")[0]
    if not args.capped:
        WebhookEndpoint.objects.filter(pk=paused.pk).update(status=WebhookEndpoint.Status.PAUSED)
    old = timezone.now() - timezone.timedelta(hours=1)
    event = event_services.publish(event_type="lead.created", data=bench.event_data(0), event_id="paused-0").event
    Delivery.objects.bulk_create((Delivery(event=event, endpoint_id=paused.pk, next_attempt_at=old)
                                  for _ in range(args.paused)), batch_size=5000)
    if args.capped:  # its cap filled by live claims: it is sent nothing more until one ends
        Delivery.objects.bulk_create(
            Delivery(event=event, endpoint_id=paused.pk, status=Delivery.Status.IN_FLIGHT, next_attempt_at=old,
                     claimed_until=timezone.now() + timezone.timedelta(hours=1))
            for _ in range(settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT))
    bench.make_endpoints("http://127.0.0.1:9", args.endpoints)  # never sent to: nothing is sent here
    for n in range(args.events):
        event_services.publish(event_type="lead.created", data=bench.event_data(n), event_id=f"active-{n}")
    bench.flush_broker()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Delivery._meta.db_table}")
    started = time.perf_counter()
    sweeps = 0
    while sweeps < (1 if args.capped else 50):  # the sweep's work on the backlog, however many passes (bounded)
        sweeps += 1
        sweep_due_deliveries()
        if not Delivery.objects.filter(endpoint_id=paused.pk, status__in=Delivery.DUE_STATUSES,
                                       **({"held": False} if hasattr(Delivery, "held") else {})).exists():
            break
    sweep_seconds = time.perf_counter() - started
    timings = []
    for _ in range(args.claims):
        started = time.perf_counter()
        ids = claim_due(limit=settings.WEBHOOK_BATCH_SIZE)
        timings.append((time.perf_counter() - started) * 1000)
        Delivery.objects.filter(pk__in=ids).update(status=Delivery.Status.PENDING, claimed_until=None)
    resumed = ""
    if hasattr(Delivery, "held") and not args.capped:  # resume the endpoint, time the sweeps releasing its rows
        WebhookEndpoint.objects.filter(pk=paused.pk).update(status=WebhookEndpoint.Status.ACTIVE)
        started, passes = time.perf_counter(), 0
        while passes < 50 and Delivery.objects.filter(endpoint_id=paused.pk, held=True).exists():
            passes += 1
            sweep_due_deliveries()
        resumed = f"; after resuming, released in {time.perf_counter() - started:.2f} s ({passes} sweep passes)"
    bench.flush_broker()
    kind = "an endpoint at its in-flight cap" if args.capped else "a paused endpoint"
    print(f"{args.paused} due deliveries of {kind}, {args.events * args.endpoints} of {args.endpoints} "
          f"active ones; sweep {sweep_seconds:.2f} s in {sweeps} pass(es); claim of {settings.WEBHOOK_BATCH_SIZE}: "
          f"median {statistics.median(timings):.2f} ms [{min(timings):.2f}..{max(timings):.2f}] of {args.claims}, "
          f"{len(ids)} claimed{resumed}")


if __name__ == "__main__":
    main()
