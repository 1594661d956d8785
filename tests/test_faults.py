"""Faults injected into real Daphne processes on real PostgreSQL + Redis (issue 9): no reply is
lost or rewritten when a process is killed, stopped, stalled or loses its database connection.

The processes run with short relay timings (tests/test_scaleout.py's SERVER_ENV: flush 0.3 s,
orphaned after 2 s, reaper every 0.5 s), so a 5 s SIGSTOP here is what a 25 s one is against
production's 15 s RELAY_ORPHAN_AFTER.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

from tests.cluster import (
    EXPECTED,
    SERVER_ENV,
    deltas_seen,
    recv,
    recv_until,
    seed,
    slow_stream,
    socket_to,
)
from tests.fakevendor import FakeVendor
from tests.livesrv import LiveServer, cluster
from tests.wsclient import assemble

pytestmark = pytest.mark.scaleout

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def stored_reply(admin: LiveServer, conversation_id: str) -> dict[str, Any]:
    """The conversation's last assistant message as stored (read by a separate process)."""
    return json.loads(admin.shell(
        "import json\nfrom conversations.models import Message\n"
        f"m = Message.objects.filter(conversation_id={conversation_id!r}, role='assistant')"
        ".order_by('seq').last()\n"
        "print(json.dumps({'id': str(m.id), 'status': m.status, 'content': m.content, "
        "'error_code': m.error_code, 'lease': m.lease}))"))


def assistant_rows(admin: LiveServer, conversation_id: str) -> list[dict[str, Any]]:
    return json.loads(admin.shell(
        "import json\nfrom conversations.models import Message\n"
        f"rows = Message.objects.filter(conversation_id={conversation_id!r}, role='assistant')"
        ".order_by('seq')\n"
        "print(json.dumps([{'id': str(m.id), 'status': m.status, 'content': m.content} "
        "for m in rows]))"))


async def until_deltas(ws: Any, count: int) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while deltas_seen(frames) < count:
        frames.append(await recv(ws))
    return frames


async def drain(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Every frame that arrives within `seconds`."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        while (left := deadline - time.monotonic()) > 0:
            frames.append(await recv(ws, left))
    return frames


async def test_it_ends_replies_on_sigterm_without_losing_what_was_shown(
    migrated: LiveServer, database_url: str, shared_redis: str, vendor: FakeVendor,
    tmp_path: Path,
):
    """SIGTERM: the reply is ended as server_restart with every shown delta kept, the tab gets
    the final frame then close 1012, and another process serves the stored reply."""
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.1))  # ~6 s
    env = {**SERVER_ENV, "REDIS_URL": shared_redis, "SHUTDOWN_GRACE_SECONDS": "1"}
    with cluster(tmp_path, database_url, 2, env) as (a, b):
        ws_a = await socket_to(a, session, conversation_id)
        await recv(ws_a)
        await ws_a.send(json.dumps({"type": "message.send", "content": "hello"}))
        seen = await until_deltas(ws_a, 10)
        stopped_at = time.monotonic()
        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)
        seen += await recv_until(ws_a, "message.failed", "message.completed", timeout=10)
        final = seen[-1]["message"]
        assert final["error"]["code"] == "server_restart"
        shown = assemble(seen, final["id"])
        assert final["content"] == shown and EXPECTED.startswith(shown) and len(shown) > 0
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws_a, timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        # Within the grace period plus the final save, not the reaper's ~17 s.
        assert time.monotonic() - stopped_at < 8
        a.proc.wait(timeout=15)
        ws_b = await socket_to(b, session, conversation_id)
        sync = await recv(ws_b)
        reply = sync["messages"][-1]
        assert (reply["id"], reply["status"], reply["content"]) == (final["id"], "failed", shown)
        assert stored_reply(migrated, conversation_id)["content"] == shown
        await ws_b.close()


async def test_it_lets_a_reply_finish_within_the_grace_period_on_sigterm(
    migrated: LiveServer, database_url: str, shared_redis: str, vendor: FakeVendor,
    tmp_path: Path,
):
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.03))  # ~2 s
    env = {**SERVER_ENV, "REDIS_URL": shared_redis, "SHUTDOWN_GRACE_SECONDS": "10"}
    with cluster(tmp_path, database_url, 1, env) as (a,):
        ws_a = await socket_to(a, session, conversation_id)
        await recv(ws_a)
        await ws_a.send(json.dumps({"type": "message.send", "content": "hello"}))
        seen = await until_deltas(ws_a, 5)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)
        seen += await recv_until(ws_a, "message.completed", "message.failed", timeout=15)
        assert seen[-1]["type"] == "message.completed"
        final = seen[-1]["message"]
        assert final["content"] == EXPECTED == assemble(seen, final["id"])
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws_a, timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert a.proc.wait(timeout=15) is not None
        assert stored_reply(migrated, conversation_id)["content"] == EXPECTED


