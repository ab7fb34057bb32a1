"""What the operator commands share: examples under ``--help``, a tqdm progress bar on stderr,
ISO-8601 time options, and a dry run that validates through the real service but keeps nothing.

Conventions of every operator command (README, "Management commands"):

* ``--help`` ends with worked examples (``OperatorCommand.examples``);
* commands that change data take ``--dry-run`` (nothing written, what would happen printed);
* long work draws a progress bar on **stderr**, only when stderr is a terminal (tqdm's
  ``disable=None``) and never with ``--no-progress``, so pipes, cron mail and logs stay clean;
* the last line on stdout is a one-line summary (or, for commands that issue a secret, the
  secret itself, alone, so ``$(...)`` captures it);
* a bad command line (an option that is not a number, out of its range, not finite, an unknown
  choice, not an ISO-8601 time) is refused by argparse before anything runs: the usage line, then
  ``manage.py CMD: error: argument --opt: …``, exit status 2 (the Unix convention for usage
  errors). The argparse types below carry the bounds, so every command refuses the same way and
  no value can reach the database or ``datetime`` arithmetic that it would overflow;
* a well-formed value the data or another option refuses (an endpoint that does not exist, an
  unknown scope, ``--until`` before ``--since``) ends with one line ``CommandError: …`` and exit
  status 1.
"""
import argparse
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, time
from typing import TypeVar

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter
from django.db import transaction
from django.utils import dateparse
from tqdm import tqdm

from vocelio_webhooks.errors import ValidationFailed


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the examples epilog printed as written (line breaks kept)."""


class OperatorCommand(BaseCommand):
    """A ``BaseCommand`` whose ``--help`` ends with ``examples`` (a string, one example a line)."""

    examples: str = ""

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        if self.examples:
            kwargs.setdefault("epilog", "examples:\n" + "\n".join(
                f"  {line}" if line.strip() else "" for line in self.examples.strip("\n").splitlines()))
        return super().create_parser(prog_name, subcommand, **kwargs)


def add_dry_run_argument(parser, help_text: str = "Show what would be done; write nothing.") -> None:
    parser.add_argument("--dry-run", action="store_true", help=help_text)


def add_progress_argument(parser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="Hide the progress bar (it is drawn on stderr, and only when stderr is a terminal).")


def progress(command: BaseCommand, *, enabled: bool, total: int | None, desc: str, unit: str):
    """A tqdm bar on the command's stderr, drawn only when stderr is a terminal (and not with
    ``--no-progress``, ``enabled=False``); a context giving ``None`` otherwise. Advance it with
    ``tick``."""
    if not enabled:
        return nullcontext(None)
    stream = getattr(command.stderr, "_out", sys.stderr)
    return tqdm(total=total, desc=desc, unit=unit, file=stream, disable=None, leave=True)


def tick(bar, n: int) -> None:
    """Advance ``bar`` (from ``progress``) by ``n``; nothing when there is no bar."""
    if bar is not None:
        bar.update(n)


# --- bounded argparse types ----------------------------------------------------------------------
# Primary keys are BigAutoField (settings.DEFAULT_AUTO_FIELD): PostgreSQL bigint, SQLite's 64-bit
# INTEGER. A larger number raises OverflowError in the SQLite driver, so it is refused up front.
MAX_ID = 2**63 - 1
# Periods in days: 100 years is far beyond any retention or key lifetime, and keeps
# ``now ± timedelta(days=N)`` inside ``datetime``'s years 1–9999 (3,000,000 days would not be).
MAX_DAYS = 36_500
# Rows per transaction: SQLite refuses more than 32,766 parameters in one ``pk IN (...)``.
MAX_BATCH_SIZE = 10_000


def bounded_int(low: int, high: int, unit: str = "") -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high`` (inclusive). Anything else
    raises ``argparse.ArgumentTypeError`` (argparse prints ``argument --opt: <message>`` and
    exits 2). ``unit`` (e.g. ``" days"``) only words the message."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low:,} to {high:,}{unit}, not {value!r}.")
        return number

    parse.__name__ = "bounded_int"
    return parse


def bounded_float(low: float, high: float, unit: str = "", *, low_exclusive: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite decimal number from ``low`` (excluded with
    ``low_exclusive``) to ``high``. ``nan``, ``inf`` and anything out of range raise
    ``argparse.ArgumentTypeError``."""
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        in_range = math.isfinite(number) and (low < number if low_exclusive else low <= number) and number <= high
        if not in_range:
            lower = f"more than {_number(low)}" if low_exclusive else f"from {_number(low)}"
            raise argparse.ArgumentTypeError(
                f"must be a finite number {lower} to {_number(high)}{unit}, not {value!r}.")
        return number

    parse.__name__ = "bounded_float"
    return parse


