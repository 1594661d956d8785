"""The ceiling: a minimal ASGI websocket relay with no Django, no Channels, no channel layer.

Served by Daphne exactly like chatsite (`daphne bench.bare_relay:application`), it reads the same
fake vendor's SSE stream with httpx + httpx-sse and does one `websocket.send` per event, so the
difference between it and chatsite under the same load is what chatsite's design costs.

- `ws://.../ws/bare/<spec>/`: on connect, opens one vendor stream for `<spec>` (e.g.
  `n=1000,rate=50,ts=1`).
- `ws://.../ws/bare/`: opens nothing on connect (an idle socket); each client frame
  `{"type": "message.send", "content": "bench n=250 rate=50"}` streams one reply, as chatsite's
  protocol does, so the load generator drives both servers with the same frames.

Frames sent mirror chatsite's protocol closely enough that the same client parses both: a tiny
`conversation.sync` on connect, then `message.delta` (with `offset`) per vendor event and
`message.completed` at the end. The vendor URL comes from `BENCH_VENDOR_URL`
(e.g. `http://127.0.0.1:9000/v1`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from httpx_sse import aconnect_sse

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    """One pooled client for the process: the cheapest way to call a vendor, which is the point
    of a ceiling. Timeouts are explicit for the same reason as in chatsite (a 5 s default read
    timeout would cut long streams)."""
    global _client
    if _client is None:
        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, read=120.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )
    return _client


def vendor_url() -> str:
    return os.environ["BENCH_VENDOR_URL"].rstrip("/") + "/chat/completions"


async def relay_stream(send: Send, spec: str) -> None:
    message_id = str(uuid.uuid4())
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": spec}]}
    offset = 0
    async with aconnect_sse(client(), "POST", vendor_url(), json=body) as source:
        async for sse in source.aiter_sse():
            if sse.data == "[DONE]":
                break
            chunk = json.loads(sse.data)
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if not text:
                    continue
                frame = {
                    "type": "message.delta",
                    "message_id": message_id,
                    "offset": offset,
                    "delta": text,
                }
                offset += len(text)
                await send(
                    {"type": "websocket.send", "text": json.dumps(frame, ensure_ascii=False)}
                )
    await send(
        {
            "type": "websocket.send",
            "text": json.dumps(
                {"type": "message.completed", "message": {"id": message_id, "status": "completed"}}
            ),
        }
    )


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": '{"type": "conversation.sync"}'})
    tasks: set[asyncio.Task[None]] = set()

    def start(spec: str) -> None:
        task = asyncio.create_task(relay_stream(send, spec))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    spec = scope["path"].removeprefix("/ws/bare/").strip("/")
    if spec:
        start(spec.replace(",", " "))
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            if event["type"] == "websocket.receive" and event.get("text"):
                with contextlib.suppress(ValueError, AttributeError):
                    frame = json.loads(event["text"])
                    if frame.get("type") == "message.send":
                        start(str(frame.get("content", "")))
    finally:
        for task in tasks:
            task.cancel()


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"bare relay: websockets only\n"})
