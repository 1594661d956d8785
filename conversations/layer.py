"""Channel-layer calls that survive a Redis restart or outage, and logs that do not flood.

Every channel-layer call of the relay and the consumer goes through here:

- After Redis restarts, each pooled connection is stale and the first command on it fails
  (`ConnectionError: Connection closed by server`): the pub/sub layer's pool carries
  redis-py's default connection retry, `Retry(NoBackoff(), 0)`. redis-py disconnects the
  failed connection before raising, so ONE retry reconnects; the idle connections of the pool
  are dropped as well, so the retry cannot pick another stale one. A call that still fails
  raises LayerUnavailable.
- Each attempt is bounded (CALL_TIMEOUT): the pool has no socket timeout, and a stalled Redis
  would otherwise hold the caller (and the shard's lock, hence every other call) forever.
- Failures are logged by ONE ThrottledLog per process (`layer_log`): the first with its
  traceback, then one line per LOG_INTERVAL with a count, then one line on recovery. A Redis
  outage used to log a full traceback every 25-100 ms per process (527 in one test).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from chatsite import metrics

logger = logging.getLogger(__name__)

# A healthy Redis answers in ~1 ms on loopback; 2 s (the rate limiter's socket timeout too)
# means it is stalled, not slow.
CALL_TIMEOUT = 2.0
# One summary line per 30 s of an outage (issue 9: one per 25-100 ms was a flood).
LOG_INTERVAL = 30.0


class LayerUnavailable(Exception):
    """A channel-layer call failed twice (Redis down or stalled)."""


class ThrottledLog:
    """Logs a failing dependency without flooding: the first failure with its traceback, then
    at most one line per `interval` with the number of failures, and one line on recovery.
    Thread-safe (the rate limiter reports from worker threads)."""

    def __init__(self, log: logging.Logger, subject: str, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 count: Callable[[str], None] | None = None) -> None:
        self.log = log
        self.count = count  # called with `what` on each failure (a metric), if given
        self.subject = subject
        self.interval = interval
        self.clock = clock
        self.failing = False
        self.failures = 0  # since the outage began
        self._since = 0.0
        self._last_line = 0.0
        self._unlogged = 0  # failures since the last line
        self._lock = threading.Lock()

    def failure(self, what: str, exc: BaseException | None = None) -> None:
        if self.count is not None:
            self.count(what)
        with self._lock:
            now = self.clock()
            self.failures += 1
            if not self.failing:
                self.failing = True
                self._since = self._last_line = now
                self._unlogged = 0
                self.log.warning(
                    "%s unavailable (%s); further failures are counted, one line per %d s",
                    self.subject, what, self.interval,
                    exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else False,
                )
                return
            self._unlogged += 1
            if now - self._last_line >= self.interval:
                self.log.warning(
                    "%s still unavailable: %d failures in the last %.0f s (%d in %.0f s), "
                    "latest %s: %s", self.subject, self._unlogged, now - self._last_line,
                    self.failures, now - self._since, what, _describe(exc))
                self._last_line = now
                self._unlogged = 0

    def success(self) -> None:
        if not self.failing:  # the hot path: no lock
            return
        with self._lock:
            if not self.failing:
                return
            self.failing = False
            self.log.warning("%s recovered after %.1f s and %d failed calls", self.subject,
                             self.clock() - self._since, self.failures)
            self.failures = 0


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "-"
    return f"{type(exc).__name__}: {exc}"[:200]


layer_log = ThrottledLog(logger, "channel layer (Redis)", count=metrics.layer_error)


# Calls -----------------------------------------------------------------------------------------


async def _call(layer: Any, name: str, *args: Any, proves_health: bool = True) -> Any:
    """`proves_health`: success means Redis answered. Not so for group_add / group_discard,
    which the pub/sub layer serves in-process when the group is already (un)subscribed: such
    a success during an outage would log a false recovery."""
    layer = layer if layer is not None else get_channel_layer()
    for attempt in (1, 2):
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                result = await getattr(layer, name)(*args)
        except Exception as exc:
            # A timeout means a stalled Redis, not a stale connection: retrying would only
            # double the wait.
            if attempt == 1 and not isinstance(exc, TimeoutError):
                await _drop_idle_connections(layer)
                continue
            layer_log.failure(name, exc)
            raise LayerUnavailable(f"channel layer {name} failed: {_describe(exc)}") from exc
        if proves_health:
            layer_log.success()
        return result
    raise AssertionError("unreachable")


async def group_send(group: str, message: dict[str, Any], layer: Any = None) -> None:
    await _call(layer, "group_send", group, message)


async def send(channel: str, message: dict[str, Any], layer: Any = None) -> None:
    await _call(layer, "send", channel, message)


async def group_add(group: str, channel: str, layer: Any = None) -> None:
    await _call(layer, "group_add", group, channel, proves_health=False)


async def group_discard(group: str, channel: str, layer: Any = None) -> None:
    await _call(layer, "group_discard", group, channel, proves_health=False)


async def new_channel(prefix: str, layer: Any = None) -> str:
    return str(await _call(layer, "new_channel", prefix))


async def ensure_channel(layer: Any, prefix: str = "specific.") -> tuple[str, bool]:
    """A channel name for a consumer, and whether Redis knows it yet.

    With Redis down, the pub/sub layer's `new_channel` raises (it subscribes at once), which
    failed every handshake with HTTP 500. Here the channel is then registered in this
    process's layer only: group messages reach it as soon as its groups are joined (they are
    routed in-process from the group's subscription), and `subscribe_channel` subscribes it
    later. Other layers never fail here (in-memory; the core layer only makes up a name).
    """
    try:
        return await new_channel(prefix, layer), True
    except LayerUnavailable:
        loop_layer = _pubsub_loop_layer(layer)
        if loop_layer is None:
            raise
        # channels_redis 4.3 RedisPubSubLoopLayer.new_channel without the subscription.
        name = f"{loop_layer.prefix}{prefix}{uuid.uuid4().hex}"
        loop_layer.channels[name] = asyncio.Queue()
        return name, False


async def subscribe_channel(layer: Any, channel: str) -> None:
    """Subscribe a channel made by `ensure_channel` while Redis was down."""
    loop_layer = _pubsub_loop_layer(layer)
    if loop_layer is not None and channel in loop_layer.channels:
        shard = loop_layer._get_shard(channel)
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await shard.subscribe(channel)
        except Exception as exc:
            layer_log.failure("subscribe", exc)
            raise LayerUnavailable(f"channel layer subscribe failed: {_describe(exc)}") from exc
        layer_log.success()


def _pubsub_loop_layer(layer: Any) -> Any:
    """This event loop's channels_redis RedisPubSubLoopLayer, or None for other layers."""
    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:  # pragma: no cover - channels-redis is a dependency
        return None
    if not isinstance(layer, RedisPubSubChannelLayer):
        return None
    return layer._get_layer()


