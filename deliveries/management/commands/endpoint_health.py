"""``python manage.py endpoint_health [--status S ...] [--endpoint ID ...] [--json]``: a table of
endpoints and their state, read-only (``deliveries.queries.endpoint_health_rows``).

Columns: id, name, host of the URL, status, circuit breaker state, consecutive failures, the share
of attempts that succeeded in the last 24 hours (``-`` without attempts), newest success and
failure (UTC), and how many deliveries are pending, retrying and dead-lettered. ``--json`` prints
the same rows as a JSON array (times in ISO-8601, the rate as 0–1) for scripts; the summary then
goes to stderr. It lives in ``deliveries`` because it reads deliveries and attempts, and
dependencies point from ``deliveries`` to ``endpoints``, not back.
"""
import json
from collections import Counter
from datetime import datetime

from django.core.management.base import CommandError

from deliveries import queries as delivery_queries
from endpoints.models import EndpointHealth, WebhookEndpoint
from vocelio_webhooks.commands import OperatorCommand, note, object_id, plural
from vocelio_webhooks.validators import printable

NAME_WIDTH = 24
HOST_WIDTH = 32


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


def _clip(text: str, width: int) -> str:
    text = printable(text)  # a name stored before control characters were refused
    return text if len(text) <= width else text[: width - 1] + "…"


COLUMNS = (
    ("ID", lambda r: str(r.id)),
    ("NAME", lambda r: _clip(r.name, NAME_WIDTH)),
    ("HOST", lambda r: _clip(r.host, HOST_WIDTH)),
    ("STATUS", lambda r: r.status),
    ("CIRCUIT", lambda r: r.circuit_state),
    ("FAILS", lambda r: str(r.consecutive_failures)),
    ("OK_24H", lambda r: "-" if r.success_rate_24h is None else f"{r.success_rate_24h:.1%}"),
    ("LAST_SUCCESS", lambda r: _when(r.last_success_at)),
    ("LAST_FAILURE", lambda r: _when(r.last_failure_at)),
    ("PENDING", lambda r: str(r.pending)),
    ("RETRYING", lambda r: str(r.retrying)),
    ("DEAD", lambda r: str(r.dead_lettered)),
)
NUMERIC = {"ID", "FAILS", "OK_24H", "PENDING", "RETRYING", "DEAD"}


def render_table(rows) -> list[str]:
    """Fixed-width text lines: a header and one line per row; numbers right-aligned."""
    cells = [[render(row) for _, render in COLUMNS] for row in rows]
    widths = [max([len(title)] + [len(line[i]) for line in cells]) for i, (title, _) in enumerate(COLUMNS)]

    def line(values):
        return "  ".join(value.rjust(width) if title in NUMERIC else value.ljust(width)
                         for (title, _), value, width in zip(COLUMNS, values, widths, strict=True)).rstrip()

    return [line([title for title, _ in COLUMNS])] + [line(values) for values in cells]


class Command(OperatorCommand):
    help = ("Show every endpoint's state: status, circuit breaker, failure streak, 24-hour success rate, last "
            "success/failure and waiting or dead-lettered deliveries. Reads only.")
    examples = """
python manage.py endpoint_health
python manage.py endpoint_health --status disabled --status paused
python manage.py endpoint_health --endpoint 7 --json | jq '.[0].dead_lettered'
"""

    def add_arguments(self, parser):
        parser.add_argument("--status", action="append", dest="statuses", choices=WebhookEndpoint.Status.values,
                            help="Only endpoints with this status (repeatable).")
        parser.add_argument("--endpoint", action="append", dest="endpoint_ids", type=object_id, metavar="ID",
                            help="Only this endpoint (repeatable; it must exist).")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print a JSON array instead of the table.")

    def handle(self, *args, statuses, endpoint_ids, as_json: bool, **options):
        if endpoint_ids:
            # As replay_events and rotate_secret: an id that matches nothing is a typo, not an empty table.
            missing = sorted(set(endpoint_ids) - set(WebhookEndpoint.objects.filter(pk__in=endpoint_ids)
                                                     .values_list("pk", flat=True)))
            if missing:
                raise CommandError(f"Endpoint {', '.join(map(str, missing))} does not exist." if len(missing) == 1
                                   else f"Endpoints {', '.join(map(str, missing))} do not exist.")
        rows = delivery_queries.endpoint_health_rows(statuses=statuses, endpoint_ids=endpoint_ids)
        summary = self._summary(rows)
        if as_json:
            self.stdout.write(json.dumps([row.as_dict() for row in rows], indent=2))
            note(self, summary)
            return
        if rows:
            for text in render_table(rows):
                self.stdout.write(text)
        self.stdout.write(summary)

    @staticmethod
    def _summary(rows) -> str:
        by_status = Counter(row.status for row in rows)
        parts = [f"{by_status[s]} {s}" for s in WebhookEndpoint.Status.values if by_status[s]]
        open_circuits = sum(row.circuit_state != EndpointHealth.CircuitState.CLOSED for row in rows)
        dead = sum(row.dead_lettered for row in rows)
        text = plural(len(rows), "endpoint") + (f" ({', '.join(parts)})" if parts else "")
        return (f"{text}; {plural(open_circuits, 'circuit')} not closed; "
                f"{plural(dead, 'dead-lettered delivery', 'dead-lettered deliveries')}.")

