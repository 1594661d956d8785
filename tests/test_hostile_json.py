"""JSON that parses but cannot be stored, and filters that cannot be compared (issue 8 §2, §3).

A lone surrogate, NUL, NaN/Infinity or nesting past 32 levels gets a clear error on every input
path — websocket frame, API body, form field, query string — with nothing stored and the
connection usable; an export filter past year 9999 is refused before the first byte, and a
failure inside a streamed export ends the stream instead of breaking the server.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.models import Conversation, Message
from conversations.review import export
from tests.conftest import csrf_headers
from tests.wsclient import open_socket

db = database_sync_to_async

DEEP = "[" * 1000 + "]" * 1000
# Raw JSON texts: json.dumps would escape or refuse these, so they are written by hand.
HOSTILE_VALUES = {
    "lone surrogate": '"hi \\ud800"',
    "NUL": '"a\\u0000b"',
    "NaN": "NaN",
    "Infinity": "-Infinity",
    "overflowing float": "1e400",
    "deep nesting": DEEP,
    "33 levels": "[" * 33 + "]" * 33,
}


def no_tracebacks(caplog: Any) -> None:
    assert not [r for r in caplog.records if r.exc_info], "no traceback may be logged"
    assert "Traceback" not in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", list(HOSTILE_VALUES))
async def test_it_refuses_unstorable_json_on_the_websocket_and_keeps_the_socket(
    name: str, alice_client: Client, conversation: Conversation, caplog: Any
):
    caplog.set_level(logging.WARNING)
    value = HOSTILE_VALUES[name]
    _, sock = await open_socket(alice_client, conversation.id)
    for field in ("content", "metadata"):
        await sock.send(
            f'{{"type": "message.send", "client_id": "c-{field}", "{field}": {value}}}')
        frame = await sock.recv()
        assert frame["type"] == "error"
        assert frame["code"] == "invalid", frame
        assert frame["message"]
        if name not in ("NaN", "Infinity", "deep nesting"):  # refused while parsing: no id
            assert frame["client_id"] == f"c-{field}"
        await sock.assert_usable()
    await sock.send(f'{{"type": "interrupt.resume", "interrupt_id": "x", "payload": {value}}}')
    assert (await sock.recv())["code"] == "invalid"
    await sock.assert_usable()
    await sock.close()
    assert await db(Message.objects.filter(conversation=conversation).count)() == 0
    no_tracebacks(caplog)


@pytest.mark.django_db(transaction=True)
async def test_it_still_takes_a_good_message_after_a_refused_one(
    alice_client: Client, conversation: Conversation
):
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send('{"type": "message.send", "client_id": "bad", "content": "hi \\ud800"}')
    assert (await sock.recv())["code"] == "invalid"
    await sock.send({"type": "message.send", "client_id": "good", "content": "hello"})
    frames = await sock.recv_until("message.completed")
    assert frames[-1]["message"]["status"] == "completed"
    contents = await db(lambda: list(Message.objects.filter(
        conversation=conversation, role="user").values_list("content", flat=True)))()
    assert contents == ["hello"]
    await sock.close()


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(HOSTILE_VALUES))
def test_it_answers_422_to_unstorable_api_bodies(
    name: str, api_client: Client, conversation: Conversation, caplog: Any
):
    caplog.set_level(logging.WARNING)
    value = HOSTILE_VALUES[name]
    before = Conversation.objects.count()
    for method, url, body in (
        ("post", "/api/v1/conversations", f'{{"title": {value}}}'),
        ("post", "/api/v1/conversations", f'{{"metadata": {{"k": {value}}}}}'),
        ("patch", f"/api/v1/conversations/{conversation.id}", f'{{"title": {value}}}'),
    ):
        response = getattr(api_client, method)(
            url, data=body, content_type="application/json", **csrf_headers(api_client))
        assert response.status_code == 422, (method, body[:40], response.content[:200])
        error = response.json()["error"]
        assert error["code"] == "invalid" and error["message"]
    assert Conversation.objects.count() == before
    conversation.refresh_from_db()
    assert conversation.title == "Refund question"
    no_tracebacks(caplog)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["lone surrogate", "NaN", "deep nesting", "NUL"])
def test_it_refuses_unstorable_metadata_in_the_new_conversation_form(
    name: str, alice_client: Client, demo_agent: Any, caplog: Any
):
    caplog.set_level(logging.WARNING)
    response = alice_client.post("/conversations/new", {
        "agent": "demo", "title": "t", "metadata": f'{{"k": {HOSTILE_VALUES[name]}}}'})
    if name == "NUL":
        # A literal NUL in a form field is refused before any view.
        response = alice_client.post("/conversations/new", {"agent": "demo", "title": "a\x00"})
        assert response.status_code == 400
    else:
        assert response.status_code == 400  # the form again, with the field's error
        assert response.context["form"].errors["metadata"]
    assert Conversation.objects.count() == 0
    no_tracebacks(caplog)


@pytest.mark.django_db
def test_it_refuses_odd_pages_and_nul_in_query_strings(
    api_client: Client, alice_client: Client, conversation: Conversation, caplog: Any
):
    caplog.set_level(logging.WARNING)
    for page in ("²", "١", "9" * 5000, "0", "-1"):
        response = api_client.get("/api/v1/conversations", {"page": page})
        assert response.status_code == 422, page
        assert response.json()["error"]["details"] == {"field": "page"}
    assert alice_client.get("/", {"page": "²"}).status_code == 200
    response = api_client.get("/api/v1/conversations", {"q": "a\x00b"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    assert alice_client.get("/", {"q": "a\x00b"}).status_code == 400
    assert api_client.get("/api/v1/conversations").status_code == 200
    no_tracebacks(caplog)


# Exports -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("params", [
    {"since": "9999-12-31T23:59:59-14:00"},
    {"until": "9999-12-31"},
    {"since": "0001-01-01T00:00:00+14:00"},
    {"since": "2025-02-30"},
])
def test_it_refuses_export_bounds_that_cannot_be_compared(
    params: dict[str, str], reviewer_client: Client, conversation: Conversation, caplog: Any
):
    caplog.set_level(logging.WARNING)
    for fmt in ("jsonl", "csv"):
        response = reviewer_client.get("/api/v1/conversations/export",
                                       {"format": fmt, **params})
        assert response.status_code == 422, (params, fmt)
        assert response.json()["error"]["details"]["field"] in ("since", "until")
    assert reviewer_client.get("/api/v1/conversations/export",
                               {"format": "jsonl"}).status_code == 200
    no_tracebacks(caplog)


@pytest.mark.django_db
def test_it_ends_a_failing_export_with_an_error_line(
    reviewer_client: Client, conversation: Conversation, monkeypatch: Any, caplog: Any
):
    """Something breaking mid-stream (here: the record builder) ends the download with an
    error line after the rows already sent, logs once, and the next request is answered."""
    Conversation.objects.create(owner=conversation.owner, agent=conversation.agent, title="2nd")
    real = export.conversation_record
    calls = []

    def flaky(c: Conversation) -> dict[str, Any]:
        calls.append(c.pk)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(c)

    monkeypatch.setattr(export, "conversation_record", flaky)
    response = reviewer_client.get("/api/v1/conversations/export", {"format": "jsonl"})
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["id"] == str(conversation.pk)
    assert json.loads(lines[1])["error"]["code"] == "export_failed"
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    assert reviewer_client.get("/api/v1/conversations").status_code == 200
