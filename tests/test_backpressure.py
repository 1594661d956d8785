"""A client that stops reading costs bounded server memory: the socket is closed (4008) once it
is too far behind, and the reply goes on and is stored. Real Daphne, real TCP."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from conversations.backpressure import BEHIND_GRACE_SECONDS, MAX_BEHIND_HARD_BYTES, WriteGauge
from conversations.consumers import MAX_SEND_BYTES, fit_sync
from tests.fakevendor import FakeVendor, openai_chunk, sse, sse_script
from tests.livesrv import LiveServer, live_server

CHUNK = "x" * 4000 + " "
# ~12 MB of reply: more than the kernel's socket buffers on the way (4 MiB send, 4 KiB receive
# here), so Twisted's own buffer fills and the gauge must act.
CHUNKS = 3000
NO_LIMITS = ("RUNS_PER_USER", "SENDS_PER_MINUTE", "WRITES_PER_MINUTE", "SOCKETS_PER_USER")


@pytest.fixture
def vendor() -> Iterator[FakeVendor]:
    fake = FakeVendor()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def server(tmp_path: Path, vendor: FakeVendor) -> Iterator[LiveServer]:
    # One user, many sockets and replies: the per-user limits are off (test_ratelimit.py); a
    # 12 MB reply is past MAX_REPLY_CHARS, so the cap is raised.
    env = {f"RATE_LIMIT_{name}": "0" for name in NO_LIMITS} | {"MAX_REPLY_CHARS": "100000000"}
    with live_server(tmp_path, env) as srv:
        yield srv


def seed(server: LiveServer, vendor: FakeVendor) -> tuple[str, str]:
    session = server.session_for("erin")
    conversation_id = server.shell(
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Agent, Conversation\n"
        "a = Agent.objects.create(slug='big', name='big', provider='openai', "
        f"base_url={vendor.url + '/v1'!r}, options={{'model': 'm'}})\n"
        "u = get_user_model().objects.get(username='erin')\n"
        "print(Conversation.objects.create(owner=u, agent=a).pk)"
    )
    return session, conversation_id


def test_it_counts_only_while_the_buffer_is_full():
    now = [0.0]
    gauge = WriteGauge(clock=lambda: now[0])
    assert not gauge.over_limit(10**9)  # not paused: Twisted's buffer has room
    gauge.pauseProducing()
    assert not gauge.over_limit(200 * 1024)
    # Over MAX_BEHIND_BYTES, but one large frame is not a client that stopped reading (§7)...
    assert not gauge.over_limit(900 * 1024)
    now[0] = BEHIND_GRACE_SECONDS - 1
    assert not gauge.over_limit(10)
    # ...until the backlog has stayed over it for the grace period.
    now[0] = BEHIND_GRACE_SECONDS + 1
    assert gauge.over_limit(10)
    gauge.resumeProducing()  # the client read everything
    assert not gauge.over_limit(10**6)
    gauge.pauseProducing()
    assert not gauge.over_limit(10**6)
    now[0] += BEHIND_GRACE_SECONDS - 1
    assert not gauge.over_limit(10**6)
    assert gauge.over_limit(MAX_BEHIND_HARD_BYTES)  # past the hard cap: at once


@pytest.mark.process
async def test_it_drops_a_client_that_stopped_reading_and_keeps_the_reply(
    server: LiveServer, vendor: FakeVendor
):
    session, conversation_id = seed(server, vendor)
    vendor.add_route("POST", "/v1/chat/completions", sse_script(
        *[sse(openai_chunk(CHUNK)) for _ in range(CHUNKS)], sse("[DONE]")))
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", server.port))
    url = f"ws://127.0.0.1:{server.port}/ws/conversations/{conversation_id}/"
    # max_queue=1: the client library stops reading the socket once one frame is unread.
    slow = await connect(url, sock=raw, origin=f"http://127.0.0.1:{server.port}",  # type: ignore[arg-type]
                         additional_headers={"Cookie": f"sessionid={session}"}, max_queue=1)
    await slow.recv()  # conversation.sync
    await slow.send(json.dumps({"type": "message.send", "content": "a lot please"}))
    # Never read again. The server must give up on this socket and still finish the reply.
    deadline = time.monotonic() + 60
    while "client too slow" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        await asyncio.sleep(0.2)
    # The run went on without the socket: the whole reply is stored.
    async with httpx.AsyncClient(cookies={"sessionid": session}) as client:
        while True:
            data = (await client.get(f"{server.url}/api/v1/conversations/{conversation_id}")
                    ).json()
            reply = data["messages"][-1]
            if reply["status"] != "streaming":
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)
    assert reply["status"] == "completed"
    assert reply["content"] == CHUNK * CHUNKS
    assert "Traceback" not in server.log.read_text()
    slow.transport.abort()


def test_it_fits_the_sync_frame_under_the_websocket_limit():
    messages = [{"id": str(i), "content": "y" * 50_000} for i in range(100)]
    text = fit_sync({"type": "conversation.sync", "messages": messages,
                     "messages_complete": True, "active_run": None})
    assert isinstance(text, str) and len(text.encode()) <= MAX_SEND_BYTES
    frame = json.loads(text)
    assert frame["messages_complete"] is False
    assert frame["messages"][-1]["id"] == "99"  # the newest are kept
    assert 10 <= len(frame["messages"]) < 100
