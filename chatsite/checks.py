"""chatsite's own system checks (registered by chatsite.apps.ChatsiteConfig)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured


@register(Tags.security)
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """chatsite.E001: without DEBUG, SECRET_KEY must come from the environment. A key made up
    per process would sign each process's sessions differently: behind a load balancer users
    flap between logged in and out, and every restart logs everyone out."""
    if settings.DEBUG:
        return []
    try:
        key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        key = ""
    if key:
        return []
    return [Error(
        "SECRET_KEY is not set and DEBUG is off.",
        hint="Set the SECRET_KEY environment variable (or .env) to one long random value, the "
             "same in every process of the site, e.g. from "
             "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`.",
        id="chatsite.E001",
    )]
