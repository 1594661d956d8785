"""Several Daphne processes sharing real PostgreSQL and Redis: every promise of the single
process holds across processes (fan-out, stop, reconnect elsewhere, a crashed process, Redis
restarting). Needs PostgreSQL at 127.0.0.1:5432 and `redis-server` (.ci/run starts them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import (
    EXPECTED,
    SERVER_ENV,
    deltas_seen,
    recv,
    recv_until,
    redis_server,
    seed,
    slow_stream,
    socket_to,
)
from tests.fakevendor import FakeVendor
from tests.livesrv import LiveServer, cluster, free_port
from tests.wsclient import assemble

pytestmark = pytest.mark.scaleout


async def test_it_streams_to_a_tab_on_another_process_which_can_stop_it(
    pair: list[LiveServer], migrated: LiveServer, vendor: FakeVendor
):
    a, b = pair
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream())
    ws_a = await socket_to(a, session, conversation_id)
    ws_b = await socket_to(b, session, conversation_id)
    await recv(ws_a), await recv(ws_b)  # conversation.sync
    await ws_a.send(json.dumps({"type": "message.send", "content": "hi", "client_id": "k1"}))
    seen_b: list[dict[str, Any]] = []
    while deltas_seen(seen_b) < 3:
        seen_b.append(await recv(ws_b))
    created = [f["message"]["role"] for f in seen_b if f["type"] == "message.created"]
    assert created == ["user", "assistant"]
    asked = time.monotonic()
    await ws_b.send(json.dumps({"type": "run.cancel"}))
    seen_b += await recv_until(ws_b, "message.canceled")
    assert time.monotonic() - asked < 1.0
    final = seen_b[-1]["message"]
    assert final["status"] == "canceled"
    assert 0 < len(final["content"]) < len(EXPECTED)
    assert EXPECTED.startswith(final["content"])
    assert assemble(seen_b, final["id"]) == final["content"]  # no gap, no duplicate
    seen_a = await recv_until(ws_a, "message.canceled")
    assert assemble(seen_a, final["id"]) == final["content"]
    assert vendor.requests[-1].client_closed.wait(5)
    await ws_a.close()
    await ws_b.close()


async def test_it_streams_the_whole_reply_to_both_processes(
    pair: list[LiveServer], migrated: LiveServer, vendor: FakeVendor
):
    a, b = pair
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.02))
    ws_a = await socket_to(a, session, conversation_id)
    ws_b = await socket_to(b, session, conversation_id)
    await recv(ws_a), await recv(ws_b)
    await ws_a.send(json.dumps({"type": "message.send", "content": "hello"}))
    seen_a = await recv_until(ws_a, "message.completed")
    seen_b = await recv_until(ws_b, "message.completed")
    reply_id = seen_a[-1]["message"]["id"]
    assert assemble(seen_a, reply_id) == assemble(seen_b, reply_id) == EXPECTED
    assert seen_b[-1]["message"]["content"] == EXPECTED
    # Coalesced for the other process: fewer frames than vendor deltas.
    assert deltas_seen(seen_b) < deltas_seen(seen_a)
    await ws_a.close()
    await ws_b.close()


async def test_it_resumes_on_another_process_after_a_reconnect(
    pair: list[LiveServer], migrated: LiveServer, vendor: FakeVendor
):
    a, b = pair
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream())
    ws_a = await socket_to(a, session, conversation_id)
    await recv(ws_a)
    await ws_a.send(json.dumps({"type": "message.send", "content": "hello"}))
    seen_a: list[dict[str, Any]] = []
    while deltas_seen(seen_a) < 10:
        seen_a.append(await recv(ws_a))
    await ws_a.close()
    ws_b = await socket_to(b, session, conversation_id)
    sync = await recv(ws_b)
    assert sync["type"] == "conversation.sync", sync
    active = sync["active_run"]
    reply_id = active["message_id"]
    had = assemble(seen_a, reply_id)
    # The live text from process A (not the ~0.3 s old stored copy): at least what A sent.
    assert active["content"].startswith(had)
    rest = await recv_until(ws_b, "message.completed")
    assert assemble(rest, reply_id, start=active["content"]) == EXPECTED
    assert rest[-1]["message"]["content"] == EXPECTED
    await ws_b.close()


async def test_it_fails_the_reply_of_a_crashed_process(
    migrated: LiveServer, database_url: str, shared_redis: str, vendor: FakeVendor,
    tmp_path: Path,
):
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.1))
    env = {**SERVER_ENV, "REDIS_URL": shared_redis}
    with cluster(tmp_path, database_url, 2, env) as (a, b):
        ws_a = await socket_to(a, session, conversation_id)
        ws_b = await socket_to(b, session, conversation_id)
        await recv(ws_a), await recv(ws_b)
        await ws_a.send(json.dumps({"type": "message.send", "content": "hello"}))
        seen_b: list[dict[str, Any]] = []
        while deltas_seen(seen_b) < 10:
            seen_b.append(await recv(ws_b))
        await asyncio.sleep(0.5)  # at least one flush of the text
        a.kill()
        failed = await recv_until(ws_b, "message.failed", timeout=20)
        final = failed[-1]["message"]
        assert final["error"]["code"] == "server_restart"
        assert final["content"] and EXPECTED.startswith(final["content"])
        # A new message works on the surviving process.
        await ws_b.send(json.dumps({"type": "message.send", "content": "again"}))
        vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.0))
        done = await recv_until(ws_b, "message.completed")
        assert done[-1]["message"]["content"] == EXPECTED
        await ws_b.close()
        with contextlib.suppress(Exception):
            await ws_a.close()


async def test_it_survives_redis_restarting_mid_reply(
    migrated: LiveServer, database_url: str, vendor: FakeVendor, tmp_path: Path
):
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.05))
    port = free_port()
    env = {**SERVER_ENV, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    with redis_server(port) as first, cluster(tmp_path, database_url, 2, env) as (a, b):
        ws_a = await socket_to(a, session, conversation_id)
        await recv(ws_a)
        await ws_a.send(json.dumps({"type": "message.send", "content": "hello", "client_id": "r1"}))
        seen_a: list[dict[str, Any]] = []
        while deltas_seen(seen_a) < 10:
            seen_a.append(await recv(ws_a))
        first.kill()
        first.wait(timeout=10)
        await asyncio.sleep(0.3)
        with redis_server(port):
            seen_a += await recv_until(ws_a, "message.completed", timeout=30)
            final = seen_a[-1]["message"]
            assert final["content"] == EXPECTED == assemble(seen_a, final["id"])
            # A tab on the other process (reconnecting, as the UI does) sees everything.
            ws_b = await socket_to(b, session, conversation_id)
            sync = await recv(ws_b)
            roles = [(m["role"], m["content"], m["status"]) for m in sync["messages"]]
            assert roles == [("user", "hello", "completed"),
                             ("assistant", EXPECTED, "completed")]
            # And the layer works again: a stop from B reaches a run on A.
            vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.1))
            await ws_a.send(json.dumps({"type": "message.send", "content": "more"}))
            await recv_until(ws_b, "message.delta")  # the new reply streams to B
            await ws_b.send(json.dumps({"type": "run.cancel"}))
            canceled = await recv_until(ws_a, "message.canceled", timeout=10)
            assert canceled[-1]["message"]["status"] == "canceled"
            await ws_a.close()
            await ws_b.close()
