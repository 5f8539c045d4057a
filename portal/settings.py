"""Fieldwatch settings: one module, configured from the environment.

Every variable is listed in README.md. Defaults run a local development copy; production sets
DEBUG=0 and real secrets, and start-up refuses to run with the development ones.
"""

import hashlib
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from portal import env

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / ".data"
VERSION = "0.1.0"

# pytest imports this module with pytest already loaded; tests get fast, self-contained services.
# Servers that tests start in their own process say so with FIELDWATCH_TESTING=1.
TESTING = env.boolean("FIELDWATCH_TESTING", "pytest" in sys.modules)

DEBUG = env.boolean("DEBUG", False)

DEVELOPMENT_SECRET_KEY = "fieldwatch-development-only-secret-key-do-not-use-in-production"  # noqa: S105 (refused in production)
SECRET_KEY = env.string("SECRET_KEY", DEVELOPMENT_SECRET_KEY)


def refuse_default_secrets() -> None:
    """Production (DEBUG off) must not start with a missing or development secret."""
    if not SECRET_KEY or SECRET_KEY == DEVELOPMENT_SECRET_KEY or SECRET_KEY.startswith("django-insecure"):
        raise ImproperlyConfigured(
            "SECRET_KEY is missing or is the development default; set SECRET_KEY (or SECRET_KEY_FILE) "
            "to a long random value when DEBUG is off."
        )
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("SECRET_KEY is shorter than 32 characters; set a long random SECRET_KEY.")


if not DEBUG and not TESTING:
    refuse_default_secrets()

# Tenants live at <slug>.<base domain>; the base domain itself is the public site and console.
BASE_DOMAIN = env.string("FIELDWATCH_BASE_DOMAIN", "localhost")
ALLOWED_HOSTS = env.listing("ALLOWED_HOSTS", [BASE_DOMAIN, f".{BASE_DOMAIN}", "127.0.0.1"])
PUBLIC_SIGNUP = env.boolean("FIELDWATCH_PUBLIC_SIGNUP", True)
INVITATION_DAYS = env.integer("FIELDWATCH_INVITATION_DAYS", 7)
AUDIT_RETENTION_DAYS = env.integer("FIELDWATCH_AUDIT_RETENTION_DAYS", 400)

# ---------------------------------------------------------------------------------------------
# Applications. Shared apps live in the public schema (tenants, users, sessions, allauth);
# tenant apps get a table set in every tenant schema.
SHARED_APPS = [
    "portal.tenancy",  # before django_tenants so our create_tenant command wins
    "django_tenants",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "portal.accounts",
    "portal.core",
    "portal.ops",
    "portal.audit",  # also in the public schema: the console's own audit log (operators' actions)
    "telemetry",  # also in the public schema: it keeps the dead letters no tenant claims
    "portal.devices",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_filters",
    "django_htmx",
    "template_partials",
    "huey.contrib.djhuey",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "telemetry",
    "portal.audit",
    "portal.facilities",
    "portal.api",
    "portal.alerts",
    "portal.outlets",
    "portal.locks",
]
# the bridge has no tables; it is an app for its management commands
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS] + ["bridge"]

TENANT_MODEL = "tenancy.Tenant"
TENANT_DOMAIN_MODEL = "tenancy.Domain"
PUBLIC_SCHEMA_NAME = "public"
PUBLIC_SCHEMA_URLCONF = "portal.urls_public"
ROOT_URLCONF = "portal.urls_tenant"
# New tenants clone this migrated, empty schema instead of running every migration (seconds,
# not minutes); `manage.py migrate_template` keeps it current and runs after every migrate.
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
TENANT_LIMIT_SET_CALLS = True  # SET search_path once per request and schema, not per cursor

# The header middlewares come before tenant routing, so that every response carries the
# security headers: the unknown-host 404 and error pages too (they are answered further in).
MIDDLEWARE = [
    "portal.core.lean.LeanPathMiddleware",  # first: device paths take the lean stack below instead
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.tenancy.middleware.TenantHostMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "portal.core.slashes.SlashMiddleware",  # CommonMiddleware; a POST without its slash gets a 308
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.tenancy.middleware.TenantAccessMiddleware",
]

