# Vocelio Webhooks image: one image for web (gunicorn), worker and beat (celery).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code changes do not invalidate this layer.
COPY requirements.txt .
RUN pip install -r requirements.txt

# Only the application is copied (no .env, .venv, var/ or .git from the build context).
COPY manage.py gunicorn.conf.py ./
COPY vocelio_webhooks ./vocelio_webhooks
COPY events ./events
COPY endpoints ./endpoints
COPY templates_app ./templates_app
COPY deliveries ./deliveries
COPY analytics ./analytics

# Run unprivileged; var/ (runtime state) and staticfiles/ (collectstatic) must stay writable.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app app \
    && mkdir -p var staticfiles \
    && chown app:app var staticfiles
USER app

EXPOSE 8019
CMD ["gunicorn", "vocelio_webhooks.wsgi", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8019"]
