"""A minimal websocket client (RFC 6455) on `asyncio.Protocol`, for load generation.

Why not a library client: the load generator shares two cores with the servers it measures, so
every microsecond it spends per frame is taken from them and added to the latency it reports. This
client does the least work possible per received frame (server frames are unmasked, so parsing is
a few slices) and stamps the arrival time once per `data_received`, before any parsing. It answers
pings (Daphne pings every 20 s and drops a socket that does not answer within 30 s) and close
frames; it never fragments what it sends.

The blocking helpers at the end build the same handshake for the "client that stops reading"
measurement, which needs a plain socket with a tiny receive buffer.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import Callable

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Called with (payload, arrival time in time.monotonic_ns()) for every complete text message.
OnText = Callable[[bytes, int], None]


def handshake_request(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.3: every client frame is masked)."""
    n = len(payload)
    head = bytearray([0x80 | opcode])
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(0x80 | 127)
        head += n.to_bytes(8, "big")
    mask = os.urandom(4)
    # XOR as one big integer: ~50x faster than a per-byte Python loop.
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return bytes(head) + mask + masked


class HandshakeError(Exception):
    pass


class WebSocketClient(asyncio.Protocol):
    """One client websocket. Await `opened` after `loop.create_connection`; `closed` resolves
    when the connection goes away."""

    def __init__(
        self, host: str, port: int, path: str, headers: dict[str, str], on_text: OnText
    ) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._request = handshake_request(host, port, path, headers)
        self._on_text = on_text
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._is_open = False
        self._fragments: list[bytes] = []
        self._fragment_op = 0

    # asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self._buf += data
        if not self._is_open:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(self._buf[: self._buf.find(b"\r\n")])
            if b" 101 " not in status_line + b" ":
                if not self.opened.done():
                    self.opened.set_exception(HandshakeError(status_line.decode("latin-1")))
                self.abort()
                return
            del self._buf[: end + 4]
            self._is_open = True
            if not self.opened.done():
                self.opened.set_result(None)
        self._parse(now)

    def connection_lost(self, exc: Exception | None) -> None:
        self._is_open = False
        if not self.opened.done():
            self.opened.set_exception(exc or HandshakeError("connection closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    # Frames ------------------------------------------------------------------------------------

    def _parse(self, now: int) -> None:
        buf = self._buf
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80:  # servers never mask; tolerate it anyway by skipping the key
                head += 4
            if size - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            self._frame(b0 & 0x80, b0 & 0x0F, payload, now)
        if pos:
            del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes, now: int) -> None:
        if opcode == OP_TEXT or opcode == OP_BINARY:
            if fin:
                if opcode == OP_TEXT:
                    self._on_text(payload, now)
            else:
                self._fragment_op, self._fragments = opcode, [payload]
        elif opcode == OP_CONT:
            self._fragments.append(payload)
            if fin:
                message = b"".join(self._fragments)
                self._fragments = []
                if self._fragment_op == OP_TEXT:
                    self._on_text(message, now)
        elif opcode == OP_PING:
            self._write(encode_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self._write(encode_frame(OP_CLOSE, payload[:2]))
            if self._transport is not None:
                self._transport.close()

    # Sending -----------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def send_text(self, text: str) -> None:
        self._write(encode_frame(OP_TEXT, text.encode()))

    def close(self) -> None:
        """Send a normal close (1000) and let the server finish the closing handshake."""
        self._write(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big")))

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


async def connect(
    host: str, port: int, path: str, headers: dict[str, str], on_text: OnText, timeout: float = 30.0
) -> WebSocketClient:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(
        loop.create_connection(
            lambda: WebSocketClient(host, port, path, headers, on_text), host, port
        ),
        timeout,
    )
    try:
        await asyncio.wait_for(asyncio.shield(proto.opened), timeout)
    except BaseException:
        proto.abort()
        raise
    return proto


def blocking_connect(
    host: str, port: int, path: str, headers: dict[str, str], *, rcvbuf: int, timeout: float = 30.0
) -> socket.socket:
    """A plain socket, handshake done, with the receive buffer shrunk *before* connecting (the
    TCP window is negotiated from it), for a client that then stops reading."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((host, port))
    sock.sendall(handshake_request(host, port, path, headers))
    response = b""
    while b"\r\n\r\n" not in response:
        # One byte at a time: the handshake is tiny, and reading past it would consume frames
        # this client is supposed to leave unread.
        byte = sock.recv(1)
        if not byte:
            raise HandshakeError("connection closed during handshake")
        response += byte
    status_line = response.split(b"\r\n", 1)[0]
    if b" 101 " not in status_line + b" ":
        sock.close()
        raise HandshakeError(status_line.decode("latin-1"))
    return sock
