"""The probe of endpoints the service disabled (``probe_disabled_endpoints``, beat, every
``WEBHOOK_PROBE_INTERVAL_SECONDS``) sends to each of them in turn, each for up to its timeout (60 s
at most), so a run can outlast its interval (two hanging receivers with 60 s timeouts: 90 s, the
soft time limit, every 60 s). The runs beat enqueues meanwhile used to probe again, each holding a
worker process; since workers take the ``maintenance`` queue before ``deliveries`` (4a0ca1e),
those runs went before every delivery. A run that starts while another is under way now probes
nothing and ends at once."""
import socket
import threading
import time

from deliveries import services as delivery_services
from endpoints import services as endpoint_services


class HangingReceiver:
    """Accepts connections and never answers; counts them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_probe_run_started_while_another_is_under_way_probes_nothing(transactional_db, event_types):
    # given: an endpoint the service disabled, whose receiver accepts and never answers (2 s
    # timeout), and a probe run under way
    hanging = HangingReceiver()
    try:
        endpoint = endpoint_services.create_endpoint(data={
            "name": "Dead", "url": f"http://127.0.0.1:{hanging.port}/hook", "events": ["lead.*"],
            "timeout_seconds": 2})
        assert endpoint_services.disable_automatically(endpoint_id=endpoint.pk, reason="test")
        first = {}
        runner = threading.Thread(target=lambda: first.update(result=delivery_services.probe_disabled_endpoints()))
        runner.start()
        deadline = time.monotonic() + 5
        while not hanging.accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hanging.accepted, "the first probe run never connected"

        # when: the next run starts meanwhile
        started = time.monotonic()
        second = delivery_services.probe_disabled_endpoints()
        elapsed = time.monotonic() - started
        runner.join(10)

        # then: it probed nothing and ended at once; the receiver got one connection, the first run's
        assert (second.probed, second.reenabled) == (0, 0)
        assert elapsed < 1.0
        assert first["result"].probed == 1
        assert len(hanging.accepted) == 1
    finally:
        hanging.close()
