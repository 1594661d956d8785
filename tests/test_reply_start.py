"""A reply's start: message.send's database work in one hop on the reply-start threads
(relay.start_db), in the socket's language, and a send locking its conversation's row only."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import psycopg
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client

from chatsite.asgi import application
from conversations import consumers, services, sessions
from conversations.models import Agent, Conversation, Message
from tests.fakevendor import Pause, openai_chunk, sse, sse_script
from tests.wsclient import HOST, ORIGIN, open_socket, session_cookie, wait_for_no_runs

pytestmark = [pytest.mark.django_db(transaction=True)]

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="start threads and row locks: PostgreSQL only"
)


def stream_of(n: int) -> Any:
    words = [sse(openai_chunk(f"w{i} ")) for i in range(n)]
    return sse_script(*words, sse(openai_chunk(finish_reason="stop")), sse("[DONE]"))


async def french_socket(client: Client, conversation_id: Any) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", [
        (b"host", HOST), (b"origin", ORIGIN), (b"cookie", session_cookie(client)),
        (b"accept-language", b"fr-CA,fr;q=0.9")])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    await comm.receive_from(timeout=5)  # conversation.sync
    return comm


async def next_of(comm: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await comm.receive_from(timeout=5))
        if frame["type"] == kind:
            return frame


@on_postgresql
async def test_it_checks_the_session_and_accepts_in_one_hop_on_the_start_threads(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any, monkeypatch: Any
):
    threads: list[tuple[str, str]] = []
    valid, accept = sessions.session_is_valid, services.accept_user_message

    def recording_valid(*args: Any, **kwargs: Any) -> bool:
        threads.append(("session", threading.current_thread().name))
        return valid(*args, **kwargs)

    def recording_accept(*args: Any, **kwargs: Any) -> Any:
        threads.append(("accept", threading.current_thread().name))
        return accept(*args, **kwargs)

    monkeypatch.setattr(sessions, "session_is_valid", recording_valid)
    monkeypatch.setattr(services, "accept_user_message", recording_accept)
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", "/v1/chat/completions", stream_of(3))
    _, sock = await open_socket(alice_client, conversation.id)
    threads.clear()  # the handshake's own session check ran on Channels' thread
    await sock.send({"type": "message.send", "content": "hello", "client_id": "c-1"})
    done = await sock.recv_until("message.completed")
    await wait_for_no_runs()
    await sock.close()
    assert done[-1]["message"]["content"] == "w0 w1 w2 "
    (first, where), (second, same) = threads
    assert (first, second) == ("session", "accept")
    assert where == same and where.startswith("start-db"), threads


async def test_it_refuses_a_send_during_a_reply_in_the_sockets_language(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any
):
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("slow ")), Pause(0.8), sse(openai_chunk(finish_reason="stop")),
        sse("[DONE]")))
    comm = await french_socket(alice_client, conversation.id)
    try:
        await comm.send_to(text_data=json.dumps({"type": "message.send", "content": "un"}))
        await next_of(comm, "message.delta")
        # Hostile: a second send while the reply streams, and one with no usable content.
        await comm.send_to(text_data=json.dumps(
            {"type": "message.send", "content": "deux", "client_id": "c-2"}))
        refused = await next_of(comm, "error")
        await comm.send_to(text_data=json.dumps({"type": "message.send", "content": "   "}))
        invalid = await next_of(comm, "error")
        await next_of(comm, "message.completed")
    finally:
        await wait_for_no_runs()
        await comm.disconnect()
    assert refused["code"] == "run_active" and refused["client_id"] == "c-2"
    assert refused["message"].startswith("L'agent est encore en train de répondre")
    assert (invalid["code"], invalid["message"]) == ("invalid", "Le message est vide.")
    stored = await database_sync_to_async(lambda: list(
        Message.objects.filter(conversation=conversation).order_by("seq")
        .values_list("role", "content")))()
    assert stored == [("user", "un"), ("assistant", "slow ")]


async def test_it_ends_the_socket_when_the_session_is_gone_before_a_send(
    alice_client: Client, alice: Any, openai_agent: Agent, monkeypatch: Any
):
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, agent=openai_agent)
    _, sock = await open_socket(alice_client, conversation.id)
    monkeypatch.setattr(consumers.sessions, "session_is_valid", lambda session: False)
    await sock.send({"type": "message.send", "content": "hello", "client_id": "c-9"})
    frames = await sock.recv_until("error")
    assert frames[-1]["code"] == "not_authenticated" and frames[-1]["client_id"] == "c-9"
    assert not await database_sync_to_async(Message.objects.filter(
        conversation=conversation).exists)()
    await sock.close()


@on_postgresql
async def test_it_accepts_a_message_while_its_agents_row_is_locked(
    alice: Any, openai_agent: Agent
):
    """Sends to one agent in different conversations never wait for each other: accepting
    locks the conversation's row, not the agent's it joins."""
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, agent=openai_agent)
    db = connection.settings_dict
    locker = await asyncio.to_thread(
        psycopg.connect, host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"],
        dbname=db["NAME"])
    try:
        await asyncio.to_thread(
            locker.execute, "SELECT id FROM conversations_agent WHERE id = %s FOR UPDATE",
            (openai_agent.pk,))
        accepted = await asyncio.wait_for(
            database_sync_to_async(services.accept_user_message)(
                conversation.pk, alice, content="while the agent row is locked"),
            timeout=5)
    finally:
        await asyncio.to_thread(locker.rollback)
        await asyncio.to_thread(locker.close)
    assert accepted.assistant_message is not None
    assert accepted.user_message.content == "while the agent row is locked"


def test_it_runs_starts_on_one_thread_until_two_are_waiting_there() -> None:
    """relay.StartExecutor: one or two starts at a time share one thread (side by side they
    only interleave on the GIL); a third goes to the overflow threads at once."""
    import threading
    import time

    from conversations.relay import StartExecutor

    executor = StartExecutor(serial=2, overflow=3)
    release = threading.Event()

    def held() -> str:
        release.wait(10)
        return threading.current_thread().name

    try:
        first, second = executor.submit(held), executor.submit(held)
        third = executor.submit(lambda: threading.current_thread().name)
        assert third.result(5).startswith("start-db-overflow")  # not queued behind the two
        assert not second.done()
        release.set()
        assert first.result(5) == second.result(5)
        assert not first.result().startswith("start-db-overflow")
        # Both done (the count drops in a callback run just after the result is set): the
        # next start is the one thread's again.
        for _ in range(100):
            if executor._on_primary == 0:
                break
            time.sleep(0.01)
        assert not executor.submit(threading.current_thread).result(5).name.startswith(
            "start-db-overflow")
    finally:
        release.set()
        executor.shutdown()
