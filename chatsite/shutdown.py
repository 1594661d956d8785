"""A graceful stop under Daphne: SIGTERM drains the process instead of acting like kill -9.

Before, SIGTERM stopped Twisted's reactor at once: clients saw 1006, up to a flush interval of
text was lost and the reply looked frozen until another process's reaper ended it (~17 s). Now,
on the first SIGTERM the process stops listening (a load balancer sends new connections to the
others), and the relay saves every live reply's text, lets replies that end within
SHUTDOWN_GRACE_SECONDS finish, ends the rest as `server_restart` with their text kept, and
closes its sockets with 1012 (the chat reconnects at once, elsewhere). Then the reactor stops as
before. A second SIGTERM stops at once. systemd: `KillSignal=SIGTERM` (the default) and
`TimeoutStopSec` above the grace period (docs/deploy.md).

Daphne has no lifespan hook for this, so the handler is installed when Twisted's reactor starts
(after Twisted installed its own, which it replaces).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

logger = logging.getLogger(__name__)

_draining = False


def install() -> None:
    """Called by chatsite/asgi.py; does nothing outside Daphne (tests, other servers)."""
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor

    reactor.callWhenRunning(_install_handler)


def _install_handler() -> None:
    loop = asyncio.get_event_loop()  # the asyncio loop under Daphne's reactor
    loop.add_signal_handler(signal.SIGTERM, _on_sigterm)


def _on_sigterm() -> None:
    global _draining
    from twisted.internet import reactor

    if _draining:
        logger.warning("second SIGTERM: stopping now")
        reactor.stop()
        return
    _draining = True
    from django.conf import settings

    grace = settings.SHUTDOWN_GRACE_SECONDS
    logger.warning("SIGTERM: draining (up to %gs for running replies), then stopping", grace)
    _stop_listening(reactor)
    from conversations.relay import relay

    task = asyncio.get_event_loop().create_task(relay.shutdown(grace))
    task.add_done_callback(lambda done: _stop(reactor, done))


def _stop_listening(reactor: Any) -> None:
    from twisted.internet import tcp

    for reader in reactor.getReaders():
        if isinstance(reader, tcp.Port):
            reader.stopListening()


def _stop(reactor: Any, done: asyncio.Task[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        logger.error("draining failed", exc_info=done.exception())
    reactor.stop()
