"""Per-user limits (conversations/ratelimit.py): replies running, sends per minute, API + form
writes per minute, open sockets; each refused at its threshold with nothing stored, each
disabled by 0, and counts shared across processes through Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from django.test import Client

from conversations import ratelimit
from conversations.models import Conversation, Message
from tests.conftest import csrf_headers
from tests.test_api import post
from tests.wsclient import Socket, open_socket

REDIS_URL = "redis://127.0.0.1:6379/0"


def db(fn: Any) -> Any:
    return database_sync_to_async(fn)


def fresh_window() -> None:
    """Per-minute counters are fixed windows: start a test well inside one, so a minute
    boundary cannot reset the count halfway through."""
    left = ratelimit.WINDOW - time.time() % ratelimit.WINDOW
    if left < 8:
        time.sleep(left + 0.05)


@pytest.fixture
def limits(settings: Any) -> Any:
    """Every limit off; each test turns on the one it is about."""
    settings.RATE_LIMIT_RUNS_PER_USER = 0
    settings.RATE_LIMIT_SENDS_PER_MINUTE = 0
    settings.RATE_LIMIT_WRITES_PER_MINUTE = 0
    settings.RATE_LIMIT_SOCKETS_PER_USER = 0
    settings.REDIS_URL = ""  # the cache backend, cleared per test by conftest
    return settings


@pytest.fixture
def redis_limits(limits: Any) -> Iterator[Any]:
    """The Redis backend with this test's own key prefix, deleted afterwards."""
    limits.REDIS_URL = REDIS_URL
    limits.RATE_LIMIT_KEY_PREFIX = f"test-ratelimit-{uuid.uuid4().hex}"
    yield limits
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=limits.RATE_LIMIT_KEY_PREFIX + ":*"))
    if keys:
        client.delete(*keys)
    client.close()


async def send_and_finish(sock: Socket, client_id: str) -> None:
    await sock.send({"type": "message.send", "content": "hello", "client_id": client_id})
    frames = await sock.recv_until("message.completed")
    assert frames[-1]["message"]["status"] == "completed"


async def assert_refused(sock: Socket, retry_after: tuple[int, int]) -> dict[str, Any]:
    frame = await sock.recv()
    assert frame["type"] == "error" and frame["code"] == "rate_limited", frame
    assert retry_after[0] <= frame["retry_after"] <= retry_after[1]
    assert isinstance(frame["message"], str) and frame["message"]
    return frame


# Websocket: sends and replies ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_the_send_over_the_per_minute_limit(
    alice_client: Client, conversation: Conversation, limits: Any
):
    limits.RATE_LIMIT_SENDS_PER_MINUTE = 2
    fresh_window()
    _, sock = await open_socket(alice_client, conversation.id)
    await send_and_finish(sock, "c-1")
    await send_and_finish(sock, "c-2")
    await sock.send({"type": "message.send", "content": "one too many", "client_id": "c-3"})
    frame = await assert_refused(sock, (1, 60))
    assert frame["client_id"] == "c-3"  # the client rolls that message back into the composer
    assert await db(Message.objects.filter(conversation=conversation).count)() == 4
    assert not await db(Message.objects.filter(client_id="c-3").exists)()
    await sock.assert_usable()  # the socket stays open
    await sock.close()


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_a_send_while_too_many_replies_are_running(
    alice_client: Client, conversation: Conversation, alice: Any, demo_agent: Any, limits: Any
):
    limits.RATE_LIMIT_RUNS_PER_USER = 1
    other = await db(Conversation.objects.create)(owner=alice, agent=demo_agent)
    running = await db(Message.objects.create)(
        conversation=other, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING
    )
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "hello", "client_id": "c-1"})
    await assert_refused(sock, (ratelimit.RUN_RETRY_AFTER, ratelimit.RUN_RETRY_AFTER))
    await sock.send({"type": "interrupt.resume", "interrupt_id": "i-1", "payload": "yes"})
    await assert_refused(sock, (ratelimit.RUN_RETRY_AFTER, ratelimit.RUN_RETRY_AFTER))
    assert await db(Message.objects.filter(conversation=conversation).count)() == 0
    await sock.assert_usable()
    # The other reply ends (or the reaper fails it): the user may send again.
    running.status = Message.Status.COMPLETED
    await db(running.save)()
    await send_and_finish(sock, "c-2")
    await sock.close()


