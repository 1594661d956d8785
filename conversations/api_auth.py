"""Bearer-token authentication for the JSON API (`/api/v1/` only: pages, the admin and the
websocket keep the session).

A request under /api/v1/ whose `Authorization` header uses the Bearer scheme is authenticated by
that token alone: `request.user` becomes the token's user (a session cookie sent alongside is
ignored), `request.api_token` the token, whose scopes `api.api_view` checks. Such a request
carries no ambient credential a third-party page could make the browser send, so it needs no
CSRF token; a cookie-authenticated request still does. A Bearer header that does not name a live
token is answered 401 `unauthenticated` here, before any view. Other schemes (a proxy's Basic
auth) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from conversations import services
from conversations.api import api_error

API_PREFIX = "/api/v1/"


def is_bearer(header: str) -> bool:
    head = header.lstrip()[:7]
    return head[:6].lower() == "bearer" and (len(head) == 6 or head[6].isspace())


def unauthenticated(message: str) -> HttpResponse:
    response = api_error(401, "unauthenticated", message)
    response["WWW-Authenticate"] = 'Bearer realm="chatsite"'
    return response


class BearerTokenMiddleware:
    """After AuthenticationMiddleware (it replaces the session's user) and before the views
    (CsrfViewMiddleware checks in process_view, once every middleware has run)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header and request.path.startswith(API_PREFIX) and is_bearer(header):
            try:
                auth = services.tokens.authenticate(header)
            except services.Unauthenticated as exc:
                return unauthenticated(exc.message)
            user = auth.user
            request.user = user  # type: ignore[assignment]

            async def auser() -> Any:
                return user

            request.auser = auser  # type: ignore[attr-defined]
            request.api_token = auth.token  # type: ignore[attr-defined]
            # Not a cookie: nothing a cross-site page could forge (module docstring).
            request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
        return self.get_response(request)