async def test_it_loses_at_most_a_flush_interval_of_text_when_killed(
    migrated: LiveServer, database_url: str, shared_redis: str, vendor: FakeVendor,
    tmp_path: Path,
):
    """kill -9 mid-reply: the survivor ends it as server_restart within 20 s with the text
    flushed before the kill: at most RELAY_FLUSH_INTERVAL (0.3 s here, 3 words) behind."""
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.1))
    env = {**SERVER_ENV, "REDIS_URL": shared_redis}
    with cluster(tmp_path, database_url, 2, env) as (a, b):
        ws_a = await socket_to(a, session, conversation_id)
        ws_b = await socket_to(b, session, conversation_id)
        await recv(ws_a), await recv(ws_b)
        await ws_a.send(json.dumps({"type": "message.send", "content": "hello"}))
        seen_a = await until_deltas(ws_a, 20)
        a.kill()
        killed_at = time.monotonic()
        failed = await recv_until(ws_b, "message.failed", timeout=20)
        assert time.monotonic() - killed_at < 20
        final = failed[-1]["message"]
        shown = assemble(seen_a, final["id"])
        assert final["error"]["code"] == "server_restart"
        assert shown.startswith(final["content"])
        lost_words = shown.count(" ") - final["content"].count(" ")
        # 0.3 s of flush interval at 0.1 s per word, plus one word in flight each side.
        assert 0 <= lost_words <= 5, (lost_words, final["content"][-40:])
        vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.0))
        await ws_b.send(json.dumps({"type": "message.send", "content": "again"}))
        done = await recv_until(ws_b, "message.completed")
        assert done[-1]["message"]["content"] == EXPECTED
        await ws_b.close()


async def test_it_fences_a_stalled_process_out_of_a_reply_it_lost(
    migrated: LiveServer, database_url: str, shared_redis: str, vendor: FakeVendor,
    tmp_path: Path,
):
    """SIGSTOP of the owner past RELAY_ORPHAN_AFTER: the survivor ends the reply and takes a
    new message; on SIGCONT the old owner writes nothing and sends no second final frame."""
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.1))
    env = {**SERVER_ENV, "REDIS_URL": shared_redis}
    with cluster(tmp_path, database_url, 2, env) as (a, b):
        ws_a = await socket_to(a, session, conversation_id)
        ws_b = await socket_to(b, session, conversation_id)
        await recv(ws_a), await recv(ws_b)
        await ws_a.send(json.dumps({"type": "message.send", "content": "hello"}))
        seen_b = await until_deltas(ws_b, 5)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)
        try:
            seen_b += await recv_until(ws_b, "message.failed", timeout=15)
            first = seen_b[-1]["message"]
            assert first["error"]["code"] == "server_restart"
            # A second reply in the same conversation, on the survivor, while A is stopped.
            vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.0))
            await ws_b.send(json.dumps({"type": "message.send", "content": "again"}))
            second = await recv_until(ws_b, "message.completed", timeout=15)
            assert second[-1]["message"]["content"] == EXPECTED
        finally:
            a.proc.send_signal(signal.SIGCONT)
        # A wakes up with its vendor stream still open: nothing more from it, anywhere. B's
        # tab gets nothing about the first reply; A's own tab (read only now: its buffer holds
        # what A sent before the stop) ends with the reaper's final frame, once, and nothing
        # after it.
        after_b = await drain(ws_b, 4)
        assert [f for f in after_b if _about(f) == first["id"]] == []
        on_a = [f for f in await drain(ws_a, 0.5) if _about(f) == first["id"]]
        finals = [f for f in on_a if f["type"] in ("message.failed", "message.completed",
                                                     "message.canceled")]
        assert [f["type"] for f in finals] == ["message.failed"]
        assert on_a[-1] is finals[0] and finals[0]["message"]["content"] == first["content"]
        rows = assistant_rows(migrated, conversation_id)
        assert [(r["status"], r["content"]) for r in rows] == [
            ("failed", first["content"]), ("completed", EXPECTED)]
        await ws_b.close()
        with contextlib.suppress(Exception):
            await ws_a.close()


