"""``python manage.py rebuild_rollups``: forget the roll-up watermark and aggregate every stored
attempt and delivery again (``analytics.services.rebuild_rollups``).

For an operator's repair after rows were imported, restored from a backup or back-dated: the beat
task ``rollup_delivery_stats`` only moves forward from its watermark and re-counts the last 10
minutes, so older late rows are never counted without this. Idempotent: a rebuild over unchanged
rows gives the same roll-up rows. Roll-ups older than the oldest raw row (raw rows already purged)
are kept. It runs without a time budget and prints one summary line.
"""
from django.core.management.base import CommandError

from analytics import services as analytics_services
from vocelio_webhooks.commands import OperatorCommand, iso_datetime, plural
from vocelio_webhooks.errors import ValidationFailed


class Command(OperatorCommand):
    help = ("Re-aggregate the analytics roll-ups (minute, hour, day) from every stored attempt and delivery. "
            "Use after importing or back-dating rows; safe to run again.")
    examples = """
python manage.py rebuild_rollups
python manage.py rebuild_rollups --since 2026-11-01
"""

    def add_arguments(self, parser):
        parser.add_argument("--since", type=iso_datetime, metavar="DATETIME",
                            help="Re-count from this day (midnight UTC) instead of the retention horizon: days "
                                 "before it keep their roll-ups. Use it when raw rows were deleted early "
                                 "(erase_subject, purge --attempts-days, an old event purged with its replays).")

    def handle(self, *args, since=None, **options):
        try:
            result = analytics_services.rebuild_rollups(since=since)
        except ValidationFailed as exc:
            raise CommandError(f"--since: {exc.message}") from exc
        if result.watermark is None:
            self.stdout.write("Nothing to roll up: no attempts or deliveries are stored.")
            return
        self.stdout.write(
            f"Rolled up {plural(result.minutes, 'minute')} into {plural(result.rows_written, 'roll-up row')} "
            f"({plural(result.rows_pruned, 'row')} pruned) in {result.seconds:.1f} s; "
            f"watermark {result.watermark:%Y-%m-%d %H:%M} UTC.")
