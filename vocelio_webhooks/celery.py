"""The Celery application. Reads Django settings under the ``CELERY_`` namespace."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vocelio_webhooks.settings")

app = Celery("vocelio_webhooks")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
