"""Per-user limits shared by every server process, and the client address for login throttling.

Counters live in Redis when `REDIS_URL` is set (one pooled client per process, shared by every
thread), else in Django's cache (per process unless the cache itself is shared). Each limit is a
setting where 0 disables it (chatsite/settings.py):

- `RATE_LIMIT_RUNS_PER_USER`: replies streaming at once, counted in the database (authoritative
  across processes; the reaper fails a dead process's replies, so the count heals by itself).
- `RATE_LIMIT_SENDS_PER_MINUTE`: `message.send` / `interrupt.resume` frames.
- `RATE_LIMIT_WRITES_PER_MINUTE`: API writes and HTML form writes, one budget.
- `RATE_LIMIT_SOCKETS_PER_USER`: open websockets.

A limit that cannot be checked because Redis is down lets the request through (logged): the
limits protect capacity, they must not take the site down with Redis.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from chatsite import metrics
from conversations.frames import error_frame
from conversations.layer import ThrottledLog
from conversations.models import Message

logger = logging.getLogger(__name__)
# A Redis outage: the first failure with its traceback, then one line per 30 s, and one on
# recovery (a warning per checked request flooded the log, issue 9).
_redis_log = ThrottledLog(logger, "rate limits' Redis")

# Every per-minute limit is a fixed window of 60 s (INCR + EXPIRE): at worst twice the limit
# passes across a window boundary, which is fine for a capacity guard.
WINDOW = 60
# A reply usually finishes within seconds; a refused send is worth retrying after 5 s.
RUN_RETRY_AFTER = 5
# Open sockets per user are a Redis sorted set (a dict in the cache) of socket id -> expiry time.
# Each process re-stamps its own open sockets every SOCKET_HEARTBEAT s; an entry not re-stamped
# for SOCKET_TTL s (3 missed heartbeats) belongs to a process that died without `disconnect`,
# and stops counting. So a crash can hold a user's slots for at most 3 minutes, never forever.
SOCKET_HEARTBEAT = 60.0
SOCKET_TTL = 180
# The socket limit accepts the handshake, sends the `rate_limited` error frame (a refused
# handshake is a bare HTTP 403 the browser cannot read), then closes with this code (4429
# mirrors HTTP 429; 4000-4999 are the application's own close codes).
CLOSE_TOO_MANY_SOCKETS = 4429
# The earliest a socket slot may free up is unknown; suggest one heartbeat.
SOCKET_RETRY_AFTER = int(SOCKET_HEARTBEAT)

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()
# This process's open counted sockets (socket id -> user id), re-stamped by the heartbeat task.
_local_sockets: dict[str, int] = {}
_heartbeat: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class Refusal:
    limit: str  # "runs", "sends", "writes" or "sockets"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        """In the active language (call it inside the request's or socket's translation)."""
        if self.limit == "runs":
            return _("Too many replies are running; wait for one to finish.")
        if self.limit == "sockets":
            return _("Too many open connections; close some tabs and try again.")
        return _("Too many requests; try again in %(seconds)s seconds.") % {
            "seconds": self.retry_after
        }

    def counted(self) -> Refusal:
        """This refusal, counted in the metrics (chatsite_rate_limit_refusals{limit})."""
        metrics.RATE_LIMIT_REFUSALS.labels(self.limit).inc()
        return self

    def frame(self, client_id: str | None = None) -> dict[str, Any]:
        return error_frame("rate_limited", self.message, retry_after=self.retry_after,
                           client_id=client_id)


def _redis() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        with _clients_lock:
            client = _clients.get(url)
            if client is None:
                # 2 s: a stalled Redis must not hold a request (or the socket thread) for long.
                client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
                _clients[url] = client
    return client


def _key(*parts: object) -> str:
    # RATE_LIMIT_KEY_PREFIX lets tests (and several sites sharing one Redis) keep apart.
    return ":".join([settings.RATE_LIMIT_KEY_PREFIX, *map(str, parts)])


def hit(bucket: str, user_id: int, limit: int) -> Refusal | None:
    """Count one event in `user_id`'s current minute of `bucket`; a Refusal once over `limit`."""
    if limit <= 0:
        return None
    now = time.time()
    window = int(now // WINDOW)
    key = _key(bucket, user_id, window)
    client = _redis()
    try:
        if client is not None:
            with client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW + 1)
                count = int(pipe.execute()[0])
            _redis_log.success()
        else:
            cache.add(key, 0, timeout=WINDOW + 1)
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=WINDOW + 1)
                count = 1
    except redis.RedisError as exc:
        _redis_log.failure(f"rate limit {bucket} not checked", exc)
        return None
    if count <= limit:
        return None
    return Refusal(bucket, max(1, math.ceil((window + 1) * WINDOW - now))).counted()


def hit_writes(user_id: int) -> Refusal | None:
    """One API or HTML form write (shared budget)."""
    return hit("writes", user_id, settings.RATE_LIMIT_WRITES_PER_MINUTE)


def check_send(user_id: int) -> Refusal | None:
    """Before a `message.send` / `interrupt.resume` starts a reply (sync: queries the database).
    A send refused for running replies does not use up the per-minute budget."""
    limit = settings.RATE_LIMIT_RUNS_PER_USER
    if limit > 0:
        running = Message.objects.streaming().filter(conversation__owner_id=user_id).count()
        if running >= limit:
            return Refusal("runs", RUN_RETRY_AFTER).counted()
    return hit("sends", user_id, settings.RATE_LIMIT_SENDS_PER_MINUTE)


# Sockets --------------------------------------------------------------------------------------


