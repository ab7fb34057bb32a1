"""Vocelio Webhooks project package: settings, URLs, the Celery app, API auth and error format."""
from .celery import app as celery_app

__all__ = ("celery_app",)
