"""Every reply ends visibly, however long (issue 9 §8): a reply of over ~1 MB gets its final frame
with the content omitted (the client has it from the deltas) instead of `error too_large`, and a
socket opened afterwards gets a sync under the websocket's limit that still says how it ended."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.consumers import MAX_SEND_BYTES, fit_sync
from conversations.models import Agent, Conversation, Message
from tests.fakevendor import openai_chunk, sse, sse_script
from tests.wsclient import assemble, open_socket, wait_for_no_runs

pytestmark = [pytest.mark.django_db(transaction=True)]
db = database_sync_to_async

# 1.2 MB of reply, with multi-byte characters: its final frame with the content would be over
# Daphne's 1 MiB websocket limit (consumers.MAX_SEND_BYTES).
PIECE = "é" * 1999 + " "
PIECES = 600
ONE_MIB = 1024 * 1024


async def test_it_ends_a_reply_over_a_megabyte_with_a_final_frame(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any, settings: Any
):
    settings.MAX_REPLY_CHARS = 10_000_000
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        *[sse(openai_chunk(PIECE)) for _ in range(PIECES)],
        sse(openai_chunk(finish_reason="stop")), sse("[DONE]")))
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "a very long answer please"})
    texts: list[str] = []
    while True:
        texts.append(await sock.comm.receive_from(timeout=30))
        frame = json.loads(texts[-1])
        assert frame["type"] != "error", frame
        if frame["type"] in ("message.completed", "message.failed", "message.canceled"):
            break
    await wait_for_no_runs()
    frames = [json.loads(text) for text in texts]
    final = frames[-1]["message"]
    stored = await db(Message.objects.get)(pk=final["id"])
    assert len(stored.content) == len(PIECE) * PIECES
    assert len(stored.content.encode()) > ONE_MIB
    assert (frames[-1]["type"], final["status"], stored.status) == (
        "message.completed", "completed", "completed")
    assert len(texts[-1].encode()) < ONE_MIB
    assert "content" not in final
    assert final["content_omitted"] is True
    assert final["content_length"] == len(stored.content)
    # What the client shows, assembled from the deltas, is what is stored.
    assert assemble(frames, final["id"]) == stored.content
    await sock.assert_usable()
    await sock.close()

    # A socket opened now: the sync fits, and the reply is there with its status.
    _, again = await open_socket(alice_client, conversation.id)
    reply = again.sync["messages"][-1]
    assert (reply["id"], reply["status"], reply["content_omitted"]) == (
        final["id"], "completed", True)
    assert reply["content_length"] == len(stored.content)
    assert again.sync["messages_complete"] is False
    await again.close()


def test_it_fits_a_sync_with_an_active_run_over_a_megabyte():
    live = "ü" * 600_000  # 1.2 MB in UTF-8
    frame = {"type": "conversation.sync", "conversation": {"id": "c"},
             "messages": [{"id": "old", "content": "hello", "status": "completed"},
                          {"id": "m", "content": live[:500_000], "status": "streaming"}],
             "messages_complete": True,
             "active_run": {"message_id": "m", "content": live, "tool_calls": [],
                            "status": "streaming"}}
    text = fit_sync(frame)
    assert isinstance(text, str) and len(text.encode()) <= MAX_SEND_BYTES
    synced = json.loads(text)
    assert synced["active_run"] == {"message_id": "m", "tool_calls": [], "status": "streaming",
                                    "content_omitted": True, "content_length": 600_000}
    # The newest message is kept, with its status, even with its text omitted.
    assert synced["messages"] == [{"id": "m", "status": "streaming", "content_omitted": True,
                                   "content_length": 500_000}]
    assert synced["messages_complete"] is False