def _number(value: float) -> str:
    """``168``, ``315,360,000``, ``0.5``: whole numbers without a decimal point or exponent."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


object_id = bounded_int(1, MAX_ID)
object_id.__doc__ = "An argparse ``type``: a database id, 1 to 2⁶³−1 (bigint)."
days = bounded_int(0, MAX_DAYS, " days")
days.__doc__ = "An argparse ``type``: a period of 0 to 36,500 days (0 usually turns the period off)."
positive_days = bounded_int(1, MAX_DAYS, " days")
batch_size = bounded_int(1, MAX_BATCH_SIZE, " rows")
row_limit = bounded_int(1, MAX_ID)


def _parse_when(value: str) -> datetime:
    """The shared parser of ``iso_datetime`` and ``parse_when``; raises ``ValueError`` with the
    reason."""
    try:
        parsed = dateparse.parse_datetime(value)
        if parsed is None and (day := dateparse.parse_date(value)) is not None:
            parsed = datetime.combine(day, time())
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"{value!r} is not an ISO-8601 date or date-time.")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        # An offset can push year 1 or 9999 out of range (0001-01-01T00:00+05:00 is year 0 in UTC).
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range once converted to UTC (years 1 to 9999).") from None


def iso_datetime(value: str) -> datetime:
    """An argparse ``type``: an ISO-8601 date-time, or a date (midnight); UTC when it has no
    offset; returned in UTC. Malformed or out-of-range values raise ``argparse.ArgumentTypeError``."""
    try:
        return _parse_when(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_when(value: str | None, option: str) -> datetime | None:
    """``iso_datetime`` for a value read in ``handle``: ``None`` stays ``None``; anything else
    that is not an ISO-8601 date or date-time raises ``CommandError`` naming ``option``."""
    if value is None:
        return None
    try:
        return _parse_when(value)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


class _RolledBack(Exception):
    pass


T = TypeVar("T")


@contextmanager
def rolled_back() -> Iterator[None]:
    """Run the block in a transaction that is always rolled back: a dry run calls the real
    service (so it validates and fails exactly as the real run would) and keeps nothing. Only
    for services whose work is a few rows; work that touches many rows (purge) counts instead.
    Exceptions raised in the block propagate."""
    try:
        with transaction.atomic():
            yield
            raise _RolledBack
    except _RolledBack:
        pass


def call_service(action: Callable[[], T], *, dry_run: bool) -> T:
    """Return ``action()`` (a service call); with ``dry_run`` inside ``rolled_back()`` so it
    validates like the real run and keeps nothing. ``ValidationFailed`` becomes ``CommandError``
    (exit 1, one line)."""
    try:
        if dry_run:
            with rolled_back():
                return action()
        return action()
    except ValidationFailed as exc:
        raise CommandError(exc.message) from exc


def note(command: BaseCommand, message: str) -> None:
    """Write an informational line to the command's stderr without Django's default error colour
    (stderr is red on a terminal), keeping stdout for the result."""
    command.stderr.write(message, style_func=_plain)


def _plain(text: str) -> str:
    return text


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 endpoint"``, ``"3 endpoints"``."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"
