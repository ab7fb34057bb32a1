"""What the operator commands share: examples under ``--help``, a tqdm progress bar on stderr,
ISO-8601 time options, and a dry run that validates through the real service but keeps nothing.

Conventions of every operator command (README, "Management commands"):

* ``--help`` ends with worked examples (``OperatorCommand.examples``);
* commands that change data take ``--dry-run`` (nothing written, what would happen printed);
* long work draws a progress bar on **stderr**, only when stderr is a terminal (tqdm's
  ``disable=None``) and never with ``--no-progress``, so pipes, cron mail and logs stay clean;
* the last line on stdout is a one-line summary (or, for commands that issue a secret, the
  secret itself, alone, so ``$(...)`` captures it);
* bad input ends with a one-line ``CommandError`` and exit status 1.
"""
import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, time

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter
from django.db import transaction
from django.utils import dateparse
from tqdm import tqdm


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


def parse_when(value: str | None, option: str) -> datetime | None:
    """An ISO-8601 date-time or date (midnight) given to ``option``; UTC when no offset. ``None``
    stays ``None``. Raises ``CommandError`` naming the option for anything else."""
    if value is None:
        return None
    try:
        parsed = dateparse.parse_datetime(value)
        if parsed is None and (day := dateparse.parse_date(value)) is not None:
            parsed = datetime.combine(day, time())
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"{option}: {value!r} is not an ISO-8601 date or date-time.")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _RolledBack(Exception):
    pass


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


def note(command: BaseCommand, message: str) -> None:
    """Write an informational line to the command's stderr without Django's default error colour
    (stderr is red on a terminal), keeping stdout for the result."""
    command.stderr.write(message, style_func=_plain)


def _plain(text: str) -> str:
    return text


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 endpoint"``, ``"3 endpoints"``."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"