# The lean stack (portal/core/lean.py) for endpoints that devices, brokers and webhooks call:
# tenant routing, the security headers every response carries, and the view. One list of path
# prefixes: add an endpoint's prefix here to serve it lean (its view must not need a session).
LEAN_PATH_PREFIXES = (
    "/api/handshake/",
    "/api/device/",
    "/api/iot/",
    "/api/devices/",
    "/api/locks/",  # the lock access check (device token)
    "/api/mqtt/",  # EMQX asking who may connect, publish, subscribe (public host)
)
# whole paths served lean: the broker's webhook (seed 000's REST API under /ingest/… takes people's sessions)
LEAN_PATHS = ("/ingest", "/ingest/")
# seed 003's device lists for people (session, CSRF) live under /api/devices/ too: not lean
LEAN_PATH_EXCEPTIONS = ("/api/devices/online/", "/api/devices/all/")
LEAN_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.core.lean.ContentSecurityPolicyMiddleware",  # CSPMiddleware's policy, built once
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.tenancy.middleware.TenantHostMiddleware",
    "portal.core.slashes.SlashMiddleware",  # CommonMiddleware: Content-Length (devices' HTTP clients want it), slashes
    "portal.tenancy.middleware.DeviceTenantMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,  # template_partials wraps the loaders with its own at start-up
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.tenancy.context_processors.tenancy",
                "portal.alerts.context_processors.open_alerts",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

WSGI_APPLICATION = "portal.wsgi.application"

# ---------------------------------------------------------------------------------------------
# Database: DATABASE_URL, or the embedded PostgreSQL under .data/ (started by `make run`/`make test`).


def embedded_database_url() -> str:
    from portal import embedded_db  # only when no DATABASE_URL is configured

    return embedded_db.url()


DATABASE_URL = env.string("DATABASE_URL") or embedded_database_url()
# Kept connections: none in development (runserver's thread per request would each keep one, and
# ~1,100 requests held 59 idle connections until the server ran out); 60 s in production, where
# gunicorn's workers × threads bound them (README: pool sizing).
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env.integer("DATABASE_CONN_MAX_AGE", 0 if DEBUG else 60)
    )
}
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# PostgreSQL's JIT pays off for long analytical scans; ours are interactive queries of tens of
# milliseconds, where compiling costs more than it saves (90 ms of a site's month of hours in
# bench/aggregates.py, a query of ~60 ms without it).
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
_db_options["options"] = f"{_db_options.get('options', '')} -c jit=off".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------------------------------------
# Cache: rate limits (sign-in, devices, keys) and the one-time tenant hand-off live here, so it
# must be shared by every process (gunicorn workers, the bridge): Redis when REDIS_URL is set,
# else a table in the database (createcachetable runs with migrate). Per-process memory only
# where one process serves: the test process itself (FIELDWATCH_CACHE=memory picks it anywhere).
# Keys carry the schema name so one tenant never reads another's entries.
REDIS_URL = env.string("REDIS_URL")
FIELDWATCH_MONITORING_TOKEN = env.string("FIELDWATCH_MONITORING_TOKEN")  # for /health/detailed/
CACHE_BACKENDS = {
    "redis": ("django.core.cache.backends.redis.RedisCache", REDIS_URL),
    "database": ("django.core.cache.backends.db.DatabaseCache", "fieldwatch_cache"),
    "memory": ("django.core.cache.backends.locmem.LocMemCache", "fieldwatch"),
}
CACHE = env.string("FIELDWATCH_CACHE", "redis" if REDIS_URL else "memory" if TESTING else "database")
if CACHE not in CACHE_BACKENDS or (CACHE == "redis" and not REDIS_URL):
    raise ImproperlyConfigured(f"FIELDWATCH_CACHE={CACHE!r}: use redis (with REDIS_URL), database or memory.")
CACHES = {
    "default": {
        "BACKEND": CACHE_BACKENDS[CACHE][0],
        "LOCATION": CACHE_BACKENDS[CACHE][1],
        "KEY_PREFIX": "fieldwatch",
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}

# ---------------------------------------------------------------------------------------------
# Background work: Redis in production, a SQLite file locally, immediate (in-process) in tests.
HUEY_IMMEDIATE = env.boolean("HUEY_IMMEDIATE", TESTING)
if REDIS_URL and not HUEY_IMMEDIATE:
    HUEY = {"huey_class": "huey.RedisHuey", "name": "fieldwatch", "url": REDIS_URL, "immediate": False}
else:
    DATA_DIR.mkdir(exist_ok=True)
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": "fieldwatch",
        "filename": str(DATA_DIR / "huey.sqlite3"),
        "immediate": HUEY_IMMEDIATE,
    }
