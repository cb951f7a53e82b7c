"""Django settings for dealsite.

Every setting comes from the environment, with defaults that run on a bare
machine: a SQLite file and an embedded Redis server, both under var/. The
README lists the variables.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from dealsite import env
from dealsite.embedded_redis import ensure_embedded_redis

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env.read_string("DEALSITE_VAR_DIR") or BASE_DIR / "var").resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


# Core

DEBUG = env.read_bool("DJANGO_DEBUG", False)


def _development_secret_key() -> str:
    # Kept under var/ so sessions survive restarts. Production sets DJANGO_SECRET_KEY.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = env.read_string("DJANGO_SECRET_KEY") or _development_secret_key()
ALLOWED_HOSTS = env.read_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.read_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "deals",
    "tokens",
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

ROOT_URLCONF = "dealsite.urls"
WSGI_APPLICATION = "dealsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.read_string("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Created up front because whitenoise warns at start when the folder is missing.
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# HTTPS. Off by default so that runserver works over plain HTTP on a laptop;
# production behind TLS sets DJANGO_SECURE_HTTPS=1, which `check --deploy` expects.

SECURE_HTTPS = env.read_bool("DJANGO_SECURE_HTTPS", False)
SECURE_SSL_REDIRECT = SECURE_HTTPS
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
SECURE_HSTS_SECONDS = env.read_int("DJANGO_HSTS_SECONDS", 31536000 if SECURE_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HTTPS
SECURE_HSTS_PRELOAD = SECURE_HTTPS
if env.read_bool("DJANGO_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"


# Database

DATABASES = {"default": env.read_database_url("DATABASE_URL", VAR_DIR / "dealsite.sqlite3")}


# Redis: one server for the cache, the token ledger, the ingestion locks and
# Celery. Each user of it has its own key prefix under REDIS_KEY_PREFIX, so
# several deployments or test runs can share one database number safely.

REDIS_URL = env.read_redis_url("REDIS_URL") or ensure_embedded_redis(VAR_DIR / "redis")
REDIS_KEY_PREFIX = env.read_string("DEALSITE_REDIS_PREFIX", "dealsite")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{REDIS_KEY_PREFIX}:cache",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 5,
        },
    }
}


# Celery: broker and result backend on the same Redis, under their own prefix.

CELERY_BROKER_URL = env.read_redis_url("CELERY_BROKER_URL") or REDIS_URL
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:",
    # A task not acknowledged within this many seconds goes back to the queue.
    # It must exceed the hard time limit, or a long task runs twice.
    "visibility_timeout": 3600,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:"}
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.read_int("DEALSITE_TASK_SOFT_TIME_LIMIT", 20 * 60, minimum=1)
CELERY_TASK_TIME_LIMIT = env.read_int("DEALSITE_TASK_TIME_LIMIT", 25 * 60, minimum=1)
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Beat keeps the last run time of each schedule entry here, not in the working directory.
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

INGEST_INTERVAL_SECONDS = env.read_int("DEALSITE_INGEST_INTERVAL_SECONDS", 300, minimum=10)
STALE_DEALS_INTERVAL_SECONDS = env.read_int("DEALSITE_STALE_DEALS_INTERVAL_SECONDS", 3600, minimum=60)
CELERY_BEAT_SCHEDULE = {
    "update-recent-deals": {
        "task": "deals.tasks.update_recent_deals_for_active_queries",
        "schedule": INGEST_INTERVAL_SECONDS,
    },
    "clean-stale-deals": {
        "task": "deals.tasks.clean_stale_deals",
        "schedule": STALE_DEALS_INTERVAL_SECONDS,
    },
}


# Deal ingestion

# Pages of 150 deals one run reads at most; 0 means no limit.
INGEST_MAX_PAGES = env.read_int("DEALSITE_INGEST_MAX_PAGES", 100, minimum=0)
# Deals one run stores at most; 0 means no limit.
INGEST_MAX_DEALS = env.read_int("DEALSITE_INGEST_MAX_DEALS", 0, minimum=0)
# TTL of the per-query ingestion lock. The run extends it after every page and
# while it waits for tokens, so it only bounds how long a crashed worker blocks.
INGEST_LOCK_TTL_SECONDS = env.read_int("DEALSITE_INGEST_LOCK_TTL_SECONDS", 300, minimum=5)
# Fetch product data for newly stored deals after the deal pages.
INGEST_ENRICH = env.read_bool("DEALSITE_INGEST_ENRICH", True)
# A deal whose Keepa data is older than this is refreshed with a product call.
DEAL_REFRESH_AFTER_HOURS = env.read_float("DEALSITE_DEAL_REFRESH_AFTER_HOURS", 12.0, minimum=0.0)
# Deals refreshed per run at most, oldest first; the rest wait for the next run.
DEAL_REFRESH_MAX_PER_RUN = env.read_int("DEALSITE_DEAL_REFRESH_MAX_PER_RUN", 300, minimum=0)
# clean_stale_deals deletes deals not seen for this long.
DEAL_STALE_AFTER_HOURS = env.read_float("DEALSITE_DEAL_STALE_AFTER_HOURS", 72.0, minimum=1.0)


# Keepa API

KEEPA_API_KEY = env.read_string("KEEPA_API_KEY")
KEEPA_API_URL = env.read_string("KEEPA_API_URL", "https://api.keepa.com").rstrip("/")
# Keepa's domain ids; 7 is unused.
KEEPA_DOMAINS = {
    1: "amazon.com", 2: "amazon.co.uk", 3: "amazon.de", 4: "amazon.fr", 5: "amazon.co.jp", 6: "amazon.ca",
    8: "amazon.it", 9: "amazon.es", 10: "amazon.in", 11: "amazon.com.mx", 12: "amazon.com.br",
}
KEEPA_DOMAIN = env.read_int("KEEPA_DOMAIN", 1, choices=KEEPA_DOMAINS)
KEEPA_CONNECT_TIMEOUT = env.read_float("KEEPA_CONNECT_TIMEOUT", 5.0, minimum=0.1)
KEEPA_READ_TIMEOUT = env.read_float("KEEPA_READ_TIMEOUT", 60.0, minimum=0.1)
KEEPA_MAX_RETRIES = env.read_int("KEEPA_MAX_RETRIES", 3, minimum=0)
KEEPA_RETRY_BACKOFF = env.read_float("KEEPA_RETRY_BACKOFF", 1.0, minimum=0.0)
KEEPA_RETRY_BACKOFF_MAX = env.read_float("KEEPA_RETRY_BACKOFF_MAX", 30.0, minimum=0.0)


# Token ledger

KEEPA_MIN_TOKEN_THRESHOLD = env.read_float("KEEPA_MIN_TOKEN_THRESHOLD", 1.0)
KEEPA_MAX_DEFICIT = env.read_float("KEEPA_MAX_DEFICIT", -180.0)
KEEPA_MAX_WAIT_SECONDS = env.read_float("KEEPA_MAX_WAIT_SECONDS", 60.0, minimum=0.0)
KEEPA_SYNC_INTERVAL_SECONDS = env.read_float("KEEPA_SYNC_INTERVAL_SECONDS", 60.0, minimum=0.0)
# Keepa adds refillRate tokens once a minute. The sandbox can refill faster.
KEEPA_REFILL_INTERVAL_MS = env.read_int("KEEPA_REFILL_INTERVAL_MS", 60_000, minimum=1)
TOKEN_AUDIT_RETENTION_DAYS = env.read_int("TOKEN_AUDIT_RETENTION_DAYS", 30, minimum=1)
# A reservation whose worker died expires after this long and stays spent.
KEEPA_RESERVATION_TTL_SECONDS = env.read_float("KEEPA_RESERVATION_TTL_SECONDS", 300.0, minimum=1.0)
# A waiter keeps its place in the queue for its computed wait plus this grace.
KEEPA_TICKET_GRACE_SECONDS = env.read_float("KEEPA_TICKET_GRACE_SECONDS", 5.0, minimum=0.1)


# Health: heartbeats of workers and beat, and the ages at which health_report
# and /healthz warn or fail. All values in seconds.

HEARTBEAT_INTERVAL_SECONDS = env.read_float("DEALSITE_HEARTBEAT_INTERVAL_SECONDS", 15.0, minimum=1.0)
HEALTH_DATA_AGE_WARN_SECONDS = env.read_int("DEALSITE_HEALTH_DATA_AGE_WARN_SECONDS", 3600, minimum=1)
HEALTH_DATA_AGE_FAIL_SECONDS = env.read_int("DEALSITE_HEALTH_DATA_AGE_FAIL_SECONDS", 24 * 3600, minimum=1)
HEALTH_REDIS_LATENCY_WARN_MS = env.read_float("DEALSITE_HEALTH_REDIS_LATENCY_WARN_MS", 50.0, minimum=0.0)


# Logging: one line per event. The filter masks the Keepa key in every record.

LOG_LEVEL = env.read_choice("DJANGO_LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_keepa_key": {"()": "dealsite.masking.KeepaKeyFilter"}},
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "filters": ["mask_keepa_key"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "urllib3": {"level": "WARNING"},
    },
}
