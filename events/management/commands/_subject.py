"""Shared by ``erase_subject`` and ``export_subject`` (the leading underscore keeps Django from
listing this module as a command): the subject options and a tqdm progress bar on stderr."""
import sys
from collections.abc import Iterable

from tqdm import tqdm

from vocelio_webhooks.commands import batch_size


def add_subject_arguments(parser) -> None:
    parser.add_argument("--email", help="The person's email address (matched case-insensitively).")
    parser.add_argument("--phone", help="The person's phone number, any spelling (matched by its digits).")
    parser.add_argument("--chunk-size", type=batch_size, default=1000, metavar="N",
                        help="Rows read per database round trip and written per transaction, 1 to 10,000 "
                             "(default 1000).")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def progress_bar(command, enabled: bool):
    """A ``privacy.Progress`` that draws one tqdm bar per table on the command's stderr, only
    when stderr is a terminal (or never with ``--no-progress``)."""
    stream = getattr(command.stderr, "_out", sys.stderr)

    def wrap(items: Iterable, total: int, label: str) -> Iterable:
        return tqdm(items, total=total, desc=f"Scanning {label}", unit="row", file=stream,
                    disable=None if enabled else True, leave=True)

    return wrap
