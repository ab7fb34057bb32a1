"""Settings for Vocelio Webhooks, read from the environment (12-factor) through django-environ.

Every knob has a safe development default: SQLite in ``var/`` and an embedded Celery broker
(kombu's filesystem transport) so ``make run`` needs no server. ``DATABASE_URL`` switches to
PostgreSQL and ``CELERY_BROKER_URL`` (or ``REDIS_URL``) to Redis. Our own knobs are ``WEBHOOK_*``
with the unit in the name; each one is listed in ``.env.example`` and the README.
"""
import math
import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime state (SQLite file, embedded broker folders); tests point it elsewhere.
VAR_DIR = Path(os.environ.get("VOCELIO_VAR_DIR") or BASE_DIR / "var")


class _Env(environ.Env):
    """django-environ's reader, with two differences, so a bad value stops start-up with a clear
    error and never shows up in one:

    * a value its type cannot read (``WEBHOOK_BATCH_SIZE=ten``, ``DATABASE_URL`` with a port that
      is not a number) raises ``ImproperlyConfigured`` naming the variable and the type expected,
      instead of a bare ``ValueError`` deep in the settings module. Neither the value nor the
      original error (which quotes it) is shown: the value may be a secret. Numbers are read as
      Python reads them (``1.5``, ``1e3``), finite only: django-environ dropped every other
      character first, so ``2s``, or ``bogus2``, was 2.0;
    * a value starting with ``$`` is taken as it is. django-environ reads ``$NAME`` as a reference
      to the variable ``NAME``: a generated ``SECRET_KEY`` that happens to start with ``$`` (about
      1 in 50 of Django's) stopped start-up with an error that printed the rest of the key, and a
      ``$`` typo silently fell back to the default. Nothing here uses references."""

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        raw = self.ENVIRON.get(f"{self.prefix}{var}")
        try:
            if raw is not None and cast is float:
                value = float(raw)  # django-environ drops every non-digit first: "bogus2" was 2.0
                if not math.isfinite(value):  # "inf" or "nan" would unbound a time budget
                    raise ValueError("not a finite number")
                return value
            if isinstance(raw, str) and raw.startswith("$"):
                return raw if cast is None else self.parse_value(raw, cast)
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError):
            expected = getattr(cast, "__name__", None) or type(cast).__name__
            raise ImproperlyConfigured(
                f"{var} must be a valid {expected}; its value could not be read as one.") from None

    def db_url(self, var=environ.Env.DEFAULT_DATABASE_ENV, default=environ.Env.NOTSET, engine=None):
        try:
            return super().db_url(var, default=default, engine=engine)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(f"{var} must be a valid database URL (scheme://user:password@host:port/name); "
                                       "it could not be read as one.") from None

    db = db_url  # the alias django-environ defines, pointed at this override


env = _Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
else:
    # No default on purpose: a production deployment must bring its own key.
    SECRET_KEY = env.str("SECRET_KEY")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=["http://127.0.0.1:8019", "http://localhost:8019"])

