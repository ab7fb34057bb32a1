"""``python manage.py purge [--dry-run] [--older-than-days N] [...]``: run the retention purge now,
the same service as the periodic ``deliveries.tasks.purge_expired_data`` beat task
(``deliveries.services.purge_expired_data``), with its four steps in its order:

1. blank the request/response bodies of successful attempts older than ``--successful-bodies-days``;
2. delete attempts older than ``--attempts-days``;
3. delete deliveries older than ``--deliveries-days`` (with their attempts);
4. delete events older than ``--events-days`` (with their deliveries and attempts).

Each period defaults to its ``WEBHOOK_RETENTION_*`` setting; ``--older-than-days N`` sets all four
at once (a per-table option still wins); 0 turns a step off. Deliveries that are not final yet,
their attempts and their events are never touched (the service's rule).

``--dry-run`` counts, per table, what would be blanked or deleted (``deliveries.queries.purge_preview``:
the service has no dry-run mode, and deleting inside a rolled-back transaction would lock and
rewrite the very rows a dry run must leave alone). The progress bar advances step by step (the
service reports counts per run, not per batch), with the preview's counts as its total.

Unlike the beat task, a manual run has no time budget unless ``--max-seconds`` gives one: an
operator watches it, and every batch is its own transaction, so Ctrl-C leaves consistent data.
"""
import time

from django.utils import timezone

from deliveries import queries as delivery_queries
from deliveries import services as delivery_services
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.commands import (
    OperatorCommand,
    add_dry_run_argument,
    add_progress_argument,
    batch_size,
    bounded_float,
    days,
    note,
    progress,
    tick,
)

# (PurgeResult/PurgePreview field, the service's period argument, what the summary calls it), in
# the service's order.
STEPS = (
    ("attempt_bodies_blanked", "successful_bodies_days", "successful attempt bodies blanked"),
    ("attempts_deleted", "attempts_days", "attempts deleted"),
    ("deliveries_deleted", "deliveries_days", "deliveries deleted"),
    ("events_deleted", "events_days", "events deleted"),
)
PERIOD_OPTIONS = tuple(period for _, period, _ in STEPS)
PERIOD_HELP = {"successful_bodies_days": "successful attempts' bodies", "attempts_days": "attempts",
               "deliveries_days": "deliveries", "events_days": "events"}
NO_TIME_LIMIT_SECONDS = 10 * 365 * 86400
# --max-seconds: finite, more than 0 and at most the "no limit" stand-in (nan and inf refused).
max_seconds = bounded_float(0, NO_TIME_LIMIT_SECONDS, " seconds", low_exclusive=True)


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[field]} {label}" for field, _, label in STEPS)


class Command(OperatorCommand):
    help = ("Purge data older than the retention periods (attempt bodies, attempts, deliveries, events), "
            "as the periodic retention task does. Non-final deliveries are never touched.")
    examples = """
python manage.py purge --dry-run
python manage.py purge --older-than-days 90 --dry-run
python manage.py purge --events-days 365 --attempts-days 30 --successful-bodies-days 7
python manage.py purge --max-seconds 300 --no-progress     # from cron: bounded, quiet
"""

    def add_arguments(self, parser):
        parser.add_argument("--older-than-days", type=days, metavar="N",
                            help="Use N days (0 to 36,500) for every period below that is not given itself.")
        for period in PERIOD_OPTIONS:
            parser.add_argument(f"--{period.replace('_', '-')}", type=days, metavar="N", dest=period,
                                help=f"Retention of {PERIOD_HELP[period]} in days, 0 to 36,500 "
                                     "(default: its WEBHOOK_RETENTION_* setting; 0 turns this step off).")
        parser.add_argument("--batch-size", type=batch_size, default=None, metavar="N",
                            help="Rows per transaction, 1 to 10,000 (default WEBHOOK_RETENTION_BATCH_SIZE).")
        parser.add_argument("--max-seconds", type=max_seconds, default=None, metavar="S",
                            help="Start no new batch after this many seconds (default: no limit).")
        add_dry_run_argument(parser, "Count per table what would be blanked or deleted; change nothing.")
        add_progress_argument(parser)

    def handle(self, *args, **options):
        # Every number was bounded by its argparse type (vocelio_webhooks.commands).
        periods = {period: options[period] if options[period] is not None else options["older_than_days"]
                   for period in PERIOD_OPTIONS}
        now = timezone.now()
        cutoffs = delivery_queries.retention_cutoffs(now=now, **periods)
        for period in PERIOD_OPTIONS:
            cutoff = cutoffs[period.removesuffix("_days")]
            when = f"older than {cutoff:%Y-%m-%d %H:%M} UTC" if cutoff else "off (period 0)"
            note(self, f"{PERIOD_HELP[period]}: {when}")

        show = not options["no_progress"]
        if options["dry_run"]:
            preview = delivery_queries.purge_preview(now=now, **periods)
            counts = {field: getattr(preview, field) for field, _, _ in STEPS}
            for field, _, label in STEPS:
                self.stdout.write(f"  {label}: {counts[field]}")
            self.stdout.write(f"Would purge: {_summary(counts)}. Nothing was changed.")
            return

        # Totals for the bar cost four COUNTs: only worth it when a bar is drawn.
        drawn = show and self._stderr_is_terminal()
        total = delivery_queries.purge_preview(now=now, **periods).total if drawn else None
        counts = {field: 0 for field, _, _ in STEPS}
        batches, complete = 0, True
        started = time.monotonic()
        budget = options["max_seconds"] or NO_TIME_LIMIT_SECONDS
        with progress(self, enabled=show, total=total, desc="Purging", unit="row") as bar:
            # One service call per step (the other periods set to 0, which turns them off), in
            # the service's order and with one ``now``, so the bar moves as each table is done.
            for period in PERIOD_OPTIONS:
                if cutoffs[period.removesuffix("_days")] is None:
                    continue
                remaining = budget - (time.monotonic() - started)
                if remaining <= 0:
                    complete = False
                    break
                only_this = {other: periods[other] if other == period else 0 for other in PERIOD_OPTIONS}
                result = delivery_services.purge_expired_data(
                    now=now, batch_size=options["batch_size"], max_seconds=remaining, **only_this)
                # Cascaded children (an event's deliveries) are counted in their own table.
                for field, _, _ in STEPS:
                    counts[field] += getattr(result, field)
                batches += result.batches
                tick(bar, sum(getattr(result, field) for field, _, _ in STEPS))
                if not result.complete:
                    complete = False
                    break
        elapsed = time.monotonic() - started
        audit_services.record_audit(
            actor=audit_services.command_actor("purge"), action="purge", object_type="deliveries.delivery",
            object_repr="retention purge",
            changes={name: {"old": None, "new": value} for name, value in counts.items()},
        )
        if not complete:
            self.stderr.write(self.style.WARNING("Stopped at --max-seconds with work left; run the command again."))
        self.stdout.write(self.style.SUCCESS(
            f"Purged: {_summary(counts)} in {batches} batch(es), {elapsed:.1f} s"
            + ("" if complete else " (incomplete)") + "."))

    def _stderr_is_terminal(self) -> bool:
        stream = getattr(self.stderr, "_out", None)
        return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())

