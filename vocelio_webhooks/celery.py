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
