"""The Celery application. Reads Django settings under the ``CELERY_`` namespace."""
import logging
import logging.config
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vocelio_webhooks.settings")

app = Celery("vocelio_webhooks")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Heartbeat for GET /health/ready; by name, so loading this module does not import Django models.
app.steps["worker"].add("vocelio_webhooks.heartbeats:WorkerHeartbeat")


@signals.setup_logging.connect
def use_django_logging(loglevel=None, **kwargs) -> None:
    """Worker and beat log through ``settings.LOGGING`` (JSON or plain, personal data masked)
    instead of Celery's own handlers, which would bypass the masking filter (task loggers too).

    The root level is the more verbose of ``LOG_LEVEL`` and the command line's ``--loglevel``.
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    root = logging.getLogger()
    if isinstance(loglevel, int) and loglevel and loglevel < root.level:
        root.setLevel(loglevel)


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def store_sends_before_exit(**kwargs) -> None:
    """At a warm shutdown, wait until this process's sends still in flight are stored
    (``deliveries.services.sending.drain_sends``), for at most the longest claim a send can hold
    (``WEBHOOK_MAX_TIMEOUT_SECONDS`` + ``WEBHOOK_CLAIM_MARGIN_SECONDS``, seconds): past that the
    sweep has already taken the delivery back. Prefork children get ``worker_process_shutdown``
    just before they exit; ``worker_shutdown`` covers the solo and thread pools, where the sends
    run in the main process (in a prefork main process nothing is outstanding: it returns at once).
    A SIGKILL, or a SIGTERM sent to the children themselves, skips this: Celery's children die
    at once on SIGTERM, so stop a worker by signalling its main process only."""
    from django.conf import settings

    from deliveries.services import sending

    left = sending.drain_sends(timeout_seconds=settings.WEBHOOK_MAX_TIMEOUT_SECONDS
                               + settings.WEBHOOK_CLAIM_MARGIN_SECONDS)
    if left:
        logging.getLogger(__name__).warning(
            "Exiting with %s sends not stored; the sweep sends them again when their claims expire", left)
