"""The multi-process harness: real Daphne processes on a private PostgreSQL database and Redis,
a loopback vendor, and websocket helpers. A pytest plugin (tests/conftest.py), so its fixtures
(`database_url`, `vendor`, `shared_redis`, `migrated`, `pair`) serve every real-process test
module; each module gets its own (module scope). Needs PostgreSQL at 127.0.0.1:5432 and
`redis-server` (.ci/run starts them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.fakevendor import FakeVendor, Pause, openai_chunk, sse, sse_script
from tests.livesrv import LiveServer, cluster, free_port, server_env

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


async def recv(ws: ClientConnection, timeout: float = 10, *,
               presence: bool = False) -> dict[str, Any]:
    """The next frame; `presence` frames (a socket of the conversation opened or closed, in any
    process) are skipped unless asked for, as tests/wsclient.py does."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(
            ws.recv(), max(0.01, deadline - time.monotonic())))
        if presence or frame.get("type") != "presence":
            return frame


async def recv_until(ws: ClientConnection, *types: str, timeout: float = 20
                     ) -> list[dict[str, Any]]:
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.01, deadline - time.monotonic()),
                           presence="presence" in types)
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
