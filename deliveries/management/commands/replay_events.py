"""``python manage.py replay_events``: replay published events as new deliveries, for operators.

Each event goes to every endpoint that would receive it if it were published now (environment,
status active/paused, event types, payload filters), or with ``--endpoint`` to that endpoint
only. A replay is a new delivery marked as one (``is_replay``, ``X-Vocelio-Replay: true``) with
the original ``event_id``; earlier deliveries and attempts are not touched. The same services as
``POST /events/{event_id}/replay`` and ``POST /endpoints/{id}/replay``.

    python manage.py replay_events --endpoint 7 --since 2025-08-05T17:00:00Z --only-failed --dry-run
    python manage.py replay_events --since 2025-08-05 --event-type 'lead.*' --status dead_lettered

``--since``/``--until`` select events by when we received them (``received_at``; ``--until``
exclusive; a time without offset is UTC). ``--status`` keeps only (event, endpoint) pairs whose
latest delivery has that status; ``--only-failed`` only pairs the endpoint has not received and
is not about to receive. Replays are written in transactions of 500, each with its audit entry.
"""
import argparse
from collections import Counter
from collections.abc import Callable

from django.core.management.base import CommandError
from django.db import transaction

from deliveries import services as delivery_services
from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from events.models import Event
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.commands import (
    OperatorCommand,
    add_dry_run_argument,
    add_progress_argument,
    iso_datetime,
    object_id,
    progress,
    row_limit,
    tick,
)

BATCH_SIZE = 500


def event_type_patterns(value: str) -> str:
    """An argparse ``type``: comma-separated event-type patterns, checked as the API checks them
    (``events.filtersets.validate_event_type_selection``: at least one, ``*`` for all); anything
    else raises ``argparse.ArgumentTypeError`` (argparse prints it and exits 2)."""
    from django.core.exceptions import ValidationError

    from events.filtersets import validate_event_type_selection

    try:
        validate_event_type_selection(value)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(" ".join(exc.messages)) from None
    return value


def audited_batch(write: Callable[[], list[int]], *, command: str, action: str, counted: str, noun: str) -> list[int]:
    """Run ``write`` (one batch of a command's writes; returns the ids it changed) in a
    transaction with its own audit entry (actor ``command:<command>``, the count under
    ``counted`` and the ids): an entry written once at the end was never written when a run
    stopped part-way (Ctrl-C, a database error), although the batches before had committed. A
    batch that changes nothing writes no entry. Returns the ids."""
    with transaction.atomic():
        done = write()
        if done:
            audit_services.record_audit(
                actor=audit_services.command_actor(command), action=action, object_type="deliveries.delivery",
                object_repr=f"{len(done)} {noun}",
                changes={counted: {"old": None, "new": len(done)}, "delivery_ids": {"old": None, "new": done}},
            )
    return done


def add_common_arguments(parser) -> None:
    parser.add_argument("--endpoint", type=object_id, metavar="ID", help="Endpoint id (it must exist).")
    parser.add_argument("--event-type", type=event_type_patterns, metavar="PATTERNS",
                        help="Event types: comma-separated exact names, 'lead.*' or '*'.")
    parser.add_argument("--limit", type=row_limit, metavar="N",
                        help="Act on at most this many deliveries (default: all).")
    add_dry_run_argument(parser, "Count and list what would be done (per endpoint); write nothing.")
    add_progress_argument(parser)


