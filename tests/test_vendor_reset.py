"""A vendor that resets the TCP connection mid-reply (issue 9 §9) ends the reply as
`vendor_truncated` with a readable message, like a close without the final chunk: the text so
far is kept. Real loopback vendor (tests/fakevendor.py `Hangup(reset=True)`: SO_LINGER 0, then
close, so the kernel sends RST), through the whole relay, database checked."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.events import ErrorCode
from conversations.models import Agent, Conversation, Message
from conversations.providers.base import error_for_exception
from tests.fakevendor import Hangup, Pause, json_script, openai_chunk, sse, sse_script
from tests.test_vendors_relay import APP, dimedove_conversation
from tests.wsclient import assemble, open_socket, wait_for_no_runs

pytestmark = [pytest.mark.django_db(transaction=True)]
db = database_sync_to_async


async def reply_until_reset(client: Client, owner: Any, agent: Agent) -> tuple[dict[str, Any],
                                                                             Message, str]:
    conversation = await db(Conversation.objects.create)(owner=owner, agent=agent)
    _, sock = await open_socket(client, conversation.id)
    await sock.send({"type": "message.send", "content": "tell me"})
    frames = await sock.recv_until("message.failed", "message.completed", timeout=15)
    await wait_for_no_runs()
    final = frames[-1]["message"]
    stored = await db(Message.objects.get)(pk=final["id"])
    shown = assemble(frames, final["id"])
    await sock.assert_usable()
    await sock.close()
    assert frames[-1]["type"] == "message.failed"
    return final, stored, shown


async def test_it_reports_an_openai_reset_as_truncated_and_keeps_the_text(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any
):
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("Half of ")), sse(openai_chunk("the answer")), Pause(0.05),
        Hangup(reset=True)))
    final, stored, shown = await reply_until_reset(alice_client, alice, openai_agent)
    assert (stored.status, stored.error_code) == ("failed", "vendor_truncated")
    assert stored.error_message.startswith("The connection to the vendor broke")
    assert final["error"] == {"code": "vendor_truncated", "message": stored.error_message}
    assert stored.content == shown == "Half of the answer"


async def test_it_reports_a_dimedove_reset_as_truncated_and_keeps_the_text(
    alice_client: Client, alice: Any, dimedove_agent: Agent, fake_vendor: Any  # noqa: F811
):
    fake_vendor.add_route("POST", APP, json_script(dimedove_conversation()))
    fake_vendor.add_route("POST", f"{APP}/conv_1", sse_script(
        sse({"id": "resp_1", "object": "response", "status": "in_progress",
             "conversation_id": "conv_1"}, event="response.created"),
        sse({"type": "response.output_text.delta", "delta": "Your parcel", "output_index": 0,
             "content_index": 0}, event="response.output_text.delta"),
        Pause(0.05), Hangup(reset=True)))
    final, stored, shown = await reply_until_reset(alice_client, alice, dimedove_agent)
    assert (stored.status, stored.error_code) == ("failed", "vendor_truncated")
    assert stored.error_message.startswith("The connection to the vendor broke")
    assert final["error"]["code"] == "vendor_truncated"
    assert stored.content == shown == "Your parcel"


def test_it_never_maps_a_transport_error_to_an_empty_message():
    # httpx's exceptions often carry no text (a reset: ReadError("") from BrokenResourceError()).
    for exc, code in [
        (httpx.ReadError(""), ErrorCode.VENDOR_TRUNCATED),
        (httpx.WriteError(""), ErrorCode.VENDOR_UNREACHABLE),
        (httpx.ProxyError(""), ErrorCode.VENDOR_UNREACHABLE),
        (httpx.ConnectError(""), ErrorCode.VENDOR_UNREACHABLE),
    ]:
        err = error_for_exception(exc)
        assert err.code == code
        assert err.message.strip() and err.message[-1] == "."
    err = error_for_exception(httpx.ReadError("[Errno 104] Connection reset by peer"))
    assert err.message == ("The connection to the vendor broke before the reply ended "
                           "([Errno 104] Connection reset by peer).")
    assert error_for_exception(httpx.WriteError("")).message == (
        "Network error talking to the vendor: WriteError.")
