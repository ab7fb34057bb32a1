"""Outages of our own infrastructure (issue 4, "Crash safety"): the broker (Redis) and the
database (PostgreSQL) restarted under a running worker. Both need the real servers that CI starts
(`.ci/run`); with ``VOCELIO_REQUIRE_SERVICES=1`` a missing one fails instead of skipping."""
import os
import shlex
import shutil
import subprocess
import time
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

from deliveries import services as delivery_services
from deliveries.models import Delivery
from tests.conftest import wait_until


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("VOCELIO_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _sweep_until(delivery_ids, timeout=60.0):
    def done():
        delivery_services.sweep_due_deliveries()
        return Delivery.objects.filter(pk__in=delivery_ids, status="succeeded").count() == len(delivery_ids)

    wait_until(done, timeout=timeout, interval=1.0)


def test_redis_down_during_publish_then_every_accepted_event_is_delivered(api, receiver, worker):
    # given: Redis is the broker, on this machine
    broker = urlsplit(settings.CELERY_BROKER_URL)
    _require(broker.scheme == "redis" and broker.hostname in ("127.0.0.1", "localhost")
             and shutil.which("redis-server") and shutil.which("redis-cli"), "needs a local Redis broker")
    port = str(broker.port or 6379)
    api.post("/endpoints", {"name": "r", "url": receiver.url("/outage"), "events": ["*"]}, format="json")

    # when: Redis stops, events are published, Redis comes back
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "shutdown", "nosave"], check=False)
    try:
        responses = [api.post("/events/publish", {"event_type": "lead.created", "data": {"n": n}}, format="json")
                     for n in range(3)]
    finally:
        subprocess.run(["redis-server", "--bind", "127.0.0.1", "--port", port, "--daemonize", "yes",
                        "--save", "", "--appendonly", "no"], check=True)
        # check=False: redis-cli fails while the server is still starting; wait_until asks again.
        wait_until(lambda: subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True,
                                          check=False).stdout.strip() == b"PONG")

    # then: accepted into the database while the broker was down, delivered once it is back
    assert [r.status_code for r in responses] == [202, 202, 202]
    ids = [r.json()["deliveries"][0]["id"] for r in responses]
    time.sleep(settings.WEBHOOK_SWEEP_GRACE_SECONDS)
    _sweep_until(ids, timeout=90)
    assert sorted(r.json()["data"]["n"] for r in receiver.wait_for(3, path="/outage")) == [0, 1, 2]


def test_database_restart_is_survived_by_publisher_and_worker(api, receiver, worker):
    # given: CI tells us how to restart its PostgreSQL
    command = os.environ.get("VOCELIO_PG_RESTART_COMMAND", "")
    _require("postgresql" in settings.DATABASES["default"]["ENGINE"] and bool(command),
             "needs PostgreSQL and VOCELIO_PG_RESTART_COMMAND (set by .ci/run)")
    api.post("/endpoints", {"name": "d", "url": receiver.url("/db"), "events": ["*"]}, format="json")
    before = api.post("/events/publish", {"event_type": "lead.created", "data": {"n": 1}}, format="json")
    receiver.wait_for(1, path="/db")

    # when
    subprocess.run(shlex.split(command), check=True, timeout=120)
    connection.close()  # this test process's own connection died with the server

    # then: the next publish and its delivery work on fresh connections
    after = api.post("/events/publish", {"event_type": "lead.created", "data": {"n": 2}}, format="json")
    assert (before.status_code, after.status_code) == (202, 202)
    _sweep_until([after.json()["deliveries"][0]["id"]], timeout=90)
    assert sorted(r.json()["data"]["n"] for r in receiver.wait_for(2, path="/db")) == [1, 2]
