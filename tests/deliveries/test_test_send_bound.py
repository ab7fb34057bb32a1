"""Test sends are synchronous (the receiver's answer comes back in the call), so each holds a web
thread for up to the endpoint's timeout. At most ``WEBHOOK_MAX_CONCURRENT_TEST_SENDS`` (default:
half of gunicorn's threads) run at once per process; the next one is answered 429
``TEST_SEND_BUSY`` at once, and the rest of the API keeps answering. Against a real gunicorn with
the project's configuration and a listener on 127.0.0.1 that accepts and never answers."""
import contextlib
import http.client
import json
import socket
import threading
import time

from tests.conftest import wait_until
from tests.vocelio_webhooks.test_api_walk_fixes import serve_gunicorn


@contextlib.contextmanager
def silent_listener():
    """A TCP listener on 127.0.0.1 that accepts connections and never answers; every connection
    is closed when the block ends. Yields ``(url, accepted)``, ``accepted`` the sockets so far."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_loop():
        deadline = time.monotonic() + 120  # bounded, whatever the test does
        while not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook", accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in accepted:
            connection.close()
        server.close()


def _call(port: int, method: str, path: str, api_key: str, body: dict | None = None, timeout: float = 30):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body),
                           headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_test_sends_beyond_the_bound_are_429_at_once_and_the_api_still_answers(transactional_db, api_key,
                                                                               event_types):
    # given gunicorn with 4 threads (so the default bound is 2) and two test sends held by a silent receiver
    held: list[tuple] = []
    with serve_gunicorn(GUNICORN_THREADS="4") as port, silent_listener() as (url, accepted):
        unsaved = {"url": url, "signature_method": "none", "timeout_seconds": 20}
        senders = [threading.Thread(target=lambda: held.append(_call(port, "POST", "/endpoints/test", api_key,
                                                                     unsaved)))
                   for _ in range(2)]
        for sender in senders:
            sender.start()
        wait_until(lambda: len(accepted) >= 2, timeout=15)

        # when a third test send and a normal request come
        started = time.monotonic()
        busy_status, busy_headers, busy_body = _call(port, "POST", "/endpoints/test", api_key, unsaved, timeout=5)
        busy_seconds = time.monotonic() - started
        health_status = _call(port, "GET", "/health", api_key, timeout=5)[0]
        listed_status = _call(port, "GET", "/endpoints", api_key, timeout=5)[0]

        # then the third is refused at once, in the seed's error format, and the API answers
        assert busy_status == 429, busy_body
        error = json.loads(busy_body)["error"]
        assert (error["code"], error["details"]) == ("TEST_SEND_BUSY", {"limit": 2})
        assert 1 <= int(busy_headers["Retry-After"]) <= 21
        assert busy_seconds < 3
        assert (health_status, listed_status) == (200, 200)
        assert len(accepted) == 2  # the refused one never reached the receiver
        for connection in accepted:
            connection.close()  # the receiver hangs up: the held sends end (connection_error)
        for sender in senders:
            sender.join(timeout=30)
    assert [status for status, _, _ in held] == [200, 200]
    assert all(json.loads(body)["success"] is False for _, _, body in held)
