"""Settings for Vocelio Webhooks, read from the environment (12-factor) through django-environ.

Every knob has a safe development default: SQLite in ``var/`` and an embedded Celery broker
(kombu's filesystem transport) so ``make run`` needs no server. ``DATABASE_URL`` switches to
PostgreSQL and ``CELERY_BROKER_URL`` (or ``REDIS_URL``) to Redis. Our own knobs are ``WEBHOOK_*``
with the unit in the name; each one is listed in ``.env.example`` and the README.
"""
import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime state (SQLite file, embedded broker folders); tests point it elsewhere.
VAR_DIR = Path(os.environ.get("VOCELIO_VAR_DIR") or BASE_DIR / "var")

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
else:
    # No default on purpose: a production deployment must bring its own key.
    SECRET_KEY = env.str("SECRET_KEY")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=["http://127.0.0.1:8019", "http://localhost:8019"])

INSTALLED_APPS = [
    "django.contrib.admin",
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["vocelio_webhooks.api.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "vocelio_webhooks.api.Pagination",
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "vocelio_webhooks.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
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
}

# --- Celery ---------------------------------------------------------------------------------
_redis_url = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=_redis_url or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
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
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
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
    "deliveries.tasks.sweep_due_deliveries": {"queue": "maintenance"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Webhook delivery knobs (WEBHOOK_*) -------------------------------------------------------
WEBHOOK_DEFAULT_ENVIRONMENT = env.str("WEBHOOK_DEFAULT_ENVIRONMENT", default="production")
WEBHOOK_TIMEOUT_SECONDS = env.int("WEBHOOK_TIMEOUT_SECONDS", default=15)
WEBHOOK_MAX_TIMEOUT_SECONDS = env.int("WEBHOOK_MAX_TIMEOUT_SECONDS", default=60)
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=5.0)
WEBHOOK_RESPONSE_BODY_LIMIT_BYTES = env.int("WEBHOOK_RESPONSE_BODY_LIMIT_BYTES", default=20480)
WEBHOOK_REQUEST_BODY_STORE_LIMIT_BYTES = env.int("WEBHOOK_REQUEST_BODY_STORE_LIMIT_BYTES", default=65536)
WEBHOOK_RETRY_JITTER_RATIO = env.float("WEBHOOK_RETRY_JITTER_RATIO", default=0.1)
WEBHOOK_RETRY_AFTER_MAX_SECONDS = env.int("WEBHOOK_RETRY_AFTER_MAX_SECONDS", default=3600)
WEBHOOK_COUNTDOWN_MAX_SECONDS = env.int("WEBHOOK_COUNTDOWN_MAX_SECONDS", default=300)
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=5.0)
WEBHOOK_SWEEP_GRACE_SECONDS = env.float("WEBHOOK_SWEEP_GRACE_SECONDS", default=10.0)
WEBHOOK_SWEEP_BATCH_SIZE = env.int("WEBHOOK_SWEEP_BATCH_SIZE", default=1000)
WEBHOOK_CLAIM_MARGIN_SECONDS = env.int("WEBHOOK_CLAIM_MARGIN_SECONDS", default=30)
WEBHOOK_JWT_TTL_SECONDS = env.int("WEBHOOK_JWT_TTL_SECONDS", default=300)
WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS = env.int("WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS", default=86400)
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)
WEBHOOK_USER_AGENT = env.str("WEBHOOK_USER_AGENT", default="Vocelio-Webhooks/1.0")
WEBHOOK_SOURCE_SERVICE = env.str("WEBHOOK_SOURCE_SERVICE", default="vocelio_webhooks")
WEBHOOK_PAYLOAD_VERSION = env.str("WEBHOOK_PAYLOAD_VERSION", default="1.0")
# Template rendering limits (templates_app.rendering): wall time per render and output size.
WEBHOOK_TEMPLATE_RENDER_TIMEOUT_MS = env.int("WEBHOOK_TEMPLATE_RENDER_TIMEOUT_MS", default=1000)
WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES = env.int("WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES", default=262144)
# Fernet keys (comma-separated, newest first) for secrets at rest; derived from SECRET_KEY when unset.
WEBHOOK_ENCRYPTION_KEYS = env.list("WEBHOOK_ENCRYPTION_KEYS", default=[])

CELERY_TASK_SOFT_TIME_LIMIT = WEBHOOK_MAX_TIMEOUT_SECONDS + 30
CELERY_TASK_TIME_LIMIT = WEBHOOK_MAX_TIMEOUT_SECONDS + 60
CELERY_BEAT_SCHEDULE = {
    "sweep_due_deliveries": {
        "task": "deliveries.tasks.sweep_due_deliveries",
        "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS,
    },
}
