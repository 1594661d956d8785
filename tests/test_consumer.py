"""The websocket protocol v1 end to end on the real ASGI app (Channels' WebsocketCommunicator)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.models import Agent, Conversation, Message, ToolCall
from tests.wsclient import assemble, open_socket, wait_for_no_runs

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def slow_demo(demo_agent: Agent) -> Agent:
    """Paced so a test can act mid-run: ~200 deltas x 10 ms = ~2 s."""
    demo_agent.options = {"delay": 0.01}
    demo_agent.save()
    return demo_agent


def db(fn: Any) -> Any:
    return database_sync_to_async(fn)


# Handshake -----------------------------------------------------------------------------------


async def test_it_refuses_anonymous_handshakes(conversation: Conversation):
    connected, _ = await open_socket(None, conversation.id)
    assert connected is False


async def test_it_refuses_foreign_and_missing_origins(alice_client: Client, conversation: Any):
    connected, _ = await open_socket(alice_client, conversation.id, origin=b"http://evil.example")
    assert connected is False
    connected, _ = await open_socket(alice_client, conversation.id, origin=None)
    assert connected is False


async def test_it_accepts_origins_from_csrf_trusted_origins(
    alice_client: Client, conversation: Any, settings: Any
):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    connected, sock = await open_socket(
        alice_client, conversation.id, origin=b"https://chat.example.com")
    assert connected is True
    await sock.close()


async def test_it_refuses_other_users_and_unknown_conversations(
    alice_client: Client, bob: Any, demo_agent: Agent
):
    theirs = await db(Conversation.objects.create)(owner=bob, agent=demo_agent)
    connected, _ = await open_socket(alice_client, theirs.id)
    assert connected is False
    connected, _ = await open_socket(alice_client, "00000000-0000-0000-0000-000000000000")
    assert connected is False


async def test_it_sends_conversation_sync_first(alice_client: Client, conversation: Any):
    connected, sock = await open_socket(alice_client, conversation.id)
    assert connected
    assert sock.sync["type"] == "conversation.sync"
    assert sock.sync["conversation"]["id"] == str(conversation.id)
    assert sock.sync["conversation"]["title"] == "Refund question"
    assert sock.sync["active_run"] is None
    assert sock.sync["messages"] == []
    await sock.assert_usable()
    await sock.close()


# Bad frames ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1,2]", "invalid"),
        ('{"no": "type"}', "invalid"),
        ({"type": "dance"}, "unknown_type"),
        ({"type": "message.send", "content": "   "}, "invalid"),
        ({"type": "message.send"}, "invalid"),
        ({"type": "message.send", "content": 42}, "invalid"),
        ({"type": "message.send", "content": "x" * 32_001}, "too_large"),
        ({"type": "message.send", "content": "hi", "metadata": {"b": "x" * 17_000}}, "too_large"),
        ({"type": "message.send", "content": "hi", "metadata": [1]}, "invalid"),
        ({"type": "message.send", "content": "hi", "client_id": "c" * 65}, "invalid"),
        ("x" * 300_000, "too_large"),
        ({"type": "run.cancel"}, "no_run"),
        ({"type": "interrupt.resume", "interrupt_id": "i-1", "payload": "yes"}, "no_interrupt"),
        ({"type": "interrupt.resume"}, "invalid"),
    ],
)
async def test_it_rejects_bad_frames_and_stays_usable(
    alice_client: Client, conversation: Any, frame: Any, code: str
):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send(frame)
    reply = await sock.recv()
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert reply["message"]
    await sock.assert_usable()
    assert await db(Message.objects.count)() == 0
    await sock.close()


async def test_it_rejects_binary_frames(alice_client: Client, conversation: Any):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.comm.send_to(bytes_data=b"\x00\x01")
    assert (await sock.recv())["code"] == "bad_json"
    await sock.assert_usable()
    await sock.close()


# A run ---------------------------------------------------------------------------------------


async def test_it_streams_a_reply_and_stores_it(alice_client: Client, conversation: Any):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "Where is my parcel?", "client_id": "c-1"})
    frames = await sock.recv_until("message.completed")
    created = [f for f in frames if f["type"] == "message.created"]
    assert [c["message"]["role"] for c in created] == ["user", "assistant"]
    assert created[0]["message"]["client_id"] == "c-1"
    assert created[0]["message"]["content"] == "Where is my parcel?"
    assert created[1]["message"]["status"] == "streaming"
    reply_id = created[1]["message"]["id"]
    deltas = [f for f in frames if f["type"] == "message.delta"]
    assert len(deltas) > 20  # the owner gets deltas one by one, not batched
    expected = 0
    for d in deltas:  # contiguous offsets: no gap, no overlap
        assert d["offset"] == expected
        expected += len(d["delta"])
    done = frames[-1]["message"]
    text = assemble(frames, reply_id)
    assert done["content"] == text and done["status"] == "completed"
    assert "> Where is my parcel?" in text
    stored = await db(Message.objects.get)(pk=reply_id)
    assert stored.content == text
    assert stored.status == "completed" and stored.completed_at is not None
    assert stored.ttft_ms is not None and stored.usage["total_tokens"] > 0
    assert [m["role"] for m in (await db(lambda: list(
        Message.objects.filter(conversation=conversation).values("role")))())] == [
        "user", "assistant"]
    await wait_for_no_runs()
    await sock.close()


async def test_it_refuses_a_second_send_during_a_run(alice_client: Client, slow_demo: Agent,
                                                     conversation: Any):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "first"})
    await sock.recv_until("message.delta")
    await sock.send({"type": "message.send", "content": "second"})
    frames = await sock.recv_until("error")
    assert frames[-1]["code"] == "run_active"
    await sock.send({"type": "run.cancel"})
    await sock.recv_until("message.canceled")
    users = await db(lambda: list(Message.objects.filter(role="user").values_list(
        "content", flat=True)))()
    assert users == ["first"]
    await wait_for_no_runs()
    await sock.close()


async def test_it_stops_mid_stream_and_keeps_the_partial_text(
    alice_client: Client, slow_demo: Agent, conversation: Any
):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "tell me a story"})
    frames = await sock.recv_until("message.delta")
    for _ in range(5):
        frames.append(await sock.recv())
    asked = time.monotonic()
    await sock.send({"type": "run.cancel"})
    frames += await sock.recv_until("message.canceled")
    assert time.monotonic() - asked < 1.0
    final = frames[-1]["message"]
    assert final["status"] == "canceled"
    partial = assemble(frames, final["id"])
    assert partial and final["content"] == partial
    stored = await db(Message.objects.get)(pk=final["id"])
    assert stored.status == "canceled" and stored.content == partial
    await wait_for_no_runs()
    # The conversation is usable again: a new message runs.
    await sock.send({"type": "message.send", "content": "again"})
    frames = await sock.recv_until("message.created")
    assert frames[-1]["message"]["content"] == "again"
    await sock.send({"type": "run.cancel"})
    await sock.recv_until("message.canceled")
    await wait_for_no_runs()
    await sock.close()


async def test_it_is_idempotent_on_client_id(alice_client: Client, conversation: Any):
    _, sock = await open_socket(alice_client, conversation.id)
    frame = {"type": "message.send", "content": "only once", "client_id": "same-id"}
    await sock.send(frame)
    first = await sock.recv_until("message.completed")
    await sock.send(frame)
    again = await sock.recv()
    assert again["type"] == "message.created"
    assert again["message"]["id"] == first[0]["message"]["id"]
    assert again["message"]["client_id"] == "same-id"
    await sock.assert_usable()
    assert await db(Message.objects.count)() == 2  # one user message, one reply
    await wait_for_no_runs()
    await sock.close()


async def test_it_fans_out_to_a_second_socket_in_batches(
    alice_client: Client, slow_demo: Agent, conversation: Any
):
    _, owner = await open_socket(alice_client, conversation.id)
    _, viewer = await open_socket(alice_client, conversation.id)
    await owner.send({"type": "message.send", "content": "hello both", "client_id": "c-9"})
    owner_frames = await owner.recv_until("message.completed")
    viewer_frames = await viewer.recv_until("message.completed")
    reply_id = owner_frames[-1]["message"]["id"]
    assert [f["message"]["role"] for f in viewer_frames if f["type"] == "message.created"] == [
        "user", "assistant"]
    owner_deltas = [f for f in owner_frames if f["type"] == "message.delta"]
    viewer_deltas = [f for f in viewer_frames if f["type"] == "message.delta"]
    # ~2 s of streaming in <= 50 ms windows: far fewer frames for the viewer than the owner.
    assert len(viewer_deltas) < len(owner_deltas) / 2
    assert assemble(viewer_frames, reply_id) == owner_frames[-1]["message"]["content"]
    await wait_for_no_runs()
    await owner.close()
    await viewer.close()


async def test_it_cancels_from_another_socket(alice_client: Client, slow_demo: Agent,
                                              conversation: Any):
    _, owner = await open_socket(alice_client, conversation.id)
    _, other = await open_socket(alice_client, conversation.id)
    await owner.send({"type": "message.send", "content": "go"})
    await owner.recv_until("message.delta")
    await other.send({"type": "run.cancel"})
    assert (await owner.recv_until("message.canceled"))[-1]["message"]["status"] == "canceled"
    assert (await other.recv_until("message.canceled"))[-1]["message"]["status"] == "canceled"
    await wait_for_no_runs()
    await owner.close()
    await other.close()


async def test_it_keeps_running_when_the_starting_socket_leaves_and_resumes_on_reconnect(
    alice_client: Client, slow_demo: Agent, conversation: Any
):
    _, first = await open_socket(alice_client, conversation.id)
    await first.send({"type": "message.send", "content": "long reply please"})
    frames = await first.recv_until("message.delta")
    for _ in range(10):
        frames.append(await first.recv())
    await first.close()
    await asyncio.sleep(0.2)
    _, second = await open_socket(alice_client, conversation.id)
    active = second.sync["active_run"]
    assert active is not None and active["status"] == "streaming"
    reply_id = active["message_id"]
    seen_before = assemble(frames, reply_id)
    assert active["content"].startswith(seen_before) and len(active["content"]) > len(seen_before)
    rest = await second.recv_until("message.completed")
    text = assemble(rest, reply_id, start=active["content"])
    final = rest[-1]["message"]
    assert text == final["content"] and final["status"] == "completed"
    stored = await db(Message.objects.get)(pk=reply_id)
    assert stored.content == text
    await wait_for_no_runs()
    await second.close()


async def test_it_relays_tool_calls_and_stores_them(alice_client: Client, conversation: Any):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "use a tool to find order 42"})
    frames = await sock.recv_until("message.completed")
    kinds = [f["type"] for f in frames if f["type"].startswith("tool_call.")]
    assert kinds[0] == "tool_call.started" and "tool_call.delta" in kinds
    assert kinds[-2:] == ["tool_call.completed", "tool_call.result"]
    started = next(f for f in frames if f["type"] == "tool_call.started")
    completed = next(f for f in frames if f["type"] == "tool_call.completed")
    streamed = "".join(f["delta"] for f in frames if f["type"] == "tool_call.delta")
    assert completed["arguments"] == streamed and json.loads(streamed)
    call = await db(ToolCall.objects.get)(call_id=started["tool_call_id"])
    assert call.name == started["name"] and call.arguments == streamed
    assert call.arguments_json == json.loads(streamed)
    assert call.status == "completed" and call.result is not None
    final = frames[-1]["message"]
    assert final["tool_calls"][0]["id"] == call.call_id
    await wait_for_no_runs()
    await sock.close()


async def test_it_replaces_metadata_sent_with_a_message(alice_client: Client, conversation: Any):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "hi", "metadata": {"order": "A-1"}})
    frames = await sock.recv_until("message.completed")
    updated = [f for f in frames if f["type"] == "conversation.updated"]
    assert updated and updated[0]["conversation"]["metadata"] == {"order": "A-1"}
    await db(conversation.refresh_from_db)()
    assert conversation.metadata == {"order": "A-1"}
    await wait_for_no_runs()
    await sock.close()


async def test_it_reports_a_failing_agent_and_accepts_the_next_message(
    alice_client: Client, conversation: Any
):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "please fail-demo now"})
    frames = await sock.recv_until("message.failed")
    final = frames[-1]["message"]
    assert final["status"] == "failed"
    assert final["error"] == {"code": "vendor_error",
                              "message": "The demo agent was asked to fail."}
    assert final["content"] == assemble(frames, final["id"]) != ""
    await wait_for_no_runs()
    await sock.send({"type": "message.send", "content": "now work"})
    assert (await sock.recv_until("message.completed"))[-1]["message"]["status"] == "completed"
    await wait_for_no_runs()
    await sock.close()


async def test_it_pauses_for_an_interrupt_and_resumes_with_the_answer(
    alice_client: Client, conversation: Any
):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "refund needs approval"})
    frames = await sock.recv_until("message.completed")
    asked = next(f for f in frames if f["type"] == "interrupt.requested")
    assert asked["reason"] == "approval"
    assert asked["payload"]["options"] == ["approve", "reject"]
    paused = frames[-1]["message"]
    assert paused["status"] == "awaiting_input"
    assert paused["extra"]["pending_interrupt"]["id"] == asked["interrupt_id"]
    await wait_for_no_runs()
    await sock.send({"type": "interrupt.resume", "interrupt_id": "stale", "payload": "approve"})
    assert (await sock.recv())["code"] == "no_interrupt"
    await sock.send({"type": "interrupt.resume", "interrupt_id": asked["interrupt_id"],
                     "payload": "approve"})
    frames = await sock.recv_until("message.completed")
    created = [f["message"] for f in frames if f["type"] == "message.created"]
    assert [(m["role"], m["content"]) for m in created] == [("user", "approve"),
                                                             ("assistant", "")]
    final = frames[-1]["message"]
    assert final["status"] == "completed" and "49.99 CAD** is on its way" in final["content"]
    await wait_for_no_runs()
    await sock.send({"type": "interrupt.resume", "interrupt_id": asked["interrupt_id"],
                     "payload": "approve"})
    assert (await sock.recv())["code"] == "no_interrupt"  # answered once, never twice
    stored = await db(lambda: list(Message.objects.filter(conversation=conversation)
                                   .values_list("role", "status")))()
    assert stored == [("user", "completed"), ("assistant", "completed"),
                      ("user", "completed"), ("assistant", "completed")]
    await sock.close()


async def test_it_closes_sockets_when_the_conversation_is_deleted(
    alice_client: Client, conversation: Any
):
    _, sock = await open_socket(alice_client, conversation.id)
    response = await db(alice_client.post)(f"/c/{conversation.id}/delete")
    assert response.status_code == 302
    out = await sock.comm.receive_output(timeout=5)
    while out["type"] == "websocket.send" and '"presence"' in out["text"]:
        out = await sock.comm.receive_output(timeout=5)
    assert out["type"] == "websocket.close"