@pytest.mark.django_db(transaction=True)
async def test_it_counts_only_the_users_own_running_replies(
    alice_client: Client, conversation: Conversation, bob: Any, demo_agent: Any, limits: Any
):
    limits.RATE_LIMIT_RUNS_PER_USER = 1
    bobs = await db(Conversation.objects.create)(owner=bob, agent=demo_agent)
    await db(Message.objects.create)(
        conversation=bobs, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING
    )
    _, sock = await open_socket(alice_client, conversation.id)
    await send_and_finish(sock, "c-1")
    await sock.close()


# Websocket: open sockets -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_it_closes_a_socket_over_the_limit_with_4429(
    alice_client: Client, conversation: Conversation, limits: Any
):
    limits.RATE_LIMIT_SOCKETS_PER_USER = 2
    first = await open_socket(alice_client, conversation.id)
    second = await open_socket(alice_client, conversation.id)
    assert first[1].sync["type"] == second[1].sync["type"] == "conversation.sync"

    connected, third = await open_socket(alice_client, conversation.id)
    assert connected  # accepted so that it can say why ...
    assert third.sync["code"] == "rate_limited"
    assert third.sync["retry_after"] == ratelimit.SOCKET_RETRY_AFTER
    closed = await third.comm.receive_output(timeout=5)  # ... then closed
    assert closed == {"type": "websocket.close", "code": ratelimit.CLOSE_TOO_MANY_SOCKETS}
    await first[1].assert_usable()
    await second[1].assert_usable()

    # Closing one frees its slot.
    await first[1].close()
    connected, fourth = await open_socket(alice_client, conversation.id)
    assert connected and fourth.sync["type"] == "conversation.sync"
    await fourth.assert_usable()
    await second[1].close()
    await fourth.close()
    assert conversation.owner_id not in ratelimit._local_sockets.values()  # none left counted


@pytest.mark.django_db(transaction=True)
async def test_it_counts_sockets_per_user(
    alice_client: Client, conversation: Conversation, bob: Any, demo_agent: Any, limits: Any
):
    limits.RATE_LIMIT_SOCKETS_PER_USER = 1
    bob_client = Client()
    await db(bob_client.force_login)(bob)
    bobs = await db(Conversation.objects.create)(owner=bob, agent=demo_agent)
    _, alices = await open_socket(alice_client, conversation.id)
    connected, bobs_socket = await open_socket(bob_client, bobs.id)
    assert connected and bobs_socket.sync["type"] == "conversation.sync"
    await alices.close()
    await bobs_socket.close()


# HTTP: API and form writes share one budget ---------------------------------------------------


def test_it_shares_one_write_budget_between_the_api_and_forms(
    api_client: Client, conversation: Conversation, limits: Any
):
    limits.RATE_LIMIT_WRITES_PER_MINUTE = 3
    fresh_window()
    assert post(api_client, "/api/v1/conversations", {}).status_code == 201
    rename = f"/c/{conversation.id}/rename"
    assert api_client.post(rename, {"title": "One"}, **csrf_headers(api_client)).status_code == 302
    assert post(api_client, "/api/v1/conversations", {}).status_code == 201
    stored = Conversation.objects.count()

    page = api_client.post(rename, {"title": "Two"}, **csrf_headers(api_client))
    assert page.status_code == 429
    assert 1 <= int(page["Retry-After"]) <= 60
    assert "Too many requests" in page.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "One"

    api = post(api_client, "/api/v1/conversations", {})
    assert api.status_code == 429
    assert 1 <= int(api["Retry-After"]) <= 60
    error = api.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["retry_after"] == int(api["Retry-After"])
    assert Conversation.objects.count() == stored

    new = api_client.post("/conversations/new", {}, **csrf_headers(api_client))
    assert new.status_code == 429
    assert Conversation.objects.count() == stored
    # Reading is never limited.
    assert api_client.get("/api/v1/conversations").status_code == 200
    assert api_client.get(f"/c/{conversation.id}/").status_code == 200


def test_it_lets_every_write_through_when_the_limit_is_zero(api_client: Client, limits: Any,
                                                            demo_agent: Any):
    statuses = {post(api_client, "/api/v1/conversations", {}).status_code for _ in range(130)}
    assert statuses == {201}


