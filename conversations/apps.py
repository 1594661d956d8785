from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = _("Conversations")

    def ready(self) -> None:
        # Logout, deactivation and password changes close the user's websockets.
        from conversations import relay, sessions
        from conversations.services import audit

        sessions.connect_receivers()
        # A deleted conversation's reply stops and its sockets close (4404), in every process.
        relay.connect_receivers()
        # The audit trail: auditlog's models and fields, and the login signals (docs/audit.md).
        audit.register_models()
        audit.connect_receivers()
