"""``python manage.py retry_deliveries``: retry dead-lettered (or failed, or cancelled)
deliveries in bulk, for operators.

Each selected delivery gets one more attempt now, exactly as ``POST /deliveries/retry`` (the same
services): new attempts are added, earlier ones are not touched; a delivery that changed state
since it was selected is skipped.

    python manage.py retry_deliveries --endpoint 7 --since 2025-08-05T17:00:00Z --dry-run
    python manage.py retry_deliveries --status dead_lettered --status failed --event-type 'call.*'

``--since``/``--until`` select deliveries by creation time (``created_at``; ``--until``
exclusive; a time without offset is UTC). ``--status`` defaults to ``dead_lettered``.
Deliveries are retried in transactions of 500, each with its audit entry.
"""
from collections import Counter

from django.core.management.base import CommandError

from deliveries import services as delivery_services
from deliveries.management.commands.replay_events import (
    BATCH_SIZE,
    add_common_arguments,
    audited_batch,
)
from deliveries.models import Delivery
from deliveries.services.selection import RETRYABLE_STATUSES
from endpoints.models import WebhookEndpoint
from vocelio_webhooks.commands import OperatorCommand, iso_datetime, progress, tick

STATUS_CHOICES = [str(s) for s in RETRYABLE_STATUSES]


class Command(OperatorCommand):
    help = ("Retry dead-lettered (default), failed or cancelled deliveries: one more attempt each, now. "
            "Earlier attempts are not touched.")
    examples = """
python manage.py retry_deliveries --endpoint 7 --since 2025-08-05T17:00:00Z --dry-run
python manage.py retry_deliveries --status dead_lettered --status failed --event-type 'call.*'
python manage.py retry_deliveries --limit 1000 --no-progress
"""

    def add_arguments(self, parser):
        add_common_arguments(parser)
        parser.add_argument("--since", type=iso_datetime, help="Deliveries created at or after this time (ISO-8601).")
        parser.add_argument("--until", type=iso_datetime, help="Deliveries created before this time (ISO-8601).")
        parser.add_argument("--status", action="append", dest="statuses", choices=STATUS_CHOICES,
                            help="Deliveries in this status (repeatable; default dead_lettered).")

    def handle(self, *args, **options):
        since, until = options["since"], options["until"]
        if since and until and until <= since:
            raise CommandError("--until must be later than --since.")
        # As replay_events: an id that matches nothing is a typo, not "nothing to retry".
        if options["endpoint"] is not None and not WebhookEndpoint.objects.filter(pk=options["endpoint"]).exists():
            raise CommandError(f"Endpoint {options['endpoint']} does not exist.")
        selection = delivery_services.DeliverySelection(
            statuses=tuple(options["statuses"] or (Delivery.Status.DEAD_LETTERED,)),
            endpoint_id=options["endpoint"], event_type=options["event_type"],
            created_after=since, created_before=until,
        )
        queryset = delivery_services.select_deliveries(selection=selection, allowed_statuses=RETRYABLE_STATUSES)
        if options["limit"] is not None:
            queryset = queryset[: options["limit"]]
        rows = list(queryset.values_list("pk", "status", "endpoint_id"))
        ids = [pk for pk, _, _ in rows]

        if options["dry_run"]:
            # The breakdown first, the summary last (every operator command ends with its summary).
            for (status, endpoint_id), count in sorted(Counter((s, e) for _, s, e in rows).items(),
                                                       key=lambda item: (item[0][1] or 0, item[0][0])):
                self.stdout.write(f"  endpoint {endpoint_id}, {status}: {count}")
            self.stdout.write(f"Would retry {len(ids)} delivery(ies).")
            return
        retried = 0
        with progress(self, enabled=not options["no_progress"], total=len(ids), desc="Retrying",
                      unit="delivery") as bar:
            for start in range(0, len(ids), BATCH_SIZE):
                chunk = ids[start:start + BATCH_SIZE]
                done = audited_batch(lambda chunk=chunk: delivery_services.retry_many(delivery_ids=chunk),
                                     command="retry_deliveries", action="retry", counted="retried",
                                     noun="delivery(ies)")
                retried += len(done)
                tick(bar, len(chunk))
        skipped = len(ids) - retried
        self.stdout.write(self.style.SUCCESS(
            f"Retried {retried} of {len(ids)} delivery(ies)"
            + (f" ({skipped} skipped: their state changed meanwhile)" if skipped else "") + "."
        ))