HUEY["consumer"] = {"workers": env.integer("HUEY_WORKERS", 2), "worker_type": "thread"}

# Device HTTP API: requests per window per device / per API key ("count/seconds"), body limits,
# the broker's webhook secret, and where large bulk uploads wait for the worker.
FIELDWATCH_DEVICE_RATE = env.string("FIELDWATCH_DEVICE_RATE", "600/60")
FIELDWATCH_KEY_RATE = env.string("FIELDWATCH_KEY_RATE", "1200/60")
# API sign-in attempts per address and per username: enough for a client, too few to guess
FIELDWATCH_LOGIN_RATE = env.string("FIELDWATCH_LOGIN_RATE", "10/60")
# dead letters one device or API key may write per window (beyond: counted in one summary letter)
FIELDWATCH_DEAD_LETTER_RATE = env.string("FIELDWATCH_DEAD_LETTER_RATE", "1000/3600")
INGESTION_SECRET = env.string("INGESTION_SECRET")
FIELDWATCH_WEBHOOK_DEVICE_RATE = env.string("FIELDWATCH_WEBHOOK_DEVICE_RATE", "1000/3600")  # seed 000: 1,000/h
BULK_INLINE_BYTES = env.integer("FIELDWATCH_BULK_INLINE_BYTES", 1024 * 1024)
BULK_MAX_BYTES = env.integer("FIELDWATCH_BULK_MAX_BYTES", 100 * 1024 * 1024)
BULK_MAX_RATIO = env.integer("FIELDWATCH_BULK_MAX_RATIO", 100)
API_TOKEN_SECONDS = env.integer("FIELDWATCH_API_TOKEN_SECONDS", 900)
API_REFRESH_SECONDS = env.integer("FIELDWATCH_API_REFRESH_SECONDS", 7 * 86400)

# Alerts and notifications (portal/alerts): delivery retries, the webhook SSRF guard, data quality.
NOTIFY_MAX_ATTEMPTS = env.integer("FIELDWATCH_NOTIFY_MAX_ATTEMPTS", 5)
NOTIFY_BACKOFF_SECONDS = env.integer("FIELDWATCH_NOTIFY_BACKOFF_SECONDS", 30)
NOTIFY_STUCK_SECONDS = env.integer("FIELDWATCH_NOTIFY_STUCK_SECONDS", 120)
WEBHOOK_TIMEOUT_SECONDS = env.integer("FIELDWATCH_WEBHOOK_TIMEOUT_SECONDS", 10)
WEBHOOK_ALLOW_PRIVATE = env.boolean("FIELDWATCH_WEBHOOK_ALLOW_PRIVATE", False)
ALERT_DATA_QUALITY_CLEAR_SECONDS = env.integer("FIELDWATCH_ALERT_DATA_QUALITY_CLEAR_SECONDS", 900)

# Smart locks (portal/locks). PINs are HMAC-SHA256 digests under LOCK_PIN_KEY (by default derived
# from SECRET_KEY: set it explicitly before rotating SECRET_KEY, or every PIN stops matching).
LOCK_PIN_KEY = env.string("FIELDWATCH_LOCK_PIN_KEY") or hashlib.sha256(f"locks.pin:{SECRET_KEY}".encode()).hexdigest()
LOCK_COMMAND_TIMEOUT_SECONDS = env.integer("FIELDWATCH_LOCK_COMMAND_TIMEOUT_SECONDS", 30)
LOCK_OTA_TIMEOUT_SECONDS = env.integer("FIELDWATCH_LOCK_OTA_TIMEOUT_SECONDS", 1800)
LOCK_LOCKOUT_FAILURES = env.integer("FIELDWATCH_LOCK_LOCKOUT_FAILURES", 5)  # wrong codes on one lock …
LOCK_LOCKOUT_WINDOW_SECONDS = env.integer("FIELDWATCH_LOCK_LOCKOUT_WINDOW_SECONDS", 900)  # … within this window
LOCK_LOCKOUT_SECONDS = env.integer("FIELDWATCH_LOCK_LOCKOUT_SECONDS", 900)  # disable the keypad this long
LOCK_SUSPICIOUS_FAILURES = env.integer("FIELDWATCH_LOCK_SUSPICIOUS_FAILURES", 5)  # from one address, across locks
LOCK_IP_BLOCK_SECONDS = env.integer("FIELDWATCH_LOCK_IP_BLOCK_SECONDS", 3600)

