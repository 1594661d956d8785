"""Probes for whoever runs chatsite (a load balancer, a container's HEALTHCHECK):

- `/healthz`: the process answers (no dependency is touched);
- `/readyz`: it can serve — the database answers, Redis answers when `REDIS_URL` is set, and a
  message goes round the channel layer — each part with its latency in milliseconds; 503 naming
  the parts that failed.

No login: they say nothing about users or conversations. No traceback either: a failing part is
named with its exception's class, and logged at info level (a probe every few seconds would
flood the log otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

# A part slower than this is counted as down: a probe must answer well within a load
# balancer's usual 5 s timeout, whatever hangs.
CHECK_TIMEOUT = 2.0


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _redis() -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT,
                                     socket_connect_timeout=CHECK_TIMEOUT)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _channel_layer() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel("readyz.")
    await layer.send(channel, {"type": "readyz.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "readyz.ping":
        raise RuntimeError("the channel layer returned another message")


async def _timed(check: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:  # any failure of the part is the answer, not an error of ours
        return {"ok": False, "error": type(exc).__name__,
                "ms": round((time.monotonic() - started) * 1000, 1)}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


@never_cache
@require_GET
async def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": await _timed(database_sync_to_async(_database))}
    if settings.REDIS_URL:
        checks["redis"] = await _timed(_redis)
    checks["channel_layer"] = await _timed(_channel_layer)
    failing = [name for name, result in checks.items() if not result["ok"]]
    if failing:
        logger.warning("not ready: %s", ", ".join(
            f"{name} ({checks[name]['error']})" for name in failing))
    response = JsonResponse({"status": "unavailable" if failing else "ready",
                             "failing": failing, "checks": checks},
                            status=503 if failing else 200)
    # The line above says what failed; Django's request log would add an ERROR "Service
    # Unavailable: /readyz" for every probe (a load balancer asks every few seconds) while a
    # dependency is down, and the answer is not a fault of this request.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
