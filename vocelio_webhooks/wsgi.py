"""WSGI entry point (gunicorn ``vocelio_webhooks.wsgi``)."""
import os

from django.core.wsgi import get_wsgi_application

from vocelio_webhooks.chunked import ChunkedBodyMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vocelio_webhooks.settings")
# Django ignores wsgi.input_terminated, so a chunked request body would reach the views empty.
application = ChunkedBodyMiddleware(get_wsgi_application())