# --- Security (README "Security") -------------------------------------------------------------
# Headers that are safe over plain http are always on. What only makes sense behind TLS (secure
# cookies, HTTPS redirect, HSTS) follows DJANGO_HTTPS, off by default because `make run` serves
# http://127.0.0.1:8019; production behind TLS sets DJANGO_HTTPS=true, and then
# `manage.py check --deploy` passes without warnings.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE_SECONDS", default=8 * 3600)
# Admin messages live in the session (the database), not in a cookie: the "Rotate the secret"
# action shows the new secret once in a message, and Django's default storage would carry it to
# the browser and back in a signed but readable cookie (found by the operators' pass).
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
DJANGO_HTTPS = env.bool("DJANGO_HTTPS", default=False)
SECURE_SSL_REDIRECT = DJANGO_HTTPS
SESSION_COOKIE_SECURE = DJANGO_HTTPS
CSRF_COOKIE_SECURE = DJANGO_HTTPS
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000) if DJANGO_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=True)
# Load balancers probe /health over plain http; it answers there instead of redirecting.
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^health/ready$"]
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients), let
# Django see the request as https; without it SECURE_SSL_REDIRECT would loop.
if env.bool("DJANGO_TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    # Django's admin with the delivery dashboard added (analytics/admin_site.py).
    "analytics.admin_site.VocelioAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "vocelio_webhooks",
    "events",
    "endpoints",
    "templates_app",
    "deliveries",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "vocelio_webhooks.urls"
APPEND_SLASH = False  # API paths are the seed's, without trailing slashes
# Largest request body the API accepts (bytes); bigger ones get 413 PAYLOAD_TOO_LARGE.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("WEBHOOK_MAX_REQUEST_BODY_BYTES", default=2621440)
WSGI_APPLICATION = "vocelio_webhooks.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Celery's Django fixup closes the connection around every task unless it may be reused; a new
# PostgreSQL connection costs more than a whole delivery, so keep them (DESIGN.md, "Scale").
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE_SECONDS", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file: wait for locks instead of failing at once,
    # and let readers run beside the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(VAR_DIR / "test_db.sqlite3")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns at start-up when it is missing (before collectstatic)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Logs: one root handler, JSON lines unless DEBUG (``plain`` for people at a terminal). Its filter
# masks emails, phone numbers, credentials and the personal-data fields below in every record
# (vocelio_webhooks/logs.py); the Celery worker and beat use this same configuration.
WEBHOOK_LOG_FORMAT = env.str("WEBHOOK_LOG_FORMAT", default="plain" if DEBUG else "json")
if WEBHOOK_LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"WEBHOOK_LOG_FORMAT must be 'json' or 'plain', not {WEBHOOK_LOG_FORMAT!r}.")
WEBHOOK_LOG_MASK_FIELDS = env.list(
    "WEBHOOK_LOG_MASK_FIELDS",
    default=["email", "phone", "phone_number", "mobile", "name", "first_name", "last_name", "full_name"],
)
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_personal_data": {"()": "vocelio_webhooks.logs.MaskPersonalDataFilter",
                                       "fields": WEBHOOK_LOG_MASK_FIELDS}},
    "formatters": {
        "plain": {"()": "vocelio_webhooks.logs.PlainFormatter",
                  "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "vocelio_webhooks.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": WEBHOOK_LOG_FORMAT,
                             "filters": ["mask_personal_data"]}},
    # Django's defaults give "django" and "django.server" handlers of their own that would print
    # unmasked; send them through the root handler instead.
    "loggers": {
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["vocelio_webhooks.api.ApiKeyAuthentication"],
    # Scopes per key and view (vocelio_webhooks/permissions.py); environment limits narrow every
    # queryset before the query-string filters run.
    "DEFAULT_PERMISSION_CLASSES": ["vocelio_webhooks.permissions.HasScope"],
    "DEFAULT_FILTER_BACKENDS": [
        "vocelio_webhooks.permissions.KeyEnvironmentFilter",
        # DjangoFilterBackend with strict boolean filters for filterset_fields views too (400, not ignored).
        "vocelio_webhooks.filtersets.FilterBackend",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["vocelio_webhooks.throttling.ApiKeyRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "vocelio_webhooks.api.Pagination",
    "DEFAULT_PARSER_CLASSES": ["vocelio_webhooks.parsers.StrictJSONParser"],
    # JSON whatever the Accept header says (no browsable HTML API; an unmatched Accept gets JSON, not 406).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "vocelio_webhooks.negotiation.FallbackToFirstRenderer",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "vocelio_webhooks.api.exception_handler",
    # drf-spectacular's AutoSchema, plus each operation's error answers (the seed's error envelope).
    "DEFAULT_SCHEMA_CLASS": "vocelio_webhooks.schema.ErrorResponsesAutoSchema",
    "UNAUTHENTICATED_USER": None,
}
# Requests per API key per minute (0 = unlimited): publishing (scope events:publish) has its own,
# higher budget; everything else shares WEBHOOK_API_RATE_PER_MINUTE. Over budget: 429 + Retry-After.
WEBHOOK_API_RATE_PER_MINUTE = env.int("WEBHOOK_API_RATE_PER_MINUTE", default=600)
WEBHOOK_PUBLISH_RATE_PER_MINUTE = env.int("WEBHOOK_PUBLISH_RATE_PER_MINUTE", default=6000)

# The throttle counters live in the cache, shared by every web process: Redis when REDIS_URL is
# set, else the database table `vocelio_cache` (created by migration vocelio_webhooks 0004).
if env.str("REDIS_URL", default=""):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": env.str("REDIS_URL"), "KEY_PREFIX": "vocelio"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "vocelio_cache",
                          "OPTIONS": {"MAX_ENTRIES": 100000}}}