MQTT_URL = env.string("MQTT_URL", "mqtt://127.0.0.1:1883")
MQTT_PROTOCOL = env.string("MQTT_PROTOCOL", "5")
MQTT_CA_FILE = env.string("MQTT_CA_FILE")
# Mosquitto's dynamic-security admin (mqtt://<admin>:<password>@host:port): Fieldwatch keeps the
# broker's clients and roles in line with devices and tenants (portal.devices.broker). Unset: not managed.
MQTT_ADMIN_URL = env.string("MQTT_ADMIN_URL")
# EMQX's HTTP authentication/authorisation calls carry this (Authorization: Bearer …); unset: refused.
EMQX_AUTH_SECRET = env.string("EMQX_AUTH_SECRET")

# ---------------------------------------------------------------------------------------------
# Accounts (django-allauth): email is the login; users live in the public schema.
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

ACCOUNT_ADAPTER = "portal.accounts.adapter.AccountAdapter"
ACCOUNT_FORMS = {"signup": "portal.accounts.forms.SignupForm"}
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Fieldwatch] "
# allauth's limits, tightened where it matters: 5 failed sign-ins per account per 5 minutes.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": env.string("FIELDWATCH_LOGIN_FAILED_LIMIT", "10/m/ip,5/300s/key"),
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Fieldwatch"
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/"

# ---------------------------------------------------------------------------------------------
# Email: console locally, SMTP from EMAIL_URL (smtp:// or smtps:// or smtp+tls://), locmem in tests.
DEFAULT_FROM_EMAIL = env.string("DEFAULT_FROM_EMAIL", "Fieldwatch <noreply@fieldwatch.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL


def email_settings(url: str) -> dict:
    if not url or url.startswith("console:"):
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if url.startswith("locmem:"):
        return {"EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
    parsed = urlparse(url)
    if parsed.scheme not in {"smtp", "smtps", "smtp+tls"}:
        raise ImproperlyConfigured(f"EMAIL_URL must start with smtp://, smtps://, smtp+tls:// or console:, not {url!r}")
    options = parse_qs(parsed.query)
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parsed.hostname or "localhost",
        "EMAIL_PORT": parsed.port or {"smtps": 465, "smtp+tls": 587}.get(parsed.scheme, 25),
        "EMAIL_HOST_USER": unquote(parsed.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parsed.password or ""),
        "EMAIL_USE_SSL": parsed.scheme == "smtps",
        "EMAIL_USE_TLS": parsed.scheme == "smtp+tls" or options.get("tls") == ["1"],
        "EMAIL_TIMEOUT": 10,
    }


globals().update(email_settings("locmem:" if TESTING else env.string("EMAIL_URL", "console:")))

# ---------------------------------------------------------------------------------------------
# Security. Session and CSRF cookies are host-only (no *_COOKIE_DOMAIN), so a cookie made on
# acme.<domain> is never sent to globex.<domain>; the session also records its tenant.
SESSION_COOKIE_NAME = "fieldwatch_session"
CSRF_COOKIE_NAME = "fieldwatch_csrftoken"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE = not DEBUG and not TESTING
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.boolean("SECURE_COOKIES", SECURE)
SECURE_HSTS_SECONDS = env.integer("SECURE_HSTS_SECONDS", 31536000 if SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
# Preloading is a promise for the whole domain that only its operator can make (and hard to undo):
# off unless SECURE_HSTS_PRELOAD=1, and `check --deploy` is told that this is deliberate.
SECURE_HSTS_PRELOAD = env.boolean("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_SSL_REDIRECT = env.boolean("SECURE_SSL_REDIRECT", False)  # usually the proxy's job
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.boolean("BEHIND_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env.listing("CSRF_TRUSTED_ORIGINS", [])
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [SELF],
        "object-src": [NONE],
    }
}

# ---------------------------------------------------------------------------------------------
# Static files: vendored front-end libraries under static/, served by whitenoise with
# compressed, hashed names in production.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING
MEDIA_ROOT = DATA_DIR / "media"

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

LANGUAGE_CODE = "en"
TIME_ZONE = env.string("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.string("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
