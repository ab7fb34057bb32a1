"""Heartbeats of the Celery processes, read by ``GET /health/ready`` (``vocelio_webhooks.monitoring``).

* **Worker:** ``WorkerHeartbeat``, a worker bootstep (added in ``vocelio_webhooks/celery.py``),
  writes ``worker`` / ``<node name>`` every ``WEBHOOK_HEARTBEAT_INTERVAL_SECONDS`` from the
  worker's own timer (the one Celery's event heartbeat uses), and deletes its row on a clean
  shutdown. It proves the worker process runs and reaches the database; independent of beat.
* **Beat:** ``HeartbeatScheduler`` (``CELERY_BEAT_SCHEDULER``) is django-celery-beat's
  ``DatabaseScheduler`` that writes ``beat`` / ``<host>:<pid>`` from its scheduling loop, at
  most once per interval. A hung or dead scheduling loop stops writing, so the check tests the
  loop, not only the process.

Why not a periodic ``heartbeat`` task run by the worker: that row would go stale when *either*
beat or the worker stops, and the readiness answer could not say which. Why not Celery's own
signals: ``heartbeat_sent`` needs worker events (off with ``--without-heartbeat``), and beat's
remote-control ping needs fanout exchanges, which the embedded filesystem broker lacks.

A heartbeat that cannot be written (database down) is logged and skipped: the next tick tries
again, and readiness reports the database anyway.
"""
import logging
import os
import socket
import time

from celery import bootsteps
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)


def _write(*, component: str, instance: str) -> bool:
    """Record one heartbeat; returns whether it was stored. Never raises."""
    from django.db import close_old_connections

    from vocelio_webhooks import monitoring

    try:
        # The worker's main process and beat hold one long-lived connection; drop it when the
        # server closed it (restart) instead of failing every tick from then on.
        close_old_connections()
        monitoring.record_heartbeat(component=component, instance=instance)
        return True
    except Exception as exc:  # noqa: BLE001 — a monitoring write must never stop the worker or beat
        logger.warning("Could not record the %s heartbeat (%s)", component, type(exc).__name__)
        return False


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Worker bootstep: a repeating timer entry that records this worker's heartbeat."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker) -> None:
        from django.conf import settings

        from vocelio_webhooks.models import Heartbeat

        instance = worker.hostname
        self.tref = worker.timer.call_repeatedly(
            settings.WEBHOOK_HEARTBEAT_INTERVAL_SECONDS,
            _write, kwargs={"component": Heartbeat.Component.WORKER, "instance": instance}, priority=10,
        )
        _write(component=Heartbeat.Component.WORKER, instance=instance)

    def stop(self, worker) -> None:
        from vocelio_webhooks import monitoring
        from vocelio_webhooks.models import Heartbeat

        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        try:
            monitoring.forget_heartbeat(component=Heartbeat.Component.WORKER, instance=worker.hostname)
        except Exception as exc:  # noqa: BLE001 — shutting down; the row then goes stale on its own
            logger.warning("Could not remove the worker heartbeat (%s)", type(exc).__name__)


class HeartbeatScheduler(DatabaseScheduler):
    """django-celery-beat's ``DatabaseScheduler`` that records beat's heartbeat from its loop.

    ``tick`` runs at least every ``max_interval`` (5 s for this scheduler); the heartbeat is
    written at most once per ``WEBHOOK_HEARTBEAT_INTERVAL_SECONDS`` so beat adds one small write
    per interval.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._heartbeat_instance = f"{socket.gethostname()}:{os.getpid()}"
        self._heartbeat_written_at: float | None = None

    def tick(self, *args, **kwargs):
        from django.conf import settings

        from vocelio_webhooks.models import Heartbeat

        now = time.monotonic()
        due = (self._heartbeat_written_at is None
               or now - self._heartbeat_written_at >= settings.WEBHOOK_HEARTBEAT_INTERVAL_SECONDS)
        if due and _write(component=Heartbeat.Component.BEAT, instance=self._heartbeat_instance):
            self._heartbeat_written_at = now
        delay = super().tick(*args, **kwargs)
        # Wake up in time for the next heartbeat even when nothing else is due.
        return min(delay, settings.WEBHOOK_HEARTBEAT_INTERVAL_SECONDS)
