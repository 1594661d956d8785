"""Several Daphne processes sharing real PostgreSQL and Redis: every promise of the single
process holds across processes (fan-out, stop, reconnect elsewhere, a crashed process, Redis
restarting). Needs PostgreSQL at 127.0.0.1:5432 and `redis-server` (.ci/run starts them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.fakevendor import FakeVendor, Pause, openai_chunk, sse, sse_script
from tests.livesrv import LiveServer, cluster, free_port, server_env
from tests.wsclient import assemble

pytestmark = pytest.mark.scaleout

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
WORDS = 60
EXPECTED = "".join(f"w{i} " for i in range(WORDS))
SERVER_ENV = {
    # Fast reaping so the crash test is short; production uses 5 s / 15 s.
    "RELAY_REAP_INTERVAL": "0.5",
    "RELAY_ORPHAN_AFTER": "2",
    "RELAY_FLUSH_INTERVAL": "0.3",
    # One user opens many sockets and replies here: the per-user limits are tested elsewhere
    # (tests/test_ratelimit.py).
    "RATE_LIMIT_RUNS_PER_USER": "0",
    "RATE_LIMIT_SENDS_PER_MINUTE": "0",
    "RATE_LIMIT_WRITES_PER_MINUTE": "0",
    "RATE_LIMIT_SOCKETS_PER_USER": "0",
}


def slow_stream(pause: float = 0.05) -> Any:
    chunks: list[Any] = []
    for i in range(WORDS):
        chunks += [sse(openai_chunk(f"w{i} ")), Pause(pause)]
    return sse_script(*chunks, sse(openai_chunk(finish_reason="stop")), sse("[DONE]"))


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    name = f"chatsite_scaleout_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at 127.0.0.1:5432 (.ci/run starts it): {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeVendor]:
    fake = FakeVendor()
    fake.start()
    yield fake
    fake.stop()


@contextlib.contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A private Redis, so a test can restart it without touching the machine's own."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is required (.ci/run starts Debian's redis)")
    proc = subprocess.Popen(  # noqa: S603
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            import socket

            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[str]:
    port = free_port()
    with redis_server(port):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="module")
def migrated(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    port = free_port()
    admin = LiveServer(f"http://127.0.0.1:{port}", server_env(database_url, port),
                       tmp_path_factory.mktemp("admin") / "none.log")
    admin.manage("migrate", "--noinput")
    return admin


def seed(admin: LiveServer, vendor: FakeVendor) -> tuple[str, str]:
    """A user's session and a conversation with an OpenAI-compatible agent on the fake vendor."""
    session = admin.session_for("dana")
    slug = f"oai-{uuid.uuid4().hex[:6]}"
    conversation_id = admin.shell(
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Agent, Conversation\n"
        f"a = Agent.objects.create(slug={slug!r}, name='o', provider='openai', "
        f"base_url={vendor.url + '/v1'!r}, options={{'model': 'm'}})\n"
        "u = get_user_model().objects.get(username='dana')\n"
        "print(Conversation.objects.create(owner=u, agent=a).pk)"
    )
    return session, conversation_id


async def socket_to(server: LiveServer, session: str, conversation_id: str) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{server.port}/ws/conversations/{conversation_id}/",
        origin=f"http://127.0.0.1:{server.port}",  # type: ignore[arg-type]
        additional_headers={"Cookie": f"sessionid={session}"},
        open_timeout=10,
    )


async def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: ClientConnection, *types: str, timeout: float = 20
                     ) -> list[dict[str, Any]]:
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.01, deadline - time.monotonic()))
        frames.append(frame)
        if frame["type"] in types:
            return frames


def deltas_seen(frames: list[dict[str, Any]]) -> int:
    return sum(1 for f in frames if f["type"] == "message.delta")


@pytest.fixture(scope="module")
def pair(migrated: LiveServer, database_url: str, shared_redis: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LiveServer]]:
    env = {**SERVER_ENV, "REDIS_URL": shared_redis}
    with cluster(tmp_path_factory.mktemp("pair"), database_url, 2, env) as servers:
        yield servers


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
    assert vendor.requests[-1].client_closed
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
