"""Which environment variables an agent may name as its token (`Agent.token_env`).

An agent sends the value of its token variable to its base URL, which staff choose: without a
rule, a staff member could point an agent at `SECRET_KEY` or `DATABASE_URL` and send it to any
host. The rule lives here only; it is applied by `Agent.clean()` (admin form, `agents add`) and
again when a token is read (`AgentConfig.token()`), so a row saved before the rule is never used.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.utils.translation import gettext as _

# Upper-case names ending in _API_KEY, _TOKEN, _KEY or _SECRET (OPENAI_API_KEY, LOOP_TOKEN...),
# used when settings.AGENT_TOKEN_ENV_PATTERN is empty; the log redaction shares it.
from conversations.providers.redact import DEFAULT_TOKEN_ENV_PATTERN as DEFAULT_PATTERN

# The variables chatsite itself reads (chatsite/settings.py, the Makefile, the test runs),
# refused whatever AGENT_TOKEN_ENV_PATTERN says. Add a name here when settings.py reads a new one.
RESERVED = frozenset({
    "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL", "REDIS_URL",
    "TEST_DATABASE_URL", "TEST_REDIS_URL", "CHANNEL_LAYER", "CONN_MAX_AGE", "DB_HEALTH_CHECKS",
    "BEHIND_HTTPS_PROXY", "SECURE_SSL_REDIRECT", "SECURE_COOKIES", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_PRELOAD", "LOG_LEVEL", "HOST", "PORT", "VENDOR_CONNECT_TIMEOUT",
    "VENDOR_READ_TIMEOUT", "RELAY_FLUSH_INTERVAL", "RELAY_FANOUT_WINDOW", "RELAY_ORPHAN_AFTER",
    "RELAY_REAP_INTERVAL", "AGENT_TOKEN_ENV_PATTERN", "MAX_REPLY_CHARS", "LOGIN_FAILURE_LIMIT",
    "LOGIN_LOCKOUT_MINUTES", "TRUSTED_PROXY_COUNT", "SHUTDOWN_GRACE_SECONDS",
    "MEDIA_ROOT", "ATTACHMENT_MAX_BYTES", "REVIEW_CLAIM_MINUTES",
    "AUDIT_RETENTION_DAYS", "WEBHOOK_TIMEOUT_SECONDS", "WEBHOOK_RETRY_BASE_SECONDS",
    "WEBHOOK_RETRY_HOURS",
    "OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_SCOPES", "OIDC_GROUPS_CLAIM",
    "OIDC_GROUP_MAP", "OIDC_PROVIDER_NAME", "SSO_ONLY",
    "DJANGO_SETTINGS_MODULE", "LOG_FORMAT", "METRICS_ALLOWED_CIDRS", "METRICS_TOKEN",
    "PROMETHEUS_MULTIPROC_DIR", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACE_URL_TEMPLATE",
})
# Whole families chatsite or its libraries read (rate limits, django-axes, Django itself,
# OpenTelemetry's SDK: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACE_URL_TEMPLATE and the standard
# OTEL_* variables): RATE_LIMIT_KEY_PREFIX, for one, would match the pattern.
RESERVED_PREFIXES = ("DJANGO_", "RATE_LIMIT_", "AXES_", "OTEL_")


def token_env_problem(name: str) -> str | None:
    """Why `name` may not hold an agent's token (a sentence for people), or None if it may.
    An empty name (an agent without a token) is fine."""
    if not name:
        return None
    upper = name.upper()
    if upper in RESERVED or upper.startswith(RESERVED_PREFIXES):
        return _("%(name)s is one of chatsite's own settings and cannot hold an agent's token.") % {
            "name": name
        }
    pattern = getattr(settings, "AGENT_TOKEN_ENV_PATTERN", "") or DEFAULT_PATTERN
    if not re.fullmatch(pattern, name):
        return _(
            "%(name)s does not match AGENT_TOKEN_ENV_PATTERN (by default an upper-case name "
            "ending in _API_KEY, _TOKEN, _KEY or _SECRET, such as OPENAI_API_KEY)."
        ) % {"name": name}
    return None
