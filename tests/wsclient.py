"""Helpers for websocket tests: a logged-in WebsocketCommunicator on the real ASGI app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.testing import WebsocketCommunicator
from django.test import Client

from chatsite.asgi import application
from conversations.relay import relay

# The test client's host (in ALLOWED_HOSTS) and its own origin, which the Origin check accepts.
HOST = b"testserver"
ORIGIN = b"http://testserver"


class Socket:
    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.comm = communicator
        self.sync: dict[str, Any] = {}
        # `presence` frames arrive whenever a socket of the conversation opens or closes: kept
        # here (the latest users list) rather than returned, so tests read the frames they wait for.
        self.presence: list[dict[str, Any]] | None = None

    async def send(self, frame: Any) -> None:
        await self.comm.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = json.loads(await self.comm.receive_from(
                timeout=max(0.01, deadline - loop.time())))
            if not (isinstance(frame, dict) and frame.get("type") == "presence"):
                return frame
            self.presence = frame["users"]

    async def recv_until(self, *types: str, timeout: float = 10) -> list[dict[str, Any]]:
        """Frames up to and including the first one whose type is in `types`."""
        frames: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv(timeout=max(0.01, deadline - loop.time()))
            frames.append(frame)
            if frame["type"] in types:
                return frames

    async def assert_usable(self) -> None:
        await self.send({"type": "ping"})
        assert await self.recv() == {"type": "pong"}

    async def close(self) -> None:
        await self.comm.disconnect()


def session_cookie(client: Client) -> bytes:
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def open_socket(
    client: Client | None, conversation_id: Any, *, origin: bytes | None = ORIGIN
) -> tuple[bool, Socket]:
    headers = [(b"host", HOST)]
    if origin is not None:
        headers.append((b"origin", origin))
    if client is not None:
        headers.append((b"cookie", session_cookie(client)))
    comm = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers)
    connected, _ = await comm.connect(timeout=5)
    sock = Socket(comm)
    if connected:
        sock.sync = await sock.recv()
    return connected, sock


async def wait_for_no_runs(timeout: float = 5.0) -> None:
    """Wait for every reply of this process to end (its task gone from `relay.runs`), polling
    every 10 ms: a test's database checks and its teardown's flush come after the run's final
    writes."""
    for _ in range(round(timeout / 0.01)):
        if not relay.runs:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("runs still active")


def assemble(frames: list[dict[str, Any]], message_id: str, start: str = "") -> str:
    """Splice `message.delta` frames by offset, asserting there is no gap."""
    text = start
    for f in frames:
        if f["type"] != "message.delta" or f["message_id"] != message_id:
            continue
        offset, delta = f["offset"], f["delta"]
        assert offset <= len(text), f"gap: have {len(text)} chars, delta starts at {offset}"
        if offset + len(delta) > len(text):
            text = text[:offset] + delta
    return text
