"""Site-wide response headers and the start-up refusal of a missing SECRET_KEY."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured, MiddlewareNotUsed
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control
from django.utils.decorators import sync_and_async_middleware

from chatsite.checks import check_secret_key


class SecretKeyRequired:
    """Daphne runs no system checks, so chatsite.E001 is enforced here as well: the ASGI
    application loads its middleware when it is imported, and a server without a key refuses
    to start instead of signing sessions with a key no other process shares."""

    def __init__(self, get_response: Callable[..., Any]) -> None:
        errors = check_secret_key()
        if errors:
            raise ImproperlyConfigured(f"{errors[0].msg} {errors[0].hint} ({errors[0].id})")
        raise MiddlewareNotUsed  # nothing to do per request


def _no_store(response: HttpResponseBase) -> HttpResponseBase:
    # A response a view marked `public` (the OpenAPI document) carries no user data and keeps
    # its caching; everything else a signed-in user gets (conversation list, chat page, API
    # answers, exports, admin transcripts, /stats/) must stay out of shared and browser caches.
    if "public" not in response.get("Cache-Control", ""):
        patch_cache_control(response, private=True, no_store=True)
    return response


def _signed_in(request: HttpRequest) -> bool:
    # The session cookie, not request.user: resolving the user here would cost the async path
    # (Daphne) one more query per request whenever the view read `request.user` in its thread
    # (request.auser() caches separately). Sessions are the only sign-in, so a request without
    # the cookie is anonymous; one with a stale cookie merely loses caching.
    return settings.SESSION_COOKIE_NAME in request.COOKIES


@sync_and_async_middleware
def no_store_for_users(
    get_response: Callable[[HttpRequest], Any],
) -> Callable[[HttpRequest], Any]:
    """`Cache-Control: private, no-store` on every answer to a signed-in request. Static files
    are answered by WhiteNoise earlier in MIDDLEWARE and keep their far-future caching."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            response = await get_response(request)
            return _no_store(response) if _signed_in(request) else response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        return _no_store(response) if _signed_in(request) else response

    return middleware


class ContentSecurityPolicy(CSPMiddleware):
    """django-csp with the websocket endpoints of the request's own host added to
    `connect-src` (settings.CONTENT_SECURITY_POLICY has the rest): CSP Level 3 lets `'self'`
    match ws:/wss: of the same host, older engines do not, and a TLS proxy may hide the scheme,
    so both schemes are listed."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()  # validated against ALLOWED_HOSTS: no `;` or spaces
        except DisallowedHost:
            return parts
        update = dict(parts.update or {})
        extra = update.get("connect-src") or []
        update["connect-src"] = [*([extra] if isinstance(extra, str) else extra),
                                 f"ws://{host}", f"wss://{host}"]
        parts.update = update
        return parts

