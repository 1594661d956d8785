"""A real HTTP/1.1 vendor on loopback, scripted byte by byte, for provider and relay tests.

The server runs `asyncio.start_server` on its own event loop in a background thread, so sync
tests, async tests and a live Daphne server can all talk to it over a real socket. A route answers
with a `Script`: status, headers and a list of raw byte chunks, each its own write + drain, with
`Pause`s between them and an optional `Hangup` (FIN or RST) part-way. Every request is recorded.

    def test_it_streams(fake_vendor):
        fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
            sse(openai_chunk("Hel")), Pause(0.2), sse(openai_chunk("lo")), sse("[DONE]"),
        ))
        ...  # point the agent at fake_vendor.url + "/v1"
        assert fake_vendor.requests[0].json()["stream"] is True

Fixtures: `fake_vendor` (a started `FakeVendor`, stopped after the test) and `refused_url` (an
http URL on loopback where nothing listens).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qs

import pytest

__all__ = [
    "Chunk",
    "FakeVendor",
    "Hangup",
    "Pause",
    "RecordedRequest",
    "Script",
    "fake_vendor",
    "json_script",
    "openai_chunk",
    "openai_tool_call",
    "refused_url",
    "sse",
    "sse_script",
]


@dataclass(frozen=True)
class Pause:
    """Send nothing for `seconds` (longer than the client's read timeout = a hang)."""

    seconds: float


@dataclass(frozen=True)
class Hangup:
    """Stop here without finishing the response: no final chunk for `framing="chunked"`, fewer
    bytes than the Content-Length (which counts every chunk in the script) for `"length"`.
    `reset=True` sends a TCP RST instead of a FIN, which the client sees as a read error."""

    reset: bool = False


Chunk = bytes | Pause | Hangup


@dataclass
class Script:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Sequence[Chunk] = ()
    # "close": no length, the body ends when the connection closes (the simplest stream);
    # "length": Content-Length of all bytes in `chunks`; "chunked": Transfer-Encoding: chunked.
    framing: Literal["close", "length", "chunked"] = "close"
    # Sleep between byte chunks, so consecutive writes reach the client as separate reads.
    chunk_delay: float = 0.0


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    # Set once the client closes its side (it gave up, was cancelled, or finished reading).
    client_closed: threading.Event = field(default_factory=threading.Event, repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Script | Sequence[Script] | Callable[[RecordedRequest], Script | Awaitable[Script]]


class FakeVendor:
    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}
        self._queues: dict[tuple[str, str], list[Script]] = {}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Answer `method path` (query string ignored) with a script, a list of scripts used one
        per request in order, or a callable (sync or async) taking the `RecordedRequest`."""
        key = (method.upper(), path)
        with self._lock:
            self._routes[key] = handler
            if isinstance(handler, Sequence):
                self._queues[key] = list(handler)

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-vendor", daemon=True
        )
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._loop = None

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # Server side, on the vendor's own loop --------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sock: socket.socket = writer.get_extra_info("socket")
        # Without TCP_NODELAY, Nagle holds a small write back until the previous one is acked,
        # merging chunks the test meant to arrive apart.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        watcher: asyncio.Task[None] | None = None
        try:
            request = await _read_request(reader)
            if request is None:
                return
            with self._lock:
                self._requests.append(request)
            watcher = asyncio.create_task(_watch_close(reader, request))
            script = await self._script_for(request)
            await _send(writer, sock, script)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if watcher is not None:
                watcher.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _script_for(self, request: RecordedRequest) -> Script:
        key = (request.method, request.path)
        with self._lock:
            handler = self._routes.get(key)
            queue = self._queues.get(key)
            if queue is not None:
                handler = queue.pop(0) if queue else None
        if handler is None:
            reason = "no route" if queue is None else "no scripted response left"
            return json_script(
                {"error": {"message": f"fakevendor: {reason} for {key[0]} {key[1]}"}},
                status=404 if queue is None else 500,
            )
        if isinstance(handler, Script):
            return handler
        assert callable(handler)
        script = handler(request)
        if inspect.isawaitable(script):
            script = await script
        return script


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        body_bytes = bytes(body)
    else:
        body_bytes = await reader.readexactly(int(headers.get("content-length", "0")))
    path, _, query = target.partition("?")
    return RecordedRequest(
        method=method.upper(),
        path=path,
        query=parse_qs(query),
        headers=headers,
        body=body_bytes,
    )


async def _watch_close(reader: asyncio.StreamReader, request: RecordedRequest) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
    request.client_closed.set()


async def _send(writer: asyncio.StreamWriter, sock: socket.socket, script: Script) -> None:
    try:
        phrase = HTTPStatus(script.status).phrase
    except ValueError:
        phrase = "Unknown"
    headers = {name.lower(): value for name, value in script.headers.items()}
    headers.setdefault("connection", "close")
    if script.framing == "length":
        total = sum(len(chunk) for chunk in script.chunks if isinstance(chunk, bytes))
        headers.setdefault("content-length", str(total))
    elif script.framing == "chunked":
        headers["transfer-encoding"] = "chunked"
    head = f"HTTP/1.1 {script.status} {phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    writer.write(head.encode("latin-1") + b"\r\n")
    await writer.drain()
    for chunk in script.chunks:
        if isinstance(chunk, Pause):
            await asyncio.sleep(chunk.seconds)
            continue
        if isinstance(chunk, Hangup):
            if chunk.reset:
                # Linger on with a zero timeout makes close() send RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            return
        if not chunk:
            continue
        if script.framing == "chunked":
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        writer.write(chunk)
        await writer.drain()
        if script.chunk_delay:
            await asyncio.sleep(script.chunk_delay)
    if script.framing == "chunked":
        writer.write(b"0\r\n\r\n")
        await writer.drain()


# Script builders -------------------------------------------------------------------------------


def sse_script(
    *chunks: Chunk,
    status: int = 200,
    headers: dict[str, str] | None = None,
    framing: Literal["close", "length", "chunked"] = "close",
    chunk_delay: float = 0.0,
) -> Script:
    all_headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    all_headers.update(headers or {})
    return Script(
        status=status,
        headers=all_headers,
        chunks=list(chunks),
        framing=framing,
        chunk_delay=chunk_delay,
    )


def json_script(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Script:
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return Script(
        status=status,
        headers=all_headers,
        chunks=[json.dumps(body).encode()],
        framing="length",
    )


def sse(
    data: Any,
    event: str | None = None,
    *,
    id: str | None = None,
    crlf: bool = False,
) -> bytes:
    """One SSE event; `data` that is not a str is JSON-encoded, a multi-line str becomes several
    `data:` lines."""
    text = data if isinstance(data, str) else json.dumps(data)
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in text.split("\n"))
    newline = "\r\n" if crlf else "\n"
    return (newline.join(lines) + newline + newline).encode()


_UNSET: Any = object()


def openai_chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    reasoning_content: str | None = None,
    usage: dict[str, int] | None = None,
    choices: Any = _UNSET,
    model: str = "gpt-test",
) -> dict[str, Any]:
    """A `chat.completion.chunk`; pass `choices=[]` or `choices=None` with `usage` for the
    final usage chunk."""
    if choices is _UNSET:
        delta: dict[str, Any] = {}
        if role is not None:
            delta["role"] = role
        if content is not None:
            delta["content"] = content
        if reasoning_content is not None:
            delta["reasoning_content"] = reasoning_content
        if tool_calls is not None:
            delta["tool_calls"] = tool_calls
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def openai_tool_call(
    index: int,
    *,
    id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
) -> dict[str, Any]:
    """One `tool_calls[]` fragment: id and name only in the first fragment of a call."""
    fragment: dict[str, Any] = {"index": index}
    function: dict[str, Any] = {}
    if id is not None:
        fragment["id"] = id
        fragment["type"] = "function"
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        fragment["function"] = function
    return fragment


# Fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def fake_vendor() -> Iterator[FakeVendor]:
    vendor = FakeVendor()
    vendor.start()
    try:
        yield vendor
    finally:
        vendor.stop()


@pytest.fixture
def refused_url() -> str:
    # A port just released by the OS: nothing listens there, so connecting is refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
