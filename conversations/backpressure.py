"""Bounded memory for a socket whose client stops reading (daphne #170).

Daphne never pushes back on `websocket.send`: frames for a client that stopped reading pile up in
Twisted's write buffer without bound (198 MiB in one measurement, docs/performance.md). Twisted does
tell a registered *push producer* when a transport's buffer passes its 64 KiB high-water mark
(`pauseProducing`) and when it has drained (`resumeProducing`). The consumer registers a
`WriteGauge` on its Daphne transport and, while the buffer stays full, counts what it still sends.
It closes the socket with code 4008 only for a backlog that persists: over MAX_BEHIND_BYTES for
longer than BEHIND_GRACE_SECONDS, over MAX_BEHIND_HARD_BYTES at all, or a buffer full for longer
than MAX_PAUSED_SECONDS. One large frame (up to 1 MiB) to a client that reads is drained, and
Twisted resumes the producer, long before that. A client that was closed reconnects and resyncs
from `conversation.sync`, so nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

# 256 KiB sent on top of Twisted's 64 KiB buffer: ~4 minutes of a 50-deltas/s reply, so only a
# client that really stopped reading stays past it...
MAX_BEHIND_BYTES = 256 * 1024
# ...for this long. One frame alone can be ~1 MiB (consumers.MAX_SEND_BYTES: a long reply's
# final frame, a sync), which closed healthy clients when it was counted at once; a client on a
# 1 Mbit/s link drains 1 MiB in ~8 s, and Twisted resumes the producer when the buffer is empty.
BEHIND_GRACE_SECONDS = 10.0
# Past this the socket is closed at once, grace or not: four of the largest frames, so a stuck
# socket holds at most ~5 MiB (this + one frame + Twisted's 64 KiB) whatever the reply's rate.
MAX_BEHIND_HARD_BYTES = 4 * 1024 * 1024
# A buffer full for 30 s means the client is gone or frozen (a phone that slept); a live slow
# link drains 64 KiB in far less.
MAX_PAUSED_SECONDS = 30.0
CLOSE_TOO_SLOW = 4008


@implementer(IPushProducer)
class WriteGauge:
    """A push producer that only watches; it forwards every call to the producer it replaced
    (Daphne's HTTP channel, which registered itself before the websocket upgrade)."""

    def __init__(self, inner: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.clock = clock
        self.paused = False
        self.paused_at = 0.0
        self.sent_while_paused = 0
        # When sent_while_paused first passed MAX_BEHIND_BYTES in this pause (None: not yet).
        self.behind_since: float | None = None

    # IPushProducer, called by Twisted on the event loop thread -----------------------------

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's interface
        if not self.paused:
            self.paused = True
            self.paused_at = self.clock()
            self.sent_while_paused = 0
            self.behind_since = None
        if self.inner is not None:
            self.inner.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802
        # Twisted calls this only once its buffer is empty: the client read everything.
        self.paused = False
        self.sent_while_paused = 0
        self.behind_since = None
        if self.inner is not None:
            self.inner.resumeProducing()

    def stopProducing(self) -> None:  # noqa: N802
        self.paused = False
        if self.inner is not None:
            self.inner.stopProducing()

    # Used by the consumer ---------------------------------------------------------------------

    def over_limit(self, size: int) -> bool:
        """Account for a frame of `size` bytes; True when the client has stayed too far behind
        (see the constants above), never for one frame a reading client is still draining."""
        if not self.paused:
            return False
        now = self.clock()
        self.sent_while_paused += size
        if self.sent_while_paused > MAX_BEHIND_BYTES and self.behind_since is None:
            self.behind_since = now
        return (
            self.sent_while_paused > MAX_BEHIND_HARD_BYTES
            or (self.behind_since is not None and now - self.behind_since > BEHIND_GRACE_SECONDS)
            or now - self.paused_at > MAX_PAUSED_SECONDS
        )


def attach(send: Any) -> WriteGauge | None:
    """Register a gauge on the Daphne protocol behind the server's `send`, if there is one.

    Daphne hands each application `partial(server.handle_reply, protocol)`; the protocol is an
    Autobahn/Twisted websocket protocol with `registerProducer`. Under other servers (or the test
    communicator) there is no such transport and the socket simply goes unguarded.
    """
    args = getattr(send, "args", ())
    protocol = args[0] if args else None
    transport = getattr(protocol, "transport", None)
    if protocol is None or transport is None or not hasattr(protocol, "registerProducer"):
        return None
    existing = getattr(transport, "producer", None)
    if existing is not None:
        # Daphne's HTTP channel is the transport's streaming producer from before the upgrade;
        # `producer` is a documented attribute of Twisted's FileDescriptor, so the gauge slots in
        # front of it and forwards.
        if not getattr(transport, "streamingProducer", False):
            return None
        gauge = WriteGauge(existing)
        transport.producer = gauge
        return gauge
    gauge = WriteGauge()
    try:
        protocol.registerProducer(gauge, True)
    except Exception:  # a transport that refuses producers: leave the socket unguarded
        return None
    return gauge


class WriteGaugeMiddleware:
    """Outermost websocket middleware: only here is `send` still Daphne's own (Channels'
    session middleware wraps it), so the gauge is attached here and passed on in the scope."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        gauge = attach(send)
        # The server's own send, for the relay's hot path: Channels' session wrapper adds
        # ~18 µs per frame (measured by `make bench`) and only matters for HTTP responses.
        scope = {**scope, "raw_send": send}
        if gauge is not None:
            scope["write_gauge"] = gauge
        return await self.app(scope, receive, send)
