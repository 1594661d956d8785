"""A paced OpenAI-compatible vendor for the benchmark: `POST .../chat/completions` streams SSE.

Run as its own process (`python -m bench.vendor`); it prints `LISTENING <port>` when ready.

The last user message says what to stream, e.g. `bench n=250 rate=50 ts=1 chars=0`:
`n` deltas at `rate` per second, each its own network write (the worst case for a relay: no
vendor-side batching). With `ts=1` each delta's text is `T<time.monotonic_ns()>; `, stamped right
before the write, so the receiving browser socket on this machine measures vendor-write ->
browser-receive latency from the text alone (CLOCK_MONOTONIC is system-wide). `chars` pads each
delta with that many extra characters (or, with `ts=0`, is the whole delta).

Pacing is by absolute schedule (`t0 + i / rate`) with one `loop.call_at` timer per stream, not a
coroutine per stream: at 10,000 deltas/s this process shares the two cores with the servers under
test, and a timer callback is the cheapest way to wake up on time. A late wake-up writes every
overdue delta, each its own write, so the rate holds; latency is stamped per write, so vendor
lateness never shows up as relay latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import socket
import sys
import time
from typing import Any

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)
CHUNK_PREFIX = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench","choices":[{"index":0,"delta":{"content":"'
)
CHUNK_SUFFIX = b'"},"logprobs":null,"finish_reason":null}]}\n\n'
SPEC_RE = re.compile(r"(\w+)=(\d+)")


def parse_spec(text: str) -> dict[str, int]:
    spec = {"n": 250, "rate": 50, "ts": 1, "chars": 0}
    spec.update({k: int(v) for k, v in SPEC_RE.findall(text)})
    return spec


def _tail(n: int) -> bytes:
    finish = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench",
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
    }
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10},
    }
    return (f"data: {json.dumps(finish)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n").encode()


class VendorProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.streaming = False
        self.paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.i = 0
        self.n = 0
        self.t0 = 0.0
        self.interval = 0.0
        self.ts = True
        self.pad = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Each delta must leave as its own segment, as a real vendor's token-by-token writes do.
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.streaming:
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1")
        match = re.search(r"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4 : end + 4 + length])
        self.streaming = True
        self._respond(head.split(" ", 2)[:2], body)

    def _respond(self, request_line: list[str], body: bytes) -> None:
        assert self.transport is not None
        method, path = (request_line + ["", ""])[:2]
        if method != "POST" or not path.endswith("/chat/completions"):
            self.transport.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()
            return
        try:
            request: Any = json.loads(body)
            text = str(request["messages"][-1]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            text = ""
        spec = parse_spec(text)
        self.n = max(0, spec["n"])
        self.interval = 1.0 / max(1, spec["rate"])
        self.ts = bool(spec["ts"])
        self.pad = b"x" * (spec["chars"] if self.ts else max(1, spec["chars"]))
        self.transport.write(SSE_HEAD)
        self.t0 = self.loop.time()
        self.timer = self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.paused:
            return
        now = self.loop.time()
        while self.i < self.n and self.t0 + self.i * self.interval <= now:
            if self.ts:
                text = b"T%d; %s" % (time.monotonic_ns(), self.pad)
            else:
                text = self.pad
            transport.write(CHUNK_PREFIX + text + CHUNK_SUFFIX)
            self.i += 1
            if self.paused:
                return
        if self.i >= self.n:
            transport.write(_tail(self.n))
            transport.close()
            return
        self.timer = self.loop.call_at(self.t0 + self.i * self.interval, self._tick)

    # Flow control: if a relay stops reading us, stop producing instead of buffering here.
    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.streaming:
            self.timer = self.loop.call_soon(self._tick)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(VendorProtocol, "127.0.0.1", port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"LISTENING {bound}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
