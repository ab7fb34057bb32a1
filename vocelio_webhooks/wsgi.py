"""WSGI entry point (gunicorn ``vocelio_webhooks.wsgi``)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vocelio_webhooks.settings")
application = get_wsgi_application()
