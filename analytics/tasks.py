"""Celery tasks of the analytics app: thin adapters that call one service (STYLE.md rule 7)."""
from celery import shared_task  # noqa: F401
