"""The colour theme: a `theme` cookie (light | dark | auto) read by the server, so the first
paint is right (`data-theme` on <html> in templates/base.html), set by a small POST form in the
header. Any other cookie value is ignored (auto); any other posted value is refused."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

THEMES = ("auto", "light", "dark")
COOKIE = "theme"
COOKIE_MAX_AGE = 365 * 24 * 3600  # a year: a preference, not a secret


def current_theme(request: HttpRequest) -> str:
    value = request.COOKIES.get(COOKIE, "")
    return value if value in THEMES else "auto"


def theme(request: HttpRequest) -> dict[str, Any]:
    """Context processor: `theme` for every template."""
    return {"theme": current_theme(request), "themes": THEMES}


@require_POST
def set_theme(request: HttpRequest) -> HttpResponse:
    value = request.POST.get("theme", "")
    if value not in THEMES:
        return HttpResponseBadRequest("unknown theme", content_type="text/plain")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "/"
    response = HttpResponseRedirect(target)
    response.set_cookie(
        COOKIE,
        value,
        max_age=COOKIE_MAX_AGE,
        samesite="Lax",
        secure=request.is_secure(),
        httponly=True,
    )
    return response
