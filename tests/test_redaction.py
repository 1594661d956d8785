"""A vendor that quotes the credential it refused never gets it shown, stored or logged.

Each echo path of issue 8 §1 — a 401 JSON body, a 500 text/plain body, an in-stream error event,
a redirect's Location, a Dimedove DELETE 403 — runs through the whole stack against a loopback
vendor; the token must be absent from the frames, the stored row, the API, the admin transcript,
the export, the flash message and the captured logs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.models import Agent, Conversation, Message
from conversations.providers.redact import REDACTED, Redactor, install_log_redaction
from tests.conftest import csrf_headers
from tests.fakevendor import Script, json_script, sse, sse_script
from tests.wsclient import open_socket

pytestmark = [pytest.mark.django_db(transaction=True)]

TOKEN = "sk-live-4f9a8b7c6d5e4f3a2b1c"
db = database_sync_to_async


@pytest.fixture
def openai_agent(db: Any, fake_vendor: Any, monkeypatch: Any) -> Agent:
    monkeypatch.setenv("HOSTILE_API_KEY", TOKEN)
    return Agent.objects.create(
        slug="hostile", name="Hostile", provider="openai", base_url=fake_vendor.url + "/v1",
        token_env="HOSTILE_API_KEY", options={"model": "m"},
    )


def text_script(body: str, status: int) -> Script:
    return Script(status=status, headers={"Content-Type": "text/plain"},
                  chunks=[body.encode()], framing="length")


ECHOES = {
    "401 JSON body": lambda: json_script(
        {"error": {"message": f"Invalid key in header 'Bearer {TOKEN}'"}}, status=401),
    "500 text/plain body": lambda: text_script(
        f"upstream said: Authorization: Bearer {TOKEN} was refused", 500),
    "in-stream error event": lambda: sse_script(
        sse({"error": {"message": f"token {TOKEN} revoked", "type": "auth"}})),
    "302 Location": lambda: Script(
        status=302, headers={"Location": f"https://login.example/?api_key={TOKEN}&next=/"},
        chunks=[b""], framing="length"),
}


@pytest.mark.parametrize("path", list(ECHOES))
async def test_it_redacts_a_vendor_echo_of_the_token_everywhere(
    path: str, alice: Any, alice_client: Client, openai_agent: Agent, fake_vendor: Any,
    reviewer_client: Client, caplog: Any,
):
    caplog.set_level(logging.DEBUG)
    fake_vendor.add_route("POST", "/v1/chat/completions", ECHOES[path]())
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "hello", "client_id": "c1"})
    frames = await sock.recv_until("message.failed", "message.completed")
    await sock.assert_usable()
    await sock.close()

    failed = frames[-1]
    assert failed["type"] == "message.failed"
    assert failed["message"]["error"]["message"], "the user is still told what went wrong"
    assert TOKEN not in json.dumps(frames)
    stored = await db(Message.objects.get)(conversation=conversation, role="assistant")
    assert stored.error_message and TOKEN not in stored.error_message
    if path != "302 Location":
        assert REDACTED in stored.error_message  # the rest of the vendor's message is kept

    surfaces = {
        "chat page": await db(alice_client.get)(f"/c/{conversation.id}/"),
        "API GET": await db(alice_client.get)(f"/api/v1/conversations/{conversation.id}"),
        "admin transcript": await db(reviewer_client.get)(
            f"/admin/conversations/conversation/{conversation.id}/change/"),
        "JSONL export": await db(reviewer_client.get)(
            "/api/v1/conversations/export?format=jsonl"),
    }
    for name, response in surfaces.items():
        assert response.status_code == 200, name
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert TOKEN.encode() not in body, name
    assert TOKEN not in caplog.text
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


DIMEDOVE_CONVERSATION = "/v1/apps/app_1/conversations/conv_1"


@pytest.fixture
def dimedove_conversation(db: Any, alice: Any, fake_vendor: Any, monkeypatch: Any) -> Any:
    monkeypatch.setenv("DOVE_API_KEY", TOKEN)
    agent = Agent.objects.create(
        slug="dove", name="Dove", provider="dimedove", base_url=fake_vendor.url,
        token_env="DOVE_API_KEY", options={"app_id": "app_1"},
    )
    fake_vendor.add_route("DELETE", DIMEDOVE_CONVERSATION, json_script(
        {"error": {"message": f"key {TOKEN} may not delete", "code": "forbidden"}}, status=403))
    return Conversation.objects.create(owner=alice, agent=agent, vendor_conversation_id="conv_1")


def test_it_redacts_a_dimedove_delete_refusal_from_the_api_answer_and_logs(
    api_client: Client, dimedove_conversation: Conversation, caplog: Any
):
    caplog.set_level(logging.DEBUG)
    response = api_client.delete(f"/api/v1/conversations/{dimedove_conversation.id}",
                                 **csrf_headers(api_client))
    assert response.status_code == 200
    body = response.json()
    assert body["deleted"] is True and body["vendor_error"]["code"] == "vendor_auth"
    assert TOKEN not in response.content.decode()
    assert REDACTED in body["vendor_error"]["message"]
    assert not Conversation.objects.filter(pk=dimedove_conversation.pk).exists()
    assert "vendor delete" in caplog.text and TOKEN not in caplog.text


def test_it_redacts_a_dimedove_delete_refusal_from_the_flash_message(
    alice_client: Client, dimedove_conversation: Conversation, caplog: Any
):
    caplog.set_level(logging.DEBUG)
    response = alice_client.post(f"/c/{dimedove_conversation.id}/delete", follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert shown and any(REDACTED in m for m in shown)
    assert all(TOKEN not in m for m in shown)
    assert TOKEN not in response.content.decode() and TOKEN not in caplog.text


def test_it_redacts_the_admin_test_connection(
    fake_vendor: Any, openai_agent: Agent, staff: Any
):
    fake_vendor.add_route("POST", "/v1/chat/completions", ECHOES["401 JSON body"]())
    client = Client()
    client.force_login(staff)
    response = client.post(
        f"/admin/conversations/agent/{openai_agent.pk}/test-connection/", follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert any("vendor_auth" in m and REDACTED in m for m in shown)
    assert TOKEN not in response.content.decode()


def test_it_redacts_log_lines_that_quote_a_token_variable(monkeypatch: Any, caplog: Any):
    """The second line of defence: a record is redacted when it is made, whoever logs it."""
    install_log_redaction()
    monkeypatch.setenv("SOME_VENDOR_TOKEN", TOKEN)
    caplog.set_level(logging.INFO)
    logging.getLogger("anything").warning("vendor said %s", f"bad key {TOKEN}")
    try:
        raise ValueError(f"refused {TOKEN}")
    except ValueError:
        logging.getLogger("anything").exception("failed")
    assert caplog.records[0].getMessage() == f"vendor said bad key {REDACTED}"
    assert TOKEN not in caplog.text


def test_it_keeps_reply_text_that_explains_authorization_headers():
    """Reply content loses only the token value; errors also lose Bearer/Authorization echoes."""
    redactor = Redactor([TOKEN])
    assert redactor.content("Send `Authorization: Bearer <your key>`.") == (
        "Send `Authorization: Bearer <your key>`.")
    assert redactor.content(f"key={TOKEN}") == f"key={REDACTED}"
    assert redactor.text("Authorization: Basic dXNlcjpwYXNz") == f"Authorization: {REDACTED}"
    assert redactor.text("Bearer abc.def") == f"Bearer {REDACTED}"
    assert Redactor(["short"]).content("short") == "short"  # too short to be a token