SPECTACULAR_SETTINGS = {
    "TITLE": "Vocelio Webhooks API",
    "DESCRIPTION": "Publish call-center events and deliver them as signed, retried webhooks.",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "APPEND_COMPONENTS": {
        "securitySchemes": {"ApiKey": {"type": "http", "scheme": "bearer"}},
    },
    "SECURITY": [{"ApiKey": []}],
    # Two models have a `status` with different choices; name their enums (check --deploy warns otherwise).
    "ENUM_NAME_OVERRIDES": {
        "EndpointStatusEnum": "endpoints.models.WebhookEndpoint.Status",
        "DeliveryStatusEnum": "deliveries.models.Delivery.Status",
    },
}

# --- Celery ---------------------------------------------------------------------------------
_redis_url = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=_redis_url or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Without a host kombu logs "No hostname was supplied" at every publish (any command or request
    # that enqueues); the filesystem transport ignores the host, so the bare URL names localhost.
    if CELERY_BROKER_URL.rstrip("/") == "filesystem:":
        CELERY_BROKER_URL = "filesystem://localhost/"
    _broker_dir = VAR_DIR / env.str("WEBHOOK_EMBEDDED_BROKER_DIRNAME", default="broker")
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.2,  # seconds; the default 1 s adds up to a second to every delivery
    }
else:
    # Long ETAs are never given to the broker (the sweep handles them), so the default
    # one-hour visibility timeout cannot redeliver a pending retry (STYLE.md rule 11).
    # queue_order_strategy "priority": a worker drains the queues in the order it lists them
    # (the Procfile's priority, maintenance, deliveries, retries), so high-priority deliveries go
    # first, the sweep and the other periodic tasks are never stuck behind a delivery backlog, and
    # first attempts go before retries.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "queue_order_strategy": "priority"}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker outage must not hang the publish API: fail the enqueue fast, the sweep re-enqueues.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_TASK_DEFAULT_QUEUE = "deliveries"
CELERY_TASK_ROUTES = {
    "deliveries.tasks.deliver": {"queue": "deliveries"},
    "deliveries.tasks.deliver_due": {"queue": "deliveries"},
    "deliveries.tasks.*": {"queue": "maintenance"},
}
# Workers consume, in this order: priority, maintenance (the sweep, roll-ups, alert checks: short
# periodic tasks; the probe of disabled endpoints waits for their answers, one run at a time),
# deliveries (first attempts), retries (the Procfile's `--queues`). With
# maintenance last, a backlog of deliveries stopped every sweep for as long as it lasted (found
# by the operators' pass: no sweep for 22 minutes behind 89,000 wake-ups).
# django-celery-beat's DatabaseScheduler that also records beat's heartbeat at each tick
# (vocelio_webhooks/heartbeats.py; read by GET /health/ready).
CELERY_BEAT_SCHEDULER = "vocelio_webhooks.heartbeats:HeartbeatScheduler"
CELERY_TIMEZONE = "UTC"

