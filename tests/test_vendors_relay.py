"""Seed vendors through the whole relay: websocket in, loopback vendor out, database checked."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.models import Agent, Conversation, Message
from tests.conftest import csrf_headers
from tests.fakevendor import Pause, json_script, sse, sse_script
from tests.wsclient import open_socket, wait_for_no_runs

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
APP = "/v1/apps/app_1/conversations"
TITLES = {"en-ca": "Parcel question", "fr-ca": "Question sur le colis"}


def dimedove_conversation(**fields: Any) -> dict[str, Any]:
    return {"id": "conv_1", "object": "conversation", "created_at": 1700000000,
            "title": None, "external_user_id": "cust-9", "generated_title": None,
            "metadata": None, **fields}


def dimedove_reply(text: str) -> Any:
    return sse_script(
        sse({"id": "resp_1", "object": "response", "status": "in_progress",
             "conversation_id": "conv_1"}, event="response.created"),
        sse({"type": "response.output_text.delta", "delta": text[:5], "output_index": 0,
             "content_index": 0}, event="response.output_text.delta", crlf=True),
        Pause(0.05),
        sse({"type": "response.output_text.delta", "delta": text[5:], "output_index": 0,
             "content_index": 0}, event="response.output_text.delta"),
        sse({"type": "response.data_spec", "data": {"type": "patch", "patch": {
            "op": "add", "path": "/card", "value": {"title": "Parcel"}}}, "output_index": 1},
            event="response.data_spec"),
        b": heartbeat\n\n",
        sse({"id": "resp_1", "status": "completed"}, event="response.completed"),
    )


async def test_it_runs_a_dimedove_conversation_end_to_end(
    alice_client: Client, alice: Any, dimedove_agent: Agent, fake_vendor: Any
):
    conversation = await db(Conversation.objects.create)(
        owner=alice, agent=dimedove_agent, external_user_id="cust-9", metadata={"tier": "gold"})
    fake_vendor.add_route("POST", APP, json_script(dimedove_conversation()))
    fake_vendor.add_route("POST", f"{APP}/conv_1", [dimedove_reply("Your parcel left."),
                                                   dimedove_reply("It arrives Monday.")])
    fake_vendor.add_route("GET", f"{APP}/conv_1",
                          json_script(dimedove_conversation(generated_title=TITLES)))
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "Where is it?",
                     "metadata": {"tier": "gold", "order": "A-1"}})
    frames = await sock.recv_until("message.completed")
    final = frames[-1]["message"]
    assert final["content"] == "Your parcel left."
    data = [f for f in frames if f["type"] == "message.data"]
    assert data[0]["key"] == "data_spec" and data[0]["value"]["patch"]["path"] == "/card"
    updated = await sock.recv_until("conversation.updated")
    assert updated[-1]["conversation"]["generated_title"] == "Parcel question"
    assert updated[-1]["conversation"]["display_title"] == "Parcel question"
    await wait_for_no_runs()
    await db(conversation.refresh_from_db)()
    assert conversation.vendor_conversation_id == "conv_1"
    assert conversation.generated_titles == TITLES
    create, send, _title = fake_vendor.requests[:3]
    assert create.json() == {"external_user_id": "cust-9", "metadata": {"tier": "gold",
                                                                         "order": "A-1"}}
    assert send.json()["metadata"] == {"tier": "gold", "order": "A-1"}
    assert send.headers["authorization"] == "Bearer sk_live_secret"
    stored = await db(Message.objects.get)(pk=final["id"])
    assert stored.extra["data_spec"][0]["patch"]["value"] == {"title": "Parcel"}
    # The second message reuses the vendor conversation: no second create.
    await sock.send({"type": "message.send", "content": "And when?"})
    frames = await sock.recv_until("message.completed")
    assert frames[-1]["message"]["content"] == "It arrives Monday."
    await wait_for_no_runs()
    assert [r.path for r in fake_vendor.requests].count(APP) == 1
    await sock.close()


def test_it_deletes_at_the_vendor_and_reports_a_vendor_failure(
    api_client: Client, alice: Any, dimedove_agent: Agent, fake_vendor: Any
):
    ok = Conversation.objects.create(owner=alice, agent=dimedove_agent,
                                     vendor_conversation_id="conv_ok")
    fake_vendor.add_route("DELETE", f"{APP}/conv_ok", json_script(
        {"id": "conv_ok", "object": "conversation", "deleted": True}))
    response = api_client.delete(f"/api/v1/conversations/{ok.id}", **csrf_headers(api_client))
    assert response.status_code == 204
    assert fake_vendor.requests[-1].method == "DELETE"
    assert fake_vendor.requests[-1].headers["authorization"] == "Bearer sk_live_secret"

    broken = Conversation.objects.create(owner=alice, agent=dimedove_agent,
                                         vendor_conversation_id="conv_bad")
    fake_vendor.add_route("DELETE", f"{APP}/conv_bad", json_script(
        {"error": {"message": "Internal error", "type": "internal_error", "param": None,
                   "code": None}}, status=500))
    response = api_client.delete(f"/api/v1/conversations/{broken.id}",
                                 **csrf_headers(api_client))
    assert response.status_code == 200
    body = response.json()
    assert body["deleted"] is True
    assert body["vendor_error"]["code"] == "vendor_unavailable"
    assert "Internal error" in body["vendor_error"]["message"]
    assert not Conversation.objects.filter(pk__in=[ok.pk, broken.pk]).exists()


def test_it_warns_in_the_page_when_the_vendor_keeps_its_copy(
    alice_client: Client, alice: Any, dimedove_agent: Agent, refused_url: str
):
    dimedove_agent.base_url = refused_url
    dimedove_agent.save()
    conversation = Conversation.objects.create(owner=alice, agent=dimedove_agent,
                                               vendor_conversation_id="conv_x")
    response = alice_client.post(f"/c/{conversation.id}/delete", follow=True)
    text = response.content.decode()
    assert "Conversation deleted." in text
    assert "The vendor could not delete its copy" in text
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


async def test_it_tells_the_user_when_loop_health_lost_the_conversation(
    alice_client: Client, alice: Any, fake_vendor: Any
):
    agent = await db(Agent.objects.create)(
        slug="loop", name="Loop", provider="loop", base_url=fake_vendor.url)
    conversation = await db(Conversation.objects.create)(
        owner=alice, agent=agent, vendor_conversation_id="gone")
    fake_vendor.add_route("POST", "/v1/conversations/gone/messages", json_script(
        {"error": "not_found", "message": "Conversation not found"}, status=404))
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "hello?"})
    final = (await sock.recv_until("message.failed"))[-1]["message"]
    assert final["error"]["code"] == "vendor_conversation_lost"
    assert "Start a new conversation" in final["error"]["message"]
    await wait_for_no_runs()
    await sock.close()
