"""A vendor that streams without end cannot fill the database (issue 8 §8): past
MAX_REPLY_CHARS the run fails with vendor_too_large and the text up to the cap is kept."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.models import Agent, Conversation, Message
from tests.test_relay import stream_of
from tests.wsclient import assemble, open_socket, wait_for_no_runs

pytestmark = [pytest.mark.django_db(transaction=True)]
db = database_sync_to_async


async def test_it_fails_a_reply_past_the_cap_and_keeps_the_text_up_to_it(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any, settings: Any
):
    settings.MAX_REPLY_CHARS = 50
    fake_vendor.add_route("POST", "/v1/chat/completions", stream_of(400))  # ~2,000 characters
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "talk forever"})
    frames = await sock.recv_until("message.failed", "message.completed")
    await wait_for_no_runs()
    final = frames[-1]["message"]
    assert frames[-1]["type"] == "message.failed"
    assert final["error"]["code"] == "vendor_too_large"
    expected = "".join(f"w{i} " for i in range(400))[:50]
    assert final["content"] == expected
    assert assemble(frames, final["id"]) == expected  # what was shown is what is stored
    stored = await db(Message.objects.get)(pk=final["id"])
    assert (stored.status, stored.content, stored.error_code) == (
        "failed", expected, "vendor_too_large")
    await sock.assert_usable()
    await sock.close()