# --- Webhook delivery knobs (WEBHOOK_*) -------------------------------------------------------
WEBHOOK_DEFAULT_ENVIRONMENT = env.str("WEBHOOK_DEFAULT_ENVIRONMENT", default="production")
WEBHOOK_TIMEOUT_SECONDS = env.int("WEBHOOK_TIMEOUT_SECONDS", default=15)
WEBHOOK_MAX_TIMEOUT_SECONDS = env.int("WEBHOOK_MAX_TIMEOUT_SECONDS", default=60)
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=5.0)
# Test sends (POST /endpoints/test, /endpoints/{id}/test) in flight at once per web process; more get
# 429 TEST_SEND_BUSY. Default: half of gunicorn's threads (GUNICORN_THREADS, gunicorn.conf.py), at least 1,
# so waiting on slow receivers can never take every thread (/health and the API keep answering).
WEBHOOK_MAX_CONCURRENT_TEST_SENDS = env.int("WEBHOOK_MAX_CONCURRENT_TEST_SENDS",
                                            default=max(1, env.int("GUNICORN_THREADS", default=4) // 2))
WEBHOOK_RESPONSE_BODY_LIMIT_BYTES = env.int("WEBHOOK_RESPONSE_BODY_LIMIT_BYTES", default=20480)
WEBHOOK_REQUEST_BODY_STORE_LIMIT_BYTES = env.int("WEBHOOK_REQUEST_BODY_STORE_LIMIT_BYTES", default=65536)
WEBHOOK_RETRY_JITTER_RATIO = env.float("WEBHOOK_RETRY_JITTER_RATIO", default=0.1)
WEBHOOK_RETRY_AFTER_MAX_SECONDS = env.int("WEBHOOK_RETRY_AFTER_MAX_SECONDS", default=3600)
WEBHOOK_COUNTDOWN_MAX_SECONDS = env.int("WEBHOOK_COUNTDOWN_MAX_SECONDS", default=300)
# Scaling (issue 7): the seed's "Scaling Configuration" keys with its defaults (README "Performance").
# max_concurrent_deliveries: sending threads per worker process; batch_size: due deliveries one
# deliver_due task claims; queue_check_interval: how often the sweep looks for due deliveries whose
# wake-up was lost; connection_pool_size: keep-alive connections kept per receiver host (per sending
# thread); max_queue_size: waiting deliveries above which publish answers 503 (0: no limit);
# dead_letter_threshold: default max_attempts of a new endpoint's retry policy; cleanup_interval:
# how often the retention purge runs.
WEBHOOK_MAX_CONCURRENT_DELIVERIES = env.int("WEBHOOK_MAX_CONCURRENT_DELIVERIES", default=100)
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=50)
WEBHOOK_MAX_PENDING_WAKEUPS = env.int("WEBHOOK_MAX_PENDING_WAKEUPS", default=8)
# A deliver_due task keeps claiming while its batches come back full, for up to this many seconds.
WEBHOOK_WAKEUP_BUDGET_SECONDS = env.float("WEBHOOK_WAKEUP_BUDGET_SECONDS", default=1.0)
for _name in ("WEBHOOK_BATCH_SIZE", "WEBHOOK_MAX_CONCURRENT_DELIVERIES"):
    if globals()[_name] < 1:  # a batch of 0 would divide by zero at publish, after the commit
        raise ImproperlyConfigured(f"{_name} must be at least 1, not {globals()[_name]}.")
WEBHOOK_QUEUE_CHECK_INTERVAL_SECONDS = env.float("WEBHOOK_QUEUE_CHECK_INTERVAL_SECONDS", default=5.0)
WEBHOOK_CONNECTION_POOL_SIZE = env.int("WEBHOOK_CONNECTION_POOL_SIZE", default=20)
WEBHOOK_MAX_QUEUE_SIZE = env.int("WEBHOOK_MAX_QUEUE_SIZE", default=10000)
WEBHOOK_DEAD_LETTER_THRESHOLD = env.int("WEBHOOK_DEAD_LETTER_THRESHOLD", default=5)
WEBHOOK_CLEANUP_INTERVAL_SECONDS = env.float("WEBHOOK_CLEANUP_INTERVAL_SECONDS", default=3600.0)
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS",
                                           default=WEBHOOK_QUEUE_CHECK_INTERVAL_SECONDS)
