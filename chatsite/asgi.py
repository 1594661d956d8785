"""ASGI entry point: HTTP through Django, websockets through Channels (origin + session checked)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

if settings.DEBUG:
    # Daphne serves no static files itself; in local use (DEBUG=1, `make run`) Django's
    # staticfiles handler does. Production serves them from nginx (docs/deploy.md).
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatsite.origin import OriginValidator  # noqa: E402
from chatsite.routing import websocket_urlpatterns  # noqa: E402
from conversations.backpressure import WriteGaugeMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WriteGaugeMiddleware(
            OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
