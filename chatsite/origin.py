"""Websocket Origin check: scheme, host and port exactly, by Django's CSRF origin rule.

A handshake is accepted when its Origin header is the request's own origin (the scheme from the
ASGI scope, or from SECURE_PROXY_SSL_HEADER as Django reads it, plus the Host header validated
against ALLOWED_HOSTS) or an entry of CSRF_TRUSTED_ORIGINS (`https://*.example.com` wildcards
included). This mirrors django.middleware.csrf.CsrfViewMiddleware._origin_verified, so a page
and its websocket trust the same origins. Settings are read per handshake, so tests and
`override_settings` see the current values.

Daphne 4 puts no `scheme` in a websocket scope (ASGI's default is then `ws`), so behind nginx the
scheme comes from X-Forwarded-Proto via SECURE_PROXY_SSL_HEADER (BEHIND_HTTPS_PROXY=1,
docs/deploy.md); a Daphne terminating TLS itself needs its https origin in CSRF_TRUSTED_ORIGINS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.utils.http import is_same_domain


class _HandshakeRequest(HttpRequest):
    """Just enough of a request for HttpRequest.get_host() and .scheme to apply Django's rules
    (ALLOWED_HOSTS, USE_X_FORWARDED_HOST, SECURE_PROXY_SSL_HEADER) to a websocket scope."""

    def __init__(self, scope: dict[str, Any]) -> None:
        super().__init__()
        self._scope_scheme = "https" if scope.get("scheme") == "wss" else "http"
        for name, value in scope.get("headers") or []:
            key = "HTTP_" + name.decode("latin1").upper().replace("-", "_")
            text = value.decode("latin1")
            # Repeated headers are joined with commas, as Django's ASGI handler does.
            self.META[key] = f"{self.META[key]},{text}" if key in self.META else text
        server = scope.get("server")
        if server and server[0] is not None:
            self.META["SERVER_NAME"] = str(server[0])
            self.META["SERVER_PORT"] = str(server[1] or "")

    def _get_scheme(self) -> str:
        return self._scope_scheme


def request_origin(scope: dict[str, Any]) -> str | None:
    """The handshake's own origin (`http://host:port`), or None if its host is not served."""
    request = _HandshakeRequest(scope)
    try:
        host = request.get_host()
    except (DisallowedHost, KeyError):  # KeyError: no Host header and no server address
        return None
    return f"{'https' if request.is_secure() else 'http'}://{host}"


def origin_allowed(scope: dict[str, Any]) -> bool:
    origins = [value for name, value in scope.get("headers") or [] if name == b"origin"]
    if len(origins) != 1:
        return False  # missing (not a browser) or ambiguous
    try:
        origin = origins[0].decode("latin1")
    except UnicodeDecodeError:  # pragma: no cover - latin1 decodes every byte
        return False
    if origin == request_origin(scope):
        return True
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in {o for o in trusted if "*" not in o}:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return any(
        is_same_domain(parsed.netloc, pattern.netloc.lstrip("*"))
        for pattern in (urlsplit(o) for o in trusted if "*" in o)
        if pattern.scheme == parsed.scheme
    )


class OriginValidator:
    """ASGI middleware: refuse (HTTP 403) a websocket handshake from an origin we do not serve."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
