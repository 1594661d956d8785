"""A healthy client is never closed as too slow (4008) for one large frame (issue 9 §7): a
client that reads, if slowly, gets a ~0.9 MB frame sent while the server's write buffer is full,
and the reply's final frame. Real Daphne, real TCP; the client that stopped reading is still
closed (tests/test_backpressure.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Origin
from websockets.uri import parse_uri

from tests.fakevendor import FakeVendor, openai_chunk, sse, sse_script
from tests.livesrv import LiveServer
from tests.test_backpressure import seed, server, vendor  # noqa: F401 - fixtures
from tests.wsclient import assemble

pytestmark = [pytest.mark.scaleout]

# ~3 MB of small deltas first: on loopback the kernel took ~2.8 MB for the socket (tcp_wmem
# up to 4 MiB) before Twisted's own buffer filled and paused the producer (the gauge).
PIECE = "y" * 3999 + " "
PIECES = 750
# Then one ~0.9 MB delta frame, sent while the buffer is paused: alone it is over the gauge's
# 256 KiB limit (MAX_BEHIND_BYTES), which closed this healthy client with 4008.
BIG = "z" * 900_000
# A client on a ~1.3 MB/s link: 64 KiB every 50 ms.
READ_BYTES = 64 * 1024
READ_EVERY = 0.05


def tail(live: LiveServer) -> str:
    return "\n" + live.log.read_text()[-2000:]


class SlowClient:
    """A websocket client that reads at most READ_BYTES per READ_EVERY (sans-I/O websockets on
    a plain socket with a small receive buffer), so the server's write buffer fills."""

    def __init__(self, live: LiveServer, conversation_id: str, session: str) -> None:
        self.port = live.port
        self.url = f"ws://127.0.0.1:{live.port}/ws/conversations/{conversation_id}/"
        self.origin = Origin(f"http://127.0.0.1:{live.port}")
        self.session = session
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READ_BYTES)
        self.protocol = ClientProtocol(parse_uri(self.url), origin=self.origin)
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._parts: list[bytes] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        request = self.protocol.connect()
        request.headers["Cookie"] = f"sessionid={self.session}"
        self.protocol.send_request(request)
        await self._flush()

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        for data in self.protocol.data_to_send():
            if data:
                await loop.sock_sendall(self.sock, data)

    async def send(self, frame: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(frame).encode())
        await self._flush()

    async def read_some(self) -> bool:
        """One slow read; False once the connection is closed."""
        loop = asyncio.get_running_loop()
        try:
            data = await loop.sock_recv(self.sock, READ_BYTES)
        except ConnectionResetError:  # the server aborted the socket
            self.close_code = 1006
            return False
        if not data:
            self.protocol.receive_eof()
        else:
            self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                assert event.status_code == 101, event
            elif isinstance(event, Frame):
                self._frame(event)
        await self._flush()
        return bool(data) and self.close_code is None

    def _frame(self, frame: Frame) -> None:
        if frame.opcode == Opcode.CLOSE:
            self.close_code = self.protocol.close_rcvd.code if self.protocol.close_rcvd else 1005
        elif frame.opcode in (Opcode.TEXT, Opcode.CONT):
            self._parts.append(frame.data)
            if frame.fin:
                self.messages.append(json.loads(b"".join(self._parts)))
                self._parts = []


async def test_it_keeps_a_slow_reader_through_a_large_final_frame(
    server: LiveServer, vendor: FakeVendor  # noqa: F811 - fixtures
):
    session, conversation_id = seed(server, vendor)
    vendor.add_route("POST", "/v1/chat/completions", sse_script(
        *[sse(openai_chunk(PIECE)) for _ in range(PIECES)], sse(openai_chunk(BIG)),
        sse("[DONE]")))
    client = SlowClient(server, conversation_id, session)
    await client.open()
    while not client.messages:
        assert await client.read_some()
    assert client.messages[0]["type"] == "conversation.sync"
    await client.send({"type": "message.send", "content": "a long one please"})
    deadline = time.monotonic() + 60
    while not any(m["type"].startswith("message.") and m["type"] not in (
            "message.created", "message.delta") for m in client.messages):
        assert time.monotonic() < deadline
        assert await client.read_some(), (client.close_code, tail(server))
        await asyncio.sleep(READ_EVERY)
    final = client.messages[-1]
    assert final["type"] == "message.completed", final["type"]
    expected = PIECE * PIECES + BIG
    assert assemble(client.messages, final["message"]["id"]) == expected
    # Over 1 MiB with its content: the final frame carries the status only (issue 9 §8).
    assert final["message"].get("content_omitted") is True
    assert client.close_code is None
    assert "client too slow" not in server.log.read_text()
    client.sock.close()
