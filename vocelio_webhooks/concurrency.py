"""A per-process bound on slow, synchronous work done in a web request (test sends).

gunicorn serves each worker process's requests with a fixed number of threads (``threads`` in
``gunicorn.conf.py``). A request that waits on a receiver for up to its timeout (60 s at most)
holds one of them; enough of those at once and ``/health`` and every API call queue behind them.
"""
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ServiceError


class Busy(ServiceError):
    """429 with ``Retry-After``: every slot of a ``Slots`` is taken (``code`` given by the caller)."""

    code = "BUSY"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int, details: dict | None = None, code: str | None = None):
        super().__init__(message, details=details, code=code)
        self.response_headers = {"Retry-After": str(retry_after)}


class Slots:
    """At most ``limit`` holders at once in this process, taken without waiting: a caller finding
    them all taken gets ``Busy`` at once rather than queueing (a queued request would hold its
    thread as long as a running one). ``limit`` is read per call, so a setting change applies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}  # token -> time.monotonic() by which its holder is done
        self._next = 0

    @contextmanager
    def hold(self, *, limit: int, seconds: float, code: str, message: str) -> Iterator[None]:
        """Hold one slot for the ``with`` block, which ends within ``seconds`` (its holder's own
        deadline, e.g. the endpoint's timeout). Raises ``Busy`` (``code``, ``message``, details
        ``{"limit": limit}``) when ``limit`` slots are held; its ``Retry-After`` is the whole
        seconds until the first held slot's deadline (at least 1), when one is sure to be free."""
        with self._lock:
            now = time.monotonic()
            if len(self._deadlines) >= max(1, limit):
                wait = min(self._deadlines.values()) - now
                raise Busy(message, retry_after=max(1, math.ceil(wait)), details={"limit": max(1, limit)}, code=code)
            token = self._next
            self._next += 1
            self._deadlines[token] = now + seconds
        try:
            yield
        finally:
            with self._lock:
                del self._deadlines[token]
