"""chatsite settings: one module, driven by environment variables (django-environ).

Defaults run on a fresh clone: SQLite in the project folder and the in-memory channel layer.
Production switches (DATABASE_URL, REDIS_URL, ...) are listed in the README's table.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

DEBUG = env.bool("DEBUG", default=False)
# A fixed development key only when DEBUG is on; production must set SECRET_KEY. Without DEBUG
# a missing key stays empty and nothing starts: the chatsite.E001 system check fails every
# management command and chatsite.middleware.SecretKeyRequired stops Daphne (chatsite/checks.py).
# A random key per process would log users out whenever two processes or a restart disagree.
SECRET_KEY = env.str(
    "SECRET_KEY",
    default="dev-only-insecure-key-change-me" if DEBUG else "",
)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # Row changes of agents, users, teams, review fields... (conversations/services/audit.py).
    "auditlog",
    "conversations",
    # The project package itself, for its system checks (chatsite/checks.py).
    "chatsite.apps.ChatsiteConfig",
]

MIDDLEWARE = [
    # First: every log line of a request carries its id (X-Request-ID, chatsite/logs.py).
    "chatsite.logs.RequestIdMiddleware",
    # Refuses to start without SECRET_KEY when DEBUG is off (Daphne runs no system checks).
    "chatsite.middleware.SecretKeyRequired",
    # Refuses to start with unreadable single sign-on settings (chatsite/oidc.py).
    "chatsite.oidc.SSOSettingsRequired",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every page (CONTENT_SECURITY_POLICY below).
    "chatsite.middleware.ContentSecurityPolicy",
    # Static files in production without nginx (compressed, hashed names, far-future caching).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    # NUL in a query string or form field: 400 before any view (services/validation.py).
    "conversations.services.validation.RequestTextMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Authorization: Bearer <personal API token> on /api/v1/ (conversations/api_auth.py).
    "conversations.api_auth.BearerTokenMiddleware",
    # The request's user and address on every audit log entry (services/audit.py).
    "conversations.services.audit.AuditContextMiddleware",
    # Cache-Control: private, no-store on every answer to a signed-in user.
    "chatsite.middleware.no_store_for_users",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "chatsite.asgi.application"

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
                "chatsite.theme.theme",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Persistent connections: with CONN_MAX_AGE=0 every database_sync_to_async call of every
    # socket opens a new connection (docs/performance.md). 60 s keeps the relay's few threads
    # connected between flushes.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # Health checks are off by default: Channels resets them around every database_sync_to_async
    # call, so each ORM call paid an extra `SELECT 1` round trip (11 per 500-delta reply in
    # `make bench`). Without them a connection PostgreSQL dropped fails one call, is marked
    # unusable and replaced at the next (close_if_unusable_or_obsolete); the relay retries its
    # flush. Set DB_HEALTH_CHECKS=1 where connections are often cut (a proxy with idle kills).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_HEALTH_CHECKS", default=False)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the relay's writes and page reads overlap; the 20 s busy timeout rides out a
    # flush that holds the write lock while another request writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )

REDIS_URL = env.str("REDIS_URL", default="")
# "pubsub" (default) or "core": see docs/performance.md for the measurement behind the choice.
CHANNEL_LAYER_KIND = env.str("CHANNEL_LAYER", default="pubsub")
if REDIS_URL and CHANNEL_LAYER_KIND == "core":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py's pool stops at 100 connections by default (MaxConnectionsError at
                # 100 concurrent conversations, docs/performance.md); 1,000 covers 500 conversations
                # per process with a viewer each.
                "hosts": [{"address": REDIS_URL, "max_connections": 1000}],
                # The default capacity of 100 messages per channel silently drops the rest
                # (logged at INFO). A viewer receives ~20 batches/s per conversation; 1,000
                # covers a 50 s stall of one socket before anything is dropped.
                "capacity": 1000,
                # Undelivered messages older than 30 s are useless to a live stream; a socket
                # that far behind resyncs from conversation.sync anyway.
                "expiry": 30,
                # Daphne closes websockets after 24 h, so group membership never needs longer.
                "group_expiry": 86400,
            },
        }
    }
elif REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Pub/sub: no per-channel capacity to overflow, no expiry to tune, one connection per
            # process, and it re-subscribes by itself after Redis restarts (the core layer keeps
            # groups in Redis and loses them when a Redis without persistence restarts).
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# English and Canadian French; the language follows the browser (LocaleMiddleware) until the
# user picks one with the switcher (set_language, stored in a cookie).
LANGUAGES = [("en", "English"), ("fr-ca", "Français (Canada)")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Hashed, compressed names once `collectstatic` has run (production, docs/deploy.md); plain
# names before that (tests, a local run), so a missing manifest never breaks a page.
# `collectstatic` itself always writes them: with the plain storage the first run of a fresh
# release (the image's build, tests/test_image.py) wrote no manifest, and the pages then kept
# the unversioned names for good.
_manifest = (STATIC_ROOT / "staticfiles.json").exists() or sys.argv[1:2] == ["collectstatic"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "chatsite.staticfiles.ChatStaticFilesStorage"
        if _manifest
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# HTTPS hardening, off by default so a plain-HTTP local run works; docs/deploy.md sets them all
# and `manage.py check --deploy` is clean with them (tests/test_deploy.py).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_HTTPS_PROXY", default=False) else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Joining the browsers' HSTS preload list is a one-way decision for the domain's owner (every
# subdomain must serve HTTPS for good), so it is opt-in rather than a deploy-check failure.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp; chatsite.middleware.ContentSecurityPolicy adds the
# request host's ws:/wss: to connect-src). Scripts come only from our own static files: no page
# has an inline script or event-handler attribute (json_script data blocks are not executed),
# and the Django admin's scripts are static files too. Styles likewise: colours that vary are
# SVG fill attributes, which style-src does not govern, so style attributes a prompt-injected
# reply might smuggle in cannot restyle or overlay a page.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Vendor HTTP timeouts (seconds). Connect ~10 s; the read timeout is an *idle* timeout between
# bytes (heartbeat comments count), 120 s covers long tool/thinking gaps that kill httpx's 5 s
# default (docs/providers.md).
VENDOR_CONNECT_TIMEOUT = env.float("VENDOR_CONNECT_TIMEOUT", default=10.0)
VENDOR_READ_TIMEOUT = env.float("VENDOR_READ_TIMEOUT", default=120.0)

# A reply longer than this fails with vendor_too_large, keeping the text up to it: 1,000,000
# characters is ~250k tokens, beyond any model's output, and bounds what one run can store.
MAX_REPLY_CHARS = env.int("MAX_REPLY_CHARS", default=1_000_000)

# Attachments (conversations/services/attachments.py): stored through STORAGES["default"], on
# disk under MEDIA_ROOT by default (beside the SQLite file; docs/deploy.md shows S3). Never
# served from MEDIA_URL: only through /api/v1/attachments/<id>, to those who may see the
# conversation. 10 MB (10 * 1024 * 1024) holds any screenshot or a long PDF; each file is read
# into memory and sent to the vendor whole.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
ATTACHMENT_MAX_BYTES = env.int("ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)

# A reviewer's claim on a queue item (conversations/services/queues.py) lapses after this many
# minutes and the item goes back to the others: 30 covers reading a long transcript and scoring
# it, and a claim abandoned by a closed tab is not lost for long.
REVIEW_CLAIM_MINUTES = env.int("REVIEW_CLAIM_MINUTES", default=30)

# Which environment variables an agent may name as its token (`token_env`), matched whole;
# chatsite's own settings (SECRET_KEY, DATABASE_URL, REDIS_URL...) are refused whatever this
# says (conversations/token_env.py). Default: upper-case names ending in _API_KEY, _TOKEN, _KEY
# or _SECRET (conversations/providers/redact.py, which also hides these variables' values
# from every log line). Empty: that default.
AGENT_TOKEN_ENV_PATTERN = env.str("AGENT_TOKEN_ENV_PATTERN", default="")

# Relay tuning; the numbers behind them are in conversations/relay.py.
RELAY_FLUSH_INTERVAL = env.float("RELAY_FLUSH_INTERVAL", default=1.0)
RELAY_FANOUT_WINDOW = env.float("RELAY_FANOUT_WINDOW", default=0.05)
# A streaming reply whose heartbeat (touched by every ~1 s flush) is older than this belongs to a
# dead process: 15 missed flushes tolerate long GC or database stalls.
RELAY_ORPHAN_AFTER = env.float("RELAY_ORPHAN_AFTER", default=15.0)
# On SIGTERM, replies that end within this many seconds finish normally; the others end as
# server_restart with their text kept (chatsite/shutdown.py). 10 s covers most replies and stays
# well under systemd's default TimeoutStopSec of 90 s.
SHUTDOWN_GRACE_SECONDS = env.float("SHUTDOWN_GRACE_SECONDS", default=10.0)
# Survivors look for such replies this often, so a dead run is reported failed within ~20 s.
# 0 disables the reaper.
RELAY_REAP_INTERVAL = env.float("RELAY_REAP_INTERVAL", default=5.0)

# "text" (default): one readable line per record. "json": one JSON object per line with the
# request, user, conversation and message ids where known (chatsite/logs.py,
# docs/observability.md).
LOG_FORMAT = env.str("LOG_FORMAT", default="text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "chatsite.logs.JSONFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler",
                             "formatter": "json" if LOG_FORMAT == "json" else "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # httpx logs every request at INFO; vendor URLs are noise at that level.
        "httpx": {"level": "WARNING"},
    },
}

# Every log record is redacted of agent tokens and credential echoes when it is made
# (conversations/providers/redact.py), whichever handler it reaches.
LOGGING_CONFIG = "conversations.providers.redact.configure_logging"

CSRF_FAILURE_VIEW = "conversations.api.csrf_failure"

# --- Rate limits (issue 8 §6; conversations/ratelimit.py). 0 disables a limit. ----------------
# Replies streaming at once per user: 10 covers a person with several tabs; 60 sockets started
# 60 vendor calls in 4 s before this limit existed.
RATE_LIMIT_RUNS_PER_USER = env.int("RATE_LIMIT_RUNS_PER_USER", default=10)
# `message.send` / `interrupt.resume` frames per user per minute: one a second, sustained.
RATE_LIMIT_SENDS_PER_MINUTE = env.int("RATE_LIMIT_SENDS_PER_MINUTE", default=60)
# API writes and HTML form writes per user per minute, one budget: generous for people and
# scripts, stops a runaway loop from filling the database.
RATE_LIMIT_WRITES_PER_MINUTE = env.int("RATE_LIMIT_WRITES_PER_MINUTE", default=120)
# Open websockets per user (300 were accepted for one user before): 50 tabs is plenty.
RATE_LIMIT_SOCKETS_PER_USER = env.int("RATE_LIMIT_SOCKETS_PER_USER", default=50)
# Prefix of the counters' Redis / cache keys, so several sites can share one Redis.
RATE_LIMIT_KEY_PREFIX = env.str("RATE_LIMIT_KEY_PREFIX", default="chatsite:ratelimit")

# --- Login throttling (issue 8 §7; django-axes) -----------------------------------------------
# After 10 failed logins for one username from one address, that pair is locked (HTTP 429, the
# right password refused too) until 15 minutes pass without a failure; other usernames from
# the same address and the same username from elsewhere are unaffected. Attempts are stored in
# the database, so every process sees them; staff can unlock in the admin (Axes > Access
# attempts) or with `manage.py axes_reset_username USERNAME`.
INSTALLED_APPS += ["axes"]
# Last: it turns the backend's lockout signal into the lockout page.
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked pair before the password is even hashed (~0.5 s of CPU each).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # Single sign-on (chatsite/oidc.py): declines every call but the callback's, and everything
    # while OIDC_ISSUER is empty.
    "chatsite.oidc.OIDCBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"
# Number of reverse proxies in front of the site, each appending to X-Forwarded-For (nginx's
# `$proxy_add_x_forwarded_for`). 0: the client is REMOTE_ADDR and X-Forwarded-For is ignored,
# since any client can send it. See conversations/ratelimit.py:client_ip.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "conversations.ratelimit.client_ip"

# --- Metrics (chatsite/metrics.py, docs/observability.md) ------------------------------------
# /metrics answers clients in these networks (the address as client_ip sees it, so
# TRUSTED_PROXY_COUNT applies) and requests with `Authorization: Bearer METRICS_TOKEN`; anyone
# else gets 404. Default: loopback only (a Prometheus on the same host or an SSH tunnel).
METRICS_ALLOWED_CIDRS = env.list("METRICS_ALLOWED_CIDRS", default=["127.0.0.1/32", "::1/128"])
try:
    for _cidr in METRICS_ALLOWED_CIDRS:
        ipaddress.ip_network(_cidr.strip(), strict=False) if _cidr.strip() else None
except ValueError as exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_CIDRS: {exc}") from None
# Empty: no token access. A token shorter than 16 characters is refused: it would be guessable.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters long.")
# PROMETHEUS_MULTIPROC_DIR is read by prometheus-client itself, from the environment (a .env
# file's value is in os.environ by now): one directory shared by every Daphne process of a
# host, emptied at each deployment's start.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
# --- Tracing (chatsite/tracing.py, docs/observability.md#tracing) ----------------------------
# OpenTelemetry is on only when this is set (the collector's OTLP/HTTP base URL, e.g.
# http://127.0.0.1:4318; spans go to its /v1/traces). The SDK reads it, and the other standard
# OTEL_* variables, from the environment itself; here it is checked, so a typo stops the start
# instead of failing every export in the background.
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="").strip()
if OTEL_EXPORTER_OTLP_ENDPOINT and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?",
                                                    OTEL_EXPORTER_OTLP_ENDPOINT):
    raise ImproperlyConfigured(
        "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, such as "
        "http://127.0.0.1:4318.")
# A reply's trace id is a link for reviewers with this, e.g.
# https://tempo.example.com/trace/{trace_id}; empty: the id is shown as text.
OTEL_TRACE_URL_TEMPLATE = env.str("OTEL_TRACE_URL_TEMPLATE", default="").strip()
if OTEL_TRACE_URL_TEMPLATE and not (
        re.fullmatch(r"https?://[^\s/?#]+\S*", OTEL_TRACE_URL_TEMPLATE)
        and OTEL_TRACE_URL_TEMPLATE.count("{trace_id}") == 1):
    raise ImproperlyConfigured(
        "OTEL_TRACE_URL_TEMPLATE must be an http:// or https:// URL with {trace_id} once, such "
        "as https://tempo.example.com/trace/{trace_id}.")
# --- Audit trail (issue 14; docs/audit.md) ----------------------------------------------------
# `manage.py prune_audit` deletes audit events and row-change entries older than this many days;
# 0 keeps them forever. 365: a year covers an annual access review.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)
# --- Outbound webhooks (issue 14; docs/webhooks.md, conversations/services/webhooks.py) -------
# Deliveries go through django-tasks' database backend: a row per task, run by
# `manage.py db_worker` (the Procfile's worker), never in a request or the relay.
INSTALLED_APPS += ["django_tasks", "django_tasks_db"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# One attempt is abandoned after 10 s (connect, each read, and the whole response): a receiver
# should answer at once and do its work later.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# A failed attempt is retried after base * 2**(n-1) seconds (10, 20, 40 s ... ~2.8 h by the
# 11th), until WEBHOOK_RETRY_HOURS after the event (24 h: a receiver down over a night or a
# weekend day still gets everything); then the delivery is failed.
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=10.0)
WEBHOOK_RETRY_HOURS = env.float("WEBHOOK_RETRY_HOURS", default=24.0)
# --- Single sign-on (issue 14; OpenID Connect, chatsite/oidc.py, docs/sso.md) ------------------
# Off while OIDC_ISSUER is empty. Endpoints come from OIDC_ISSUER/.well-known/openid-configuration.
OIDC_ISSUER = env.str("OIDC_ISSUER", default="")
OIDC_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
# "openid" is added when missing; the groups come from OIDC_GROUPS_CLAIM of the ID token and
# userinfo, which some providers send only for an extra scope (Okta: "groups").
OIDC_SCOPES = env.str("OIDC_SCOPES", default="openid email profile")
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
# `group=team:slug,group=team:slug:lead,group=reviewer,group=staff`, applied at every login
# (conversations/services/identity.py); an unreadable map stops the start (chatsite.E002).
OIDC_GROUP_MAP = env.str("OIDC_GROUP_MAP", default="")
# The login button says "Sign in with <this>"; empty: "single sign-on".
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="")
# Only the provider's button on /accounts/login/; the admin keeps a superuser password login.
SSO_ONLY = env.bool("SSO_ONLY", default=False)
if OIDC_ISSUER:
    # Logout is a form POST that ends with a redirect to the provider's end_session_endpoint,
    # and browsers hold a form's redirects to form-action too.
    _parts = OIDC_ISSUER.split("/", 3)
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"].append("/".join(_parts[:3]))