def open_socket(user_id: int, socket_id: str) -> Refusal | None:
    """Count one open socket of `user_id`; a Refusal (and nothing counted) over the limit."""
    limit = settings.RATE_LIMIT_SOCKETS_PER_USER
    if limit <= 0:
        return None
    now = time.time()
    key = _key("sockets", user_id)
    client = _redis()
    try:
        if client is not None:
            # Add first, then count: two processes racing for the last slot may both refuse,
            # never both accept.
            with client.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", now)
                pipe.zadd(key, {socket_id: now + SOCKET_TTL})
                pipe.zcard(key)
                pipe.expire(key, SOCKET_TTL)
                count = int(pipe.execute()[2])
            _redis_log.success()
            if count > limit:
                client.zrem(key, socket_id)
                return Refusal("sockets", SOCKET_RETRY_AFTER).counted()
            return None
        # Cache fallback: read-modify-write, exact within one process (these calls are
        # serialized by the lock below), best effort for a cache shared by several.
        with _clients_lock:
            sockets = {s: t for s, t in (cache.get(key) or {}).items() if t > now}
            if len(sockets) >= limit:
                return Refusal("sockets", SOCKET_RETRY_AFTER).counted()
            sockets[socket_id] = now + SOCKET_TTL
            cache.set(key, sockets, timeout=SOCKET_TTL)
    except redis.RedisError as exc:
        _redis_log.failure("socket limit not checked", exc)
    return None


def close_socket(user_id: int, socket_id: str) -> None:
    key = _key("sockets", user_id)
    client = _redis()
    try:
        if client is not None:
            client.zrem(key, socket_id)
            _redis_log.success()
            return
        with _clients_lock:
            sockets = cache.get(key) or {}
            if sockets.pop(socket_id, None) is not None:
                cache.set(key, sockets, timeout=SOCKET_TTL)
    except redis.RedisError as exc:
        # The entry expires SOCKET_TTL after the last heartbeat anyway.
        _redis_log.failure("socket count not decremented", exc)


def refresh_sockets(sockets: dict[str, int]) -> None:
    """Push the expiry of this process's open sockets SOCKET_TTL into the future."""
    expiry = time.time() + SOCKET_TTL
    by_user: dict[int, list[str]] = {}
    for socket_id, user_id in sockets.items():
        by_user.setdefault(user_id, []).append(socket_id)
    client = _redis()
    if client is not None:
        with client.pipeline(transaction=False) as pipe:
            for user_id, ids in by_user.items():
                key = _key("sockets", user_id)
                pipe.zadd(key, dict.fromkeys(ids, expiry))
                pipe.expire(key, SOCKET_TTL)
            pipe.execute()
        _redis_log.success()
        return
    with _clients_lock:
        for user_id, ids in by_user.items():
            key = _key("sockets", user_id)
            entries = cache.get(key) or {}
            entries.update(dict.fromkeys(ids, expiry))
            cache.set(key, entries, timeout=SOCKET_TTL)


async def aopen_socket(user_id: int, socket_id: str) -> Refusal | None:
    """open_socket off the event loop; a counted socket is kept fresh by the heartbeat."""
    if settings.RATE_LIMIT_SOCKETS_PER_USER <= 0:
        return None  # no limit: no thread hop on every handshake
    refusal = await sync_to_async(open_socket, thread_sensitive=False)(user_id, socket_id)
    if refusal is None and settings.RATE_LIMIT_SOCKETS_PER_USER > 0:
        _local_sockets[socket_id] = user_id
        _ensure_heartbeat()
    return refusal


async def aclose_socket(socket_id: str) -> None:
    user_id = _local_sockets.pop(socket_id, None)
    if user_id is None:
        return  # never counted (refused, or the limit is off)
    await sync_to_async(close_socket, thread_sensitive=False)(user_id, socket_id)
    if not _local_sockets and _heartbeat is not None:
        _heartbeat.cancel()


def _ensure_heartbeat() -> None:
    global _heartbeat
    loop = asyncio.get_running_loop()
    if _heartbeat is None or _heartbeat.done() or _heartbeat.get_loop() is not loop:
        _heartbeat = loop.create_task(_beat())


async def _beat() -> None:
    while _local_sockets:
        await asyncio.sleep(SOCKET_HEARTBEAT)
        try:
            await sync_to_async(refresh_sockets, thread_sensitive=False)(dict(_local_sockets))
        except redis.RedisError as exc:
            _redis_log.failure("socket heartbeat", exc)


# HTTP -----------------------------------------------------------------------------------------


def limit_form_writes(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """HTML form views: a POST uses the writes budget the API uses; over it, a 429 page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST" and request.user.is_authenticated:
            refusal = hit_writes(request.user.pk)
            if refusal is not None:
                response = render(
                    request, "conversations/rate_limited.html",
                    {"message": refusal.message, "retry_after": refusal.retry_after},
                    status=429,
                )
                response["Retry-After"] = str(refusal.retry_after)
                return response
        return view(request, *args, **kwargs)

    return wrapper


def client_ip(request: HttpRequest) -> str | None:
    """The client's address for login throttling (AXES_CLIENT_IP_CALLABLE).

    With TRUSTED_PROXY_COUNT = 0 (default) it is REMOTE_ADDR and X-Forwarded-For is ignored:
    anyone can send that header. With N trusted proxies in front, each appending the address it
    saw (nginx's `$proxy_add_x_forwarded_for`), the client is the Nth address from the right;
    what is left of it came from the client and is not trusted.
    """
    count = settings.TRUSTED_PROXY_COUNT
    remote = request.META.get("REMOTE_ADDR")
    if count <= 0:
        return remote
    forwarded = [
        a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()
    ]
    if len(forwarded) < count:
        return remote  # fewer hops than configured: the header is not our proxies'
    return forwarded[-count]
