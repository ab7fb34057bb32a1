"""A worker's warm shutdown (SIGTERM to its main process, what systemd, Docker and Kubernetes
send) stores the sends it still has in flight before it exits, instead of leaving them to the
sweep, which would send them again once their claims expire (a duplicate at the receiver).

A real Celery worker, a real receiver that answers slowly, and the database after the exit."""
import os
import signal
import time

import pytest

from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services import sending
from tests.conftest import own_worker_process
from tests.deliveries.test_delivery_flow import create_endpoint, publish


@pytest.fixture
def own_worker(celery_worker_process, transactional_db):
    """A worker of this test's own (it is sent SIGTERM), in place of the session's."""
    with own_worker_process(celery_worker_process, log_name="test-worker-shutdown.log") as worker:
        yield worker


def test_warm_shutdown_stores_a_slow_send_before_the_worker_exits(api, receiver, own_worker):
    # given: a delivery whose receiver answers after 12 s (longer than the worker's own warm
    # shutdown takes), in flight in the worker, and by now handed to the recorder thread (the
    # batch stopped waiting for it after STRAGGLER_WAIT_SECONDS)
    receiver.hang_seconds["/slow"] = 12
    create_endpoint(api, receiver, path="/slow")
    publish(api)
    receiver.wait_for(1, path="/slow", timeout=30)
    time.sleep(sending.STRAGGLER_WAIT_SECONDS + 0.5)

    # when: the worker's main process is told to stop (warm shutdown), and exits
    os.kill(own_worker.proc.pid, signal.SIGTERM)
    own_worker.proc.wait(timeout=60)

    # then: the slow send's answer was stored before the exit; nothing is left in flight
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert list(DeliveryAttempt.objects.values_list("response_status_code", flat=True)) == [200]
    assert len(receiver.for_path("/slow")) == 1
    assert "sends to be stored before exiting" in own_worker.log_path.read_text()
