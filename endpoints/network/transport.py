"""Connection level of the SSRF guard: a ``requests`` adapter whose connections resolve, check
(``endpoints.network.policy``) and connect only to a checked address, can trust a per-request CA
bundle, and obey a per-attempt total deadline."""
from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import heapq
import itertools
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.poolmanager import PoolKey, _default_key_normalizer

from endpoints.network.policy import DestinationPolicy, vetted_addresses


class AttemptDeadline:
    """A total time budget for one request: connect, send, response headers and body.

    Socket timeouts only bound each single read, so a receiver dripping one byte a second would
    never trip them; instead a timer shuts the attempt's socket down when the budget is spent,
    which ends whatever read or write is blocked on it. ``expired`` then tells the sender to
    report a timeout.
    """

    def __init__(self, seconds: float):
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._connection: HTTPConnection | None = None
        self._finished = False

    def remaining(self) -> float:
        return max(self.expires_at - time.monotonic(), 0.0)

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            if self.expired:
                _shutdown(connection)

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            if self._connection is not None:
                _shutdown(self._connection)

    def start(self) -> None:
        _watchdog().watch(self)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            self._connection = None


# How late the watchdog may cut an attempt past its deadline, at most (seconds).
WATCHDOG_RESOLUTION_SECONDS = 0.05


class _Watchdog:
    """One thread per process that expires attempt deadlines in time order (a heap), instead of
    a ``threading.Timer`` thread per attempt: starting a thread per request cost more than the
    request itself at a few hundred deliveries per second. Finished deadlines are dropped lazily."""

    def __init__(self):
        self._heap: list[tuple[float, int, AttemptDeadline]] = []
        self._cond = threading.Condition()
        self._counter = itertools.count()
        self.pid = os.getpid()
        threading.Thread(target=self._run, name="vocelio-deadlines", daemon=True).start()

    def watch(self, deadline: AttemptDeadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.expires_at, next(self._counter), deadline))
            if self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    # Sleep at least WATCHDOG_RESOLUTION_SECONDS: at ~1,000 requests/s per process the
                    # (mostly finished) deadlines expire ~1 ms apart, and waking for each one made
                    # this thread take the GIL from the sending threads ~1,000 times a second.
                    self._cond.wait(max(wait, WATCHDOG_RESOLUTION_SECONDS))
                    continue
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
            for deadline in due:
                deadline._expire()  # outside the heap's lock: it may block on a socket shutdown


_watchdog_instance: _Watchdog | None = None
_watchdog_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    """The process's watchdog; a forked child (Celery prefork) starts its own."""
    global _watchdog_instance
    with _watchdog_lock:
        if _watchdog_instance is None or _watchdog_instance.pid != os.getpid():
            _watchdog_instance = _Watchdog()
        return _watchdog_instance


def _shutdown(connection: HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    # socket.socket's own shutdown, not SSLSocket's, which would also drop the TLS object under
    # the feet of the thread reading from it.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current_deadline: contextvars.ContextVar[AttemptDeadline | None] = contextvars.ContextVar(
    "vocelio_attempt_deadline", default=None
)


@contextlib.contextmanager
def attempt_deadline(seconds: float) -> Iterator[AttemptDeadline]:
    """Run one request under a total deadline of ``seconds``: connections made or used by
    ``GuardedHTTPAdapter`` inside the block are cut when it passes (``deadline.expired``)."""
    deadline = AttemptDeadline(seconds)
    token = _current_deadline.set(deadline)
    deadline.start()
    try:
        yield deadline
    finally:
        deadline.finish()
        _current_deadline.reset(token)


# --- connection level: requests adapter -------------------------------------------------------
@dataclass(frozen=True)
class OutboundOptions:
    """Per-request options for ``GuardedHTTPAdapter``, attached to a ``PreparedRequest`` as
    ``vocelio_options``: the destination policy (default: ``DestinationPolicy.from_settings()``)
    and a PEM CA bundle to trust instead of the default store (``""``: the default store)."""

    policy: DestinationPolicy | None = None
    ca_bundle: str = ""


class _GuardedConnectionMixin:
    """Resolve, check every address, connect only to a checked one; TLS and ``Host`` keep the
    host name because ``self.host`` is left untouched."""

    def __init__(self, *args, vocelio_policy: DestinationPolicy | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.vocelio_policy = vocelio_policy or DestinationPolicy.from_settings()

    def _new_conn(self) -> socket.socket:
        deadline = _current_deadline.get()
        candidates = vetted_addresses(self._dns_host, self.port, self.vocelio_policy)
        error: OSError | None = None
        for family, sockaddr in candidates:
            timeout = self.timeout if isinstance(self.timeout, (int, float)) else None
            if deadline is not None:
                timeout = min(timeout, deadline.remaining()) if timeout is not None else deadline.remaining()
            if timeout is not None and timeout <= 0:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out (attempt deadline).")
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})")
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")

    def connect(self) -> None:
        deadline = _current_deadline.get()
        if deadline is not None:
            deadline.attach(self)
        super().connect()

    def request(self, *args, **kwargs):
        deadline = _current_deadline.get()
        if deadline is not None:
            deadline.attach(self)
        return super().request(*args, **kwargs)


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


# A namedtuple, not a NamedTuple class (PYI024): its fields are urllib3's PoolKey fields, read at runtime.
GuardedPoolKey = collections.namedtuple("GuardedPoolKey", (*PoolKey._fields, "key_vocelio_policy"))  # noqa: PYI024


class GuardedHTTPAdapter(HTTPAdapter):
    """A ``requests`` adapter whose every connection goes through the SSRF guard (policy from the
    request's ``vocelio_options``, else the settings' default) and which can trust a per-request
    CA bundle instead of the default store. Proxies are not supported: mount it on a session with
    ``trust_env = False``."""

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs) -> None:
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool,
        }
        self.poolmanager.key_fn_by_scheme = {
            "http": functools.partial(_default_key_normalizer, GuardedPoolKey),
            "https": functools.partial(_default_key_normalizer, GuardedPoolKey),
        }

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        options = getattr(request, "vocelio_options", None) or OutboundOptions()
        pool_kwargs["vocelio_policy"] = options.policy or DestinationPolicy.from_settings()
        if verify is not False and options.ca_bundle:
            pool_kwargs["ca_cert_data"] = options.ca_bundle
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert) -> None:
        super().cert_verify(conn, url, verify, cert)
        if getattr(conn, "ca_cert_data", None):
            # Trust the endpoint's bundle only, not the default store on top of it.
            conn.ca_certs = None
            conn.ca_cert_dir = None
