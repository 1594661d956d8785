"""ASGI entry point: HTTP through Django, websockets through Channels (origin + session checked)."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from chatsite import tracing  # noqa: E402

# OpenTelemetry when OTEL_EXPORTER_OTLP_ENDPOINT is set, before Django builds its middleware
# chain: the Django instrumentation adds its own middleware to it.
tracing.setup()
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

# Garbage collection: the relay allocates a few short-lived dicts per delta, so with CPython's
# default threshold (700 allocations) a collection runs many times a second, and every full
# collection walks the ~100 MB of objects Django and the app created at start-up. Freezing
# those start-up objects keeps full collections short (pauses of 75-150 ms were measured in a
# peer, docs/performance.md), and a higher first threshold makes young collections rarer.
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 20, 20)

from chatsite import shutdown  # noqa: E402

# SIGTERM drains the process (chatsite/shutdown.py) when Daphne serves it.
shutdown.install()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # tracing.websocket: a span per socket session when tracing is on.
        "websocket": tracing.websocket(WriteGaugeMiddleware(
            OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        )),
    }
)