WEBHOOK_SWEEP_GRACE_SECONDS = env.float("WEBHOOK_SWEEP_GRACE_SECONDS", default=10.0)
WEBHOOK_SWEEP_BATCH_SIZE = env.int("WEBHOOK_SWEEP_BATCH_SIZE", default=1000)
WEBHOOK_CLAIM_MARGIN_SECONDS = env.int("WEBHOOK_CLAIM_MARGIN_SECONDS", default=30)
WEBHOOK_JWT_TTL_SECONDS = env.int("WEBHOOK_JWT_TTL_SECONDS", default=300)
WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS = env.int("WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS", default=86400)
# Endpoint health (endpoints.health): circuit breaker, auto-disable, owner alerts, probe.
WEBHOOK_CIRCUIT_FAILURE_THRESHOLD = env.int("WEBHOOK_CIRCUIT_FAILURE_THRESHOLD", default=5)
WEBHOOK_CIRCUIT_COOLDOWN_SECONDS = env.float("WEBHOOK_CIRCUIT_COOLDOWN_SECONDS", default=30.0)
WEBHOOK_CIRCUIT_MAX_COOLDOWN_SECONDS = env.float("WEBHOOK_CIRCUIT_MAX_COOLDOWN_SECONDS", default=600.0)
WEBHOOK_AUTO_DISABLE_AFTER_SECONDS = env.float("WEBHOOK_AUTO_DISABLE_AFTER_SECONDS", default=5 * 86400)
WEBHOOK_PROBE_INTERVAL_SECONDS = env.float("WEBHOOK_PROBE_INTERVAL_SECONDS", default=60.0)
WEBHOOK_OWNER_ALERT_INTERVAL_SECONDS = env.float("WEBHOOK_OWNER_ALERT_INTERVAL_SECONDS", default=3600.0)
WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = env.int("WEBHOOK_ENDPOINT_MAX_IN_FLIGHT", default=10)
# Up to this many active endpoints (0: never), a PostgreSQL claim made while some endpoint is at
# its in-flight cap takes each endpoint's oldest due deliveries (cost per endpoint) instead of
# scanning all due deliveries oldest first (cost per row waiting for an endpoint at its cap);
# README "Performance", step 2 of the batch engine.
WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS = env.int("WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS", default=1000)
WEBHOOK_BUSY_RETRY_SECONDS = env.float("WEBHOOK_BUSY_RETRY_SECONDS", default=1.0)
# Alert rules (analytics.alerts): how often beat evaluates them, who the operators are (mail of
# alert_operations_team, and of alert_endpoint_owner when an endpoint has no owner_email), and the
# environment of alerts about the whole service (per-endpoint alerts use the endpoint's).
WEBHOOK_ALERT_EVALUATION_INTERVAL_SECONDS = env.float("WEBHOOK_ALERT_EVALUATION_INTERVAL_SECONDS", default=30.0)
WEBHOOK_ALERT_OPERATOR_EMAILS = env.list("WEBHOOK_ALERT_OPERATOR_EMAILS", default=[])
WEBHOOK_ALERT_ENVIRONMENT = env.str("WEBHOOK_ALERT_ENVIRONMENT", default=WEBHOOK_DEFAULT_ENVIRONMENT)

