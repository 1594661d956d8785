"""Websocket Origin check against ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS, read per handshake."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator as _ChannelsOriginValidator
from django.conf import settings


class OriginValidator(_ChannelsOriginValidator):
    """Refuse the handshake unless the Origin header names a host we serve.

    Settings are read per handshake (not at import) so tests and `override_settings` see the
    current values. A missing Origin header is refused, as Channels does.
    """

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    def valid_origin(self, parsed_origin: Any) -> bool:
        self.allowed_origins = [*settings.ALLOWED_HOSTS, *settings.CSRF_TRUSTED_ORIGINS]
        return super().valid_origin(parsed_origin)