class Command(OperatorCommand):
    help = ("Replay events as new deliveries (same event_id, marked as replays) to the endpoints that would "
            "receive them now. Earlier deliveries and attempts are not touched.")
    examples = """
python manage.py replay_events --endpoint 7 --since 2025-08-05T17:00:00Z --only-failed --dry-run
python manage.py replay_events --since 2025-08-05 --until 2025-08-06 --event-type 'lead.*' --status dead_lettered
python manage.py replay_events --event-id evt_123 --event-id evt_456 --no-progress
"""

    def add_arguments(self, parser):
        add_common_arguments(parser)
        parser.add_argument("--since", type=iso_datetime, help="Events received at or after this time (ISO-8601).")
        parser.add_argument("--until", type=iso_datetime, help="Events received before this time (ISO-8601).")
        parser.add_argument("--event-id", action="append", dest="event_ids", metavar="EVENT_ID",
                            help="This event (repeatable).")
        parser.add_argument("--status", action="append", dest="statuses", choices=Delivery.Status.values,
                            help="Only event/endpoint pairs whose latest delivery has this status (repeatable).")
        parser.add_argument("--only-failed", action="store_true",
                            help="Only event/endpoint pairs not received yet and not about to be (no succeeded, "
                                 "pending, in-flight or retrying delivery).")

    def handle(self, *args, **options):
        since, until = options["since"], options["until"]
        if since is None and not options["event_ids"]:
            raise CommandError("Give --since (and optionally --until) or --event-id.")
        if since and until and until <= since:
            raise CommandError("--until must be later than --since.")
        endpoint = None
        if options["endpoint"] is not None:
            endpoint = WebhookEndpoint.objects.filter(pk=options["endpoint"]).first()
            if endpoint is None:
                raise CommandError(f"Endpoint {options['endpoint']} does not exist.")
            if endpoint.status == WebhookEndpoint.Status.DISABLED:
                raise CommandError(f"Endpoint {endpoint.pk} is disabled; enable it before replaying to it.")
        if options["event_ids"]:
            # As --endpoint: an id that matches nothing is a typo, not "nothing to replay".
            known = set(Event.objects.filter(event_id__in=options["event_ids"]).values_list("event_id", flat=True))
            missing = [event_id for event_id in dict.fromkeys(options["event_ids"]) if event_id not in known]
            if missing:
                raise CommandError(f"{'Event' if len(missing) == 1 else 'Events'} {', '.join(missing)} "
                                   f"{'does' if len(missing) == 1 else 'do'} not exist.")
        show = not options["no_progress"]

        events = delivery_services.candidate_events(
            since=since, until=until, event_type=options["event_type"], event_ids=options["event_ids"],
            endpoint=endpoint,
        )
        with progress(self, enabled=show, total=events.count(), desc="Scanning events", unit="event") as bar:
            plan = delivery_services.plan_replay(
                events=events, endpoint=endpoint, statuses=options["statuses"], only_failed=options["only_failed"],
                limit=options["limit"], on_progress=lambda n: tick(bar, n),
            )
        targets = plan.targets
        per_endpoint = Counter(t.endpoint_id for t in targets)
        summary = (f"{len(targets)} delivery(ies) of {len({t.event_pk for t in targets})} event(s) "
                   f"to {len(per_endpoint)} endpoint(s)")
        if options["dry_run"]:
            # The breakdown first, the summary last (every operator command ends with its summary).
            for endpoint_id, count in sorted(per_endpoint.items()):
                self.stdout.write(f"  endpoint {endpoint_id}: {count}")
            self.stdout.write(f"Would replay {summary}.")
        else:
            created: list[int] = []
            with progress(self, enabled=show, total=len(targets), desc="Replaying", unit="delivery") as bar:
                for start in range(0, len(targets), BATCH_SIZE):
                    chunk = targets[start:start + BATCH_SIZE]
                    done = audited_batch(lambda chunk=chunk: delivery_services.create_replays(targets=chunk),
                                         command="replay_events", action="replay", counted="replays",
                                         noun="replay(s)")
                    created.extend(done)
                    tick(bar, len(chunk))
            skipped = len(targets) - len(created)
            self.stdout.write(self.style.SUCCESS(
                f"Replayed {len(created)} of {summary}"
                + (f" ({skipped} skipped: endpoint deleted or disabled meanwhile)" if skipped else "") + "."
            ))
        if plan.limit_reached:
            # On stderr, so the summary stays the last line of stdout.
            self.stderr.write(self.style.WARNING(f"Stopped at --limit {options['limit']}; more events match."))