# Monitoring (vocelio_webhooks/monitoring.py, heartbeats.py, metrics.py): how often worker and beat
# write their heartbeat, and how old one may be before GET /health/ready answers 503.
WEBHOOK_HEARTBEAT_INTERVAL_SECONDS = env.float("WEBHOOK_HEARTBEAT_INTERVAL_SECONDS", default=15.0)
WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS = env.float("WEBHOOK_HEARTBEAT_MAX_AGE_SECONDS", default=60.0)
# Longest the readiness broker check waits for a connection (seconds).
WEBHOOK_READY_BROKER_TIMEOUT_SECONDS = env.float("WEBHOOK_READY_BROKER_TIMEOUT_SECONDS", default=2.0)
# Bearer token Prometheus sends to GET /metrics (empty: only API keys with the read scope may scrape).
WEBHOOK_METRICS_TOKEN = env.str("WEBHOOK_METRICS_TOKEN", default="")
# prometheus-client multiprocess mode: every worker process writes its counters to files in this
# folder and /metrics (any web process) sums them. Exported to the environment because the library
# reads it there; web and worker must see the same folder (docker-compose: a shared volume).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

# Mail to endpoint owners (auth failures, automatic disable/re-enable). Console by default.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webhooks@vocelio.invalid")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
# Seconds an SMTP connection may wait (Django's default: none): mails are sent from maintenance
# tasks, and an SMTP server that never answers must not hold a worker process (the review).
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)
# SSRF guard (endpoints.network): CIDRs deliveries may reach even though they are not public, and
# whether production endpoints may use plain http to public addresses.
from ipaddress import ip_network as _ip_network  # noqa: E402 — a typo must stop start-up, not every delivery

WEBHOOK_ALLOWED_PRIVATE_CIDRS = env.list("WEBHOOK_ALLOWED_PRIVATE_CIDRS", default=[])
for _cidr in WEBHOOK_ALLOWED_PRIVATE_CIDRS:
    try:
        _ip_network(_cidr, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"WEBHOOK_ALLOWED_PRIVATE_CIDRS: {_exc}") from _exc
WEBHOOK_ALLOW_HTTP_IN_PRODUCTION = env.bool("WEBHOOK_ALLOW_HTTP_IN_PRODUCTION", default=False)
WEBHOOK_USER_AGENT = env.str("WEBHOOK_USER_AGENT", default="Vocelio-Webhooks/1.0")
# Sent as a header on every delivery: a value the sender refuses would fail every one of them.
if not all(" " <= ch <= "~" for ch in WEBHOOK_USER_AGENT) or WEBHOOK_USER_AGENT.strip() != WEBHOOK_USER_AGENT:
    raise ImproperlyConfigured("WEBHOOK_USER_AGENT must be visible ASCII (spaces only inside), as a header value.")
WEBHOOK_SOURCE_SERVICE = env.str("WEBHOOK_SOURCE_SERVICE", default="vocelio_webhooks")
WEBHOOK_PAYLOAD_VERSION = env.str("WEBHOOK_PAYLOAD_VERSION", default="1.0")
# Template rendering limits (templates_app.rendering): wall time per render and output size.
WEBHOOK_TEMPLATE_RENDER_TIMEOUT_MS = env.int("WEBHOOK_TEMPLATE_RENDER_TIMEOUT_MS", default=1000)
WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES = env.int("WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES", default=262144)
# Fernet keys (comma-separated, newest first) for secrets at rest; derived from SECRET_KEY when unset.
WEBHOOK_ENCRYPTION_KEYS = env.list("WEBHOOK_ENCRYPTION_KEYS", default=[])