async def _drop_idle_connections(layer: Any) -> None:
    """Disconnect the idle pooled connections of the pub/sub layer's shards (not the one its
    subscriber holds), so the retry connects afresh."""
    loop_layer = _pubsub_loop_layer(layer)
    if loop_layer is None:
        return
    for shard in loop_layer._shards:
        client = shard._redis
        if client is None:
            continue
        try:
            await client.connection_pool.disconnect(inuse_connections=False)
        except Exception:  # noqa: BLE001, S110 - best effort: the retry reports any failure
            pass


# channels_redis' own subscriber task logs `Unexpected exception in receive task` with a
# traceback every second while Redis is down, and a cleanup failure per socket closed during
# the outage: those go to the same throttled log.
_CHANNELS_REDIS_MESSAGES = ("Unexpected exception in receive task",
                            "Unexpected exception while cleaning-up channel:")


class _ChannelsRedisFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in _CHANNELS_REDIS_MESSAGES and record.exc_info:
            exc = record.exc_info[1]
            if exc is not None and _is_connection_error(exc):
                layer_log.failure("subscriber", exc)
                return False
        return True


def _is_connection_error(exc: BaseException) -> bool:
    import redis.exceptions

    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
                      | OSError | TimeoutError)


def install_log_filter() -> None:
    target = logging.getLogger("channels_redis.pubsub")
    if not any(isinstance(f, _ChannelsRedisFilter) for f in target.filters):
        target.addFilter(_ChannelsRedisFilter())


install_log_filter()