async def test_it_cancels_at_once_a_reply_whose_process_is_stalled(
    migrated: LiveServer, database_url: str, shared_redis: str, vendor: FakeVendor,
    tmp_path: Path,
):
    """While a dead or stopped process's reply waits for the reaper, a stop ends it as
    canceled within seconds (not ignored), and the next message is accepted."""
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.1))
    # The reaper is slow here, so only the cancel path can end the reply in time.
    env = {**SERVER_ENV, "REDIS_URL": shared_redis, "RELAY_ORPHAN_AFTER": "60"}
    with cluster(tmp_path, database_url, 2, env) as (a, b):
        ws_a = await socket_to(a, session, conversation_id)
        ws_b = await socket_to(b, session, conversation_id)
        await recv(ws_a), await recv(ws_b)
        await ws_a.send(json.dumps({"type": "message.send", "content": "hello"}))
        await until_deltas(ws_b, 5)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)
        try:
            asked = time.monotonic()
            await ws_b.send(json.dumps({"type": "run.cancel"}))
            canceled = await recv_until(ws_b, "message.canceled", timeout=15)
            assert time.monotonic() - asked < 8  # 3 s of staleness + a flush, not 60 s
            first = canceled[-1]["message"]
            assert first["status"] == "canceled" and EXPECTED.startswith(first["content"])
            vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.0))
            await ws_b.send(json.dumps({"type": "message.send", "content": "again"}))
            done = await recv_until(ws_b, "message.completed", "error", timeout=15)
            assert done[-1]["type"] == "message.completed", done[-1]
        finally:
            a.proc.send_signal(signal.SIGCONT)
        await drain(ws_b, 3)
        rows = assistant_rows(migrated, conversation_id)
        assert [(r["status"], r["content"]) for r in rows] == [
            ("canceled", first["content"]), ("completed", EXPECTED)]
        await ws_b.close()
        with contextlib.suppress(Exception):
            await ws_a.close()


def _about(frame: dict[str, Any]) -> str | None:
    """The reply a frame is about (deltas carry `message_id`, final frames the message)."""
    message = frame.get("message")
    return message.get("id") if isinstance(message, dict) else frame.get("message_id")


def terminate_backends(database_url: str, stop: threading.Event, every: float) -> int:
    """pg_terminate_backend every connection of the servers' database until `stop`."""
    name = database_url.rsplit("/", 1)[1]
    killed = 0
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        while not stop.wait(every):
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall()
            killed += len(rows)
    return killed


@pytest.mark.parametrize("every", [0.15, 0.45])
async def test_it_stores_what_the_client_saw_when_postgresql_drops_connections(
    every: float, migrated: LiveServer, database_url: str, shared_redis: str,
    vendor: FakeVendor, tmp_path: Path,
):
    """Connections terminated again and again through a whole reply (flushes and the final
    save meet dead connections): the client still gets a final frame, and it is what is
    stored."""
    session, conversation_id = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.03))
    env = {**SERVER_ENV, "REDIS_URL": shared_redis}
    with cluster(tmp_path, database_url, 1, env) as (a,):
        ws = await socket_to(a, session, conversation_id)
        await recv(ws)
        await ws.send(json.dumps({"type": "message.send", "content": "hello"}))
        seen = await until_deltas(ws, 1)
        stop = threading.Event()
        killer = asyncio.get_running_loop().run_in_executor(
            None, terminate_backends, database_url, stop, every)
        try:
            seen += await recv_until(ws, "message.completed", "message.failed", timeout=60)
        finally:
            stop.set()
            killed = await killer
        assert killed > 0
        final = seen[-1]["message"]
        assert (final["status"], final["content"]) == ("completed", EXPECTED)
        assert assemble(seen, final["id"]) == EXPECTED
        stored = stored_reply(migrated, conversation_id)
        assert (stored["status"], stored["content"]) == ("completed", EXPECTED)
        await ws.close()


async def test_it_serves_handshakes_while_a_reply_row_is_locked(
    migrated: LiveServer, database_url: str, shared_redis: str, vendor: FakeVendor,
    tmp_path: Path,
):
    """A write of the relay stuck on a row lock (held here 5 s by another session, past the 2 s
    orphan timeout) holds neither the process's handshakes nor the reply: no reaper waits on the
    lock, and once it is released the reply ends as shown and stored."""
    session, conversation_id = seed(migrated, vendor)
    _, other_conversation = seed(migrated, vendor)
    vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.1))
    env = {**SERVER_ENV, "REDIS_URL": shared_redis}
    with cluster(tmp_path, database_url, 1, env) as (a,):
        ws = await socket_to(a, session, conversation_id)
        await recv(ws)
        await ws.send(json.dumps({"type": "message.send", "content": "hello"}))
        seen = await until_deltas(ws, 5)
        reply_id = seen[-1]["message_id"]
        name = database_url.rsplit("/", 1)[1]
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as locker:
            locker.execute("SELECT 1 FROM conversations_message WHERE id = %s FOR UPDATE",
                           (reply_id,))
            # The relay's flush now waits on the lock, and past 2 s the reply looks orphaned:
            # a handshake (which reaps orphaned replies first) must not wait on the lock either.
            await asyncio.sleep(3)
            started = time.monotonic()
            other = await socket_to(a, session, other_conversation)
            sync = await recv(other, timeout=5)
            assert sync["type"] == "conversation.sync"
            assert time.monotonic() - started < 3, "a handshake waited on the locked row"
            await asyncio.sleep(2)
            locker.rollback()
        seen += await recv_until(ws, "message.completed", "message.failed", timeout=30)
        final = seen[-1]["message"]
        assert (final["status"], final["content"]) == ("completed", EXPECTED)
        assert assemble(seen, final["id"]) == EXPECTED
        assert stored_reply(migrated, conversation_id)["content"] == EXPECTED
        await ws.close()
        await other.close()
