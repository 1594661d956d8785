"""Issue 9's load proof: Redis down 6 s under 30 streaming conversations. Two real Daphne
processes on PostgreSQL and a private redis-server; every reply runs on process A, with a second
viewer of each conversation on process B. Nothing of the stored text is lost, every viewer ends
with the full text, a handshake during the outage succeeds, and a stop from B reaches a reply on
A right after Redis is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.cluster import (
    EXPECTED,
    SERVER_ENV,
    deltas_seen,
    recv,
    recv_until,
    redis_server,
    slow_stream,
    socket_to,
)
from tests.fakevendor import FakeVendor
from tests.livesrv import LiveServer, cluster, free_port
from tests.wsclient import assemble

pytestmark = pytest.mark.scaleout

CONVERSATIONS = 30
# 60 deltas 0.133 s apart: each reply streams for ~8 s, longer than the 6 s outage.
PAUSE = 8 / 60
OUTAGE = 6.0
FINAL = ("message.completed", "message.failed", "message.canceled")


def create_conversations(admin: LiveServer, vendor: FakeVendor, count: int) -> list[str]:
    """`count` conversations of dana's with one agent on the fake vendor, in one shell call
    (tests/cluster.py's `seed` costs a process start per conversation)."""
    slug = f"oai-{uuid.uuid4().hex[:6]}"
    out = admin.shell(
        "import json\n"
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Agent, Conversation\n"
        f"a = Agent.objects.create(slug={slug!r}, name='o', provider='openai', "
        f"base_url={vendor.url + '/v1'!r}, options={{'model': 'm'}})\n"
        "u, _ = get_user_model().objects.get_or_create(username='dana')\n"
        f"print(json.dumps([str(Conversation.objects.create(owner=u, agent=a).pk) "
        f"for _ in range({count})]))"
    )
    return list(json.loads(out))


def stored_replies(admin: LiveServer, conversation_ids: list[str]) -> dict[str, list[Any]]:
    """Each conversation's assistant messages as [status, content], read from the database."""
    out = admin.shell(
        "import json\n"
        "from conversations.models import Message\n"
        f"ids = {conversation_ids!r}\n"
        "r = {i: [] for i in ids}\n"
        "for m in Message.objects.filter(conversation_id__in=ids, role='assistant')"
        ".order_by('seq'):\n"
        "    r[str(m.conversation_id)].append([m.status, m.content])\n"
        "print(json.dumps(r))"
    )
    return dict(json.loads(out))


async def collect(ws: ClientConnection, frames: list[dict[str, Any]], timeout: float) -> str:
    """Frames into `frames` until a reply's final frame ("final"), a close ("closed") or
    `timeout` seconds of nothing ("silent")."""
    while True:
        try:
            frame = await recv(ws, timeout)
        except TimeoutError:
            return "silent"
        except ConnectionClosed:
            return "closed"
        frames.append(frame)
        if frame["type"] in FINAL:
            return "final"


async def test_it_loses_nothing_when_redis_is_down_6_s_under_30_streaming_conversations(
    migrated: LiveServer, database_url: str, vendor: FakeVendor, tmp_path: Path,
):
    session = migrated.session_for("dana")
    # The last conversation is for the stop right after the outage.
    ids = create_conversations(migrated, vendor, CONVERSATIONS + 1)
    ids, cancel_id = ids[:CONVERSATIONS], ids[CONVERSATIONS]
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(PAUSE))
    port = free_port()
    env = {**SERVER_ENV, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    with redis_server(port) as first, cluster(tmp_path, database_url, 2, env) as (a, b):
        views_a = [await socket_to(a, session, c) for c in ids]
        views_b = [await socket_to(b, session, c) for c in ids]
        for ws in views_a + views_b:
            assert (await recv(ws))["type"] == "conversation.sync"
        cancel_a = await socket_to(a, session, cancel_id)
        cancel_b = await socket_to(b, session, cancel_id)
        await recv(cancel_a), await recv(cancel_b)

        seen_a: list[list[dict[str, Any]]] = [[] for _ in ids]
        seen_b: list[list[dict[str, Any]]] = [[] for _ in ids]
        for i, ws in enumerate(views_a):
            await ws.send(json.dumps({"type": "message.send", "content": f"m{i}"}))
        tasks_a = [asyncio.create_task(collect(ws, seen_a[i], 30))
                   for i, ws in enumerate(views_a)]
        tasks_b = [asyncio.create_task(collect(ws, seen_b[i], 30))
                   for i, ws in enumerate(views_b)]
        # A few deltas into every reply before Redis goes.
        deadline = time.monotonic() + 20
        while min(deltas_seen(frames) for frames in seen_a) < 3:
            assert time.monotonic() < deadline, [deltas_seen(f) for f in seen_a]
            await asyncio.sleep(0.05)
        down_at = time.monotonic()
        first.kill()
        first.wait(timeout=10)

        # Redis is down: a new tab's handshake succeeds and it is synced from the database.
        await asyncio.sleep(1)
        heard_b = sum(len(frames) for frames in seen_b)
        late = await socket_to(b, session, ids[0])
        sync = await recv(late)
        assert sync["type"] == "conversation.sync"
        assert ("user", "m0") in [(m["role"], m["content"]) for m in sync["messages"]]
        await late.close()
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        assert not any(t.done() for t in tasks_a), "a reply ended before Redis came back"
        # The outage is real: B's viewers heard nothing of A's replies while Redis was down.
        assert sum(len(frames) for frames in seen_b) == heard_b

        with redis_server(port):
            # Right after Redis is back: a stop from B reaches a new reply running on A.
            await cancel_a.send(json.dumps({"type": "message.send", "content": "stop me"}))
            started = await recv_until(cancel_a, "message.delta", timeout=10)
            asked = time.monotonic()
            await cancel_b.send(json.dumps({"type": "run.cancel"}))
            canceled = await recv_until(cancel_a, *FINAL, timeout=15)
            took = time.monotonic() - asked
            assert canceled[-1]["type"] == "message.canceled", canceled[-1]
            assert took < 10, f"the stop took {took:.1f} s"
            stopped = canceled[-1]["message"]
            assert 0 < len(stopped["content"]) < len(EXPECTED)
            assert assemble(started + canceled, stopped["id"]) == stopped["content"]

            # Every reply completes; A's viewers (same process) saw every delta.
            assert await asyncio.gather(*tasks_a) == ["final"] * CONVERSATIONS
            for frames in seen_a:
                final = frames[-1]
                assert final["type"] == "message.completed", final
                assert final["message"]["content"] == EXPECTED
                assert assemble(frames, final["message"]["id"]) == EXPECTED
            # B's viewers may have missed batches during the outage: each ends with the full
            # text from its final frame, or else (silent or closed, as the UI would) from the
            # sync of a new socket.
            ends_b = await asyncio.gather(*tasks_b)
            resynced = gapped = 0
            for i, end in enumerate(ends_b):
                if end == "final":
                    final = seen_b[i][-1]
                    assert final["type"] == "message.completed", final
                    assert final["message"]["content"] == EXPECTED
                    try:
                        assemble(seen_b[i], final["message"]["id"])
                    except AssertionError:
                        gapped += 1
                    continue
                resynced += 1
                again = await socket_to(b, session, ids[i])
                sync = await recv(again)
                last = sync["messages"][-1]
                assert (last["role"], last["status"], last["content"]) == (
                    "assistant", "completed", EXPECTED)
                assert sync.get("active_run") is None
                await again.close()
            print(f"B viewers: {gapped} missed batches, {resynced} needed a resync, of "
                  f"{CONVERSATIONS}; the stop took {took:.2f} s")

            # 0 deltas lost in the database.
            stored = stored_replies(migrated, [*ids, cancel_id])
            for conversation_id in ids:
                assert stored[conversation_id] == [["completed", EXPECTED]], conversation_id
            assert stored[cancel_id] == [["canceled", stopped["content"]]]

            for ws in [*views_a, *views_b, cancel_a, cancel_b]:
                with contextlib.suppress(Exception):
                    await ws.close()
            logs = [server.log.read_text() for server in (a, b)]
    for text in logs:
        assert "Exception inside application" not in text, text[-3000:]