@pytest.mark.django_db(transaction=True)
async def test_it_applies_no_socket_or_send_limit_when_zero(
    alice_client: Client, conversation: Conversation, limits: Any
):
    sockets = [(await open_socket(alice_client, conversation.id))[1] for _ in range(4)]
    assert all(s.sync["type"] == "conversation.sync" for s in sockets)
    for i in range(3):
        await send_and_finish(sockets[0], f"c-{i}")
    for s in sockets:
        await s.close()
    assert conversation.owner_id not in ratelimit._local_sockets.values()  # never counted


# Redis: shared across processes ----------------------------------------------------------------


def test_it_shares_counts_between_processes_through_redis(
    redis_limits: Any, monkeypatch: pytest.MonkeyPatch
):
    redis_limits.RATE_LIMIT_WRITES_PER_MINUTE = 3
    redis_limits.RATE_LIMIT_SOCKETS_PER_USER = 2
    fresh_window()
    # "Process" A: its own pooled client.
    assert ratelimit.hit_writes(7) is None
    assert ratelimit.hit_writes(7) is None
    assert ratelimit.open_socket(7, "a-1") is None
    first = ratelimit._redis()
    # "Process" B: a separate client (a new pool), as another Daphne process would have.
    monkeypatch.setattr(ratelimit, "_clients", {})
    second = ratelimit._redis()
    assert second is not None and second is not first
    assert ratelimit.hit_writes(7) is None
    refusal = ratelimit.hit_writes(7)
    assert refusal is not None and refusal.limit == "writes" and 1 <= refusal.retry_after <= 60
    assert ratelimit.hit_writes(8) is None  # another user's budget
    assert ratelimit.open_socket(7, "b-1") is None
    over = ratelimit.open_socket(7, "b-2")
    assert over is not None and over.limit == "sockets"
    # The refused socket took no slot; closing one in A frees a slot for B.
    key = f"{redis_limits.RATE_LIMIT_KEY_PREFIX}:sockets:7"
    assert sorted(second.zrange(key, 0, -1)) == [b"a-1", b"b-1"]
    ratelimit.close_socket(7, "a-1")
    assert ratelimit.open_socket(7, "b-2") is None
    second.close()
    first.close()


def test_it_forgets_sockets_of_a_dead_process_on_redis(
    redis_limits: Any, monkeypatch: pytest.MonkeyPatch
):
    redis_limits.RATE_LIMIT_SOCKETS_PER_USER = 1
    monkeypatch.setattr(ratelimit, "SOCKET_TTL", 1)
    # A process opens a socket and dies: no close_socket, no heartbeat.
    assert ratelimit.open_socket(9, "dead-1") is None
    assert ratelimit.open_socket(9, "live-1") is not None
    time.sleep(1.2)
    assert ratelimit.open_socket(9, "live-1") is None
    # A living process's heartbeat keeps its socket counted past the TTL.
    time.sleep(0.6)
    ratelimit.refresh_sockets({"live-1": 9})
    time.sleep(0.6)
    assert ratelimit.open_socket(9, "live-2") is not None


def test_it_forgets_sockets_of_a_dead_process_in_the_cache(
    limits: Any, monkeypatch: pytest.MonkeyPatch
):
    limits.RATE_LIMIT_SOCKETS_PER_USER = 1
    monkeypatch.setattr(ratelimit, "SOCKET_TTL", 1)
    assert ratelimit.open_socket(9, "dead-1") is None
    assert ratelimit.open_socket(9, "live-1") is not None
    time.sleep(1.2)
    assert ratelimit.open_socket(9, "live-1") is None


@pytest.mark.django_db(transaction=True)
async def test_it_limits_sockets_through_redis_end_to_end(
    alice_client: Client, conversation: Conversation, redis_limits: Any
):
    redis_limits.RATE_LIMIT_SOCKETS_PER_USER = 1
    redis_limits.RATE_LIMIT_SENDS_PER_MINUTE = 1
    await asyncio.to_thread(fresh_window)
    _, sock = await open_socket(alice_client, conversation.id)
    connected, refused = await open_socket(alice_client, conversation.id)
    assert connected and refused.sync["code"] == "rate_limited"
    assert (await refused.comm.receive_output(timeout=5))["code"] == 4429
    await send_and_finish(sock, "c-1")
    await sock.send({"type": "message.send", "content": "again", "client_id": "c-2"})
    await assert_refused(sock, (1, 60))
    await sock.assert_usable()
    await sock.close()
    key = f"{redis_limits.RATE_LIMIT_KEY_PREFIX}:sockets:{conversation.owner_id}"
    assert redis.Redis.from_url(REDIS_URL).zcard(key) == 0
