from __future__ import annotations

from django.apps import AppConfig


class ChatsiteConfig(AppConfig):
    """The project package as an app, so its system checks (chatsite/checks.py) are registered
    for every management command."""

    name = "chatsite"
    verbose_name = "chatsite"

    def ready(self) -> None:
        from chatsite import checks, oidc  # noqa: F401 - registers the checks