CELERY_TASK_SOFT_TIME_LIMIT = WEBHOOK_MAX_TIMEOUT_SECONDS + 30
CELERY_TASK_TIME_LIMIT = WEBHOOK_MAX_TIMEOUT_SECONDS + 60
# Retention (deliveries/services/retention.py): ages in days; deliveries that are not final and
# their attempts are never purged. Successful attempts' bodies are blanked sooner than the rows go.
WEBHOOK_RETENTION_EVENTS_DAYS = env.int("WEBHOOK_RETENTION_EVENTS_DAYS", default=30)
WEBHOOK_RETENTION_DELIVERIES_DAYS = env.int("WEBHOOK_RETENTION_DELIVERIES_DAYS", default=30)
WEBHOOK_RETENTION_ATTEMPTS_DAYS = env.int("WEBHOOK_RETENTION_ATTEMPTS_DAYS", default=30)
WEBHOOK_RETENTION_SUCCESSFUL_BODIES_DAYS = env.int("WEBHOOK_RETENTION_SUCCESSFUL_BODIES_DAYS", default=7)
WEBHOOK_RETENTION_BATCH_SIZE = env.int("WEBHOOK_RETENTION_BATCH_SIZE", default=1000)
WEBHOOK_RETENTION_INTERVAL_SECONDS = env.float("WEBHOOK_RETENTION_INTERVAL_SECONDS",
                                               default=WEBHOOK_CLEANUP_INTERVAL_SECONDS)
# A purge run starts no new batch after this long (below Celery's soft time limit); the next run goes on.
WEBHOOK_RETENTION_MAX_SECONDS_PER_RUN = env.float("WEBHOOK_RETENTION_MAX_SECONDS_PER_RUN", default=60.0)
# Analytics roll-ups (analytics/services.py): how often they run, how far behind the clock they stay
# (rows commit a little after their created_at), the minutes re-aggregated each run for late rows,
# and how long roll-ups are kept (independent of the raw rows' retention above; 0 keeps forever).
WEBHOOK_ANALYTICS_ROLLUP_INTERVAL_SECONDS = env.float("WEBHOOK_ANALYTICS_ROLLUP_INTERVAL_SECONDS", default=60.0)
WEBHOOK_ANALYTICS_ROLLUP_LAG_SECONDS = env.int("WEBHOOK_ANALYTICS_ROLLUP_LAG_SECONDS", default=60)
WEBHOOK_ANALYTICS_ROLLUP_RECHECK_SECONDS = env.int("WEBHOOK_ANALYTICS_ROLLUP_RECHECK_SECONDS", default=600)
WEBHOOK_ANALYTICS_ROLLUP_MAX_SECONDS_PER_RUN = env.float("WEBHOOK_ANALYTICS_ROLLUP_MAX_SECONDS_PER_RUN", default=50.0)
WEBHOOK_ANALYTICS_MINUTE_ROLLUP_RETENTION_DAYS = env.int("WEBHOOK_ANALYTICS_MINUTE_ROLLUP_RETENTION_DAYS", default=35)
WEBHOOK_ANALYTICS_ROLLUP_RETENTION_DAYS = env.int("WEBHOOK_ANALYTICS_ROLLUP_RETENTION_DAYS", default=400)
# GET /analytics/trends answers 400 above this many buckets (10,000 minutes ≈ 6.9 days).
WEBHOOK_ANALYTICS_MAX_BUCKETS = env.int("WEBHOOK_ANALYTICS_MAX_BUCKETS", default=10000)

CELERY_BEAT_SCHEDULE = {
    "sweep_due_deliveries": {
        "task": "deliveries.tasks.sweep_due_deliveries",
        "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS,
    },
    "probe_disabled_endpoints": {
        "task": "deliveries.tasks.probe_disabled_endpoints",
        "schedule": WEBHOOK_PROBE_INTERVAL_SECONDS,
        "options": {"queue": "maintenance"},
    },
    "purge_expired_data": {
        "task": "deliveries.tasks.purge_expired_data",
        "schedule": WEBHOOK_RETENTION_INTERVAL_SECONDS,
        "options": {"queue": "maintenance"},
    },
    "evaluate_alert_rules": {
        "task": "analytics.tasks.evaluate_alert_rules",
        "schedule": WEBHOOK_ALERT_EVALUATION_INTERVAL_SECONDS,
        "options": {"queue": "maintenance"},
    },
    "rollup_delivery_stats": {
        "task": "analytics.tasks.rollup_delivery_stats",
        "schedule": WEBHOOK_ANALYTICS_ROLLUP_INTERVAL_SECONDS,
        "options": {"queue": "maintenance"},
    },
}
