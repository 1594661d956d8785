from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from conversations.models import Conversation, Feedback, Message
from tests.conftest import csrf_headers

pytestmark = pytest.mark.django_db


@pytest.fixture
def reply(conversation: Conversation) -> Message:
    Message.objects.create(conversation=conversation, seq=1, role="user", content="hi")
    return Message.objects.create(conversation=conversation, seq=2, role="assistant",
                                  content="Hello")


def put(client: Client, message: Message, body: Any) -> Any:
    return client.put(f"/api/v1/messages/{message.id}/feedback",
                      body if isinstance(body, str) else json.dumps(body),
                      content_type="application/json", **csrf_headers(client))


def test_it_records_and_changes_feedback(api_client: Client, reply: Message, alice: Any):
    r = put(api_client, reply, {"score": 1, "comment": " Spot on "})
    assert r.status_code == 200 and r.json() == {"score": 1, "comment": "Spot on"}
    r = put(api_client, reply, {"score": -1})
    assert r.json() == {"score": -1, "comment": ""}
    feedback = Feedback.objects.get()
    assert (feedback.score, feedback.author, feedback.message) == (-1, alice, reply)
    data = api_client.get(f"/api/v1/conversations/{reply.conversation_id}").json()
    assert data["messages"][1]["feedback"] == {"score": -1, "comment": ""}
    assert data["messages"][0]["feedback"] is None
    r = api_client.delete(f"/api/v1/messages/{reply.id}/feedback", **csrf_headers(api_client))
    assert r.status_code == 204 and not Feedback.objects.exists()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"score": 2}, 422),
        ({"score": True}, 422),
        ({"score": "1"}, 422),
        ({}, 422),
        ({"score": 1, "comment": 5}, 422),
        ({"score": 1, "comment": "x" * 2001}, 422),
        ({"score": 1, "mood": "happy"}, 422),
        ("{oops", 400),
    ],
)
def test_it_rejects_bad_feedback(api_client: Client, reply: Message, body: Any, status: int):
    r = put(api_client, reply, body)
    assert r.status_code == status
    assert r.json()["error"]["code"] in ("invalid", "bad_json")
    assert not Feedback.objects.exists()


def test_it_refuses_feedback_on_other_users_and_user_messages(
    api_client: Client, reply: Message, bob: Any, demo_agent: Any
):
    theirs = Conversation.objects.create(owner=bob, agent=demo_agent)
    their_reply = Message.objects.create(conversation=theirs, seq=1, role="assistant",
                                         content="x")
    assert put(api_client, their_reply, {"score": 1}).status_code == 404
    user_message = reply.conversation.messages.get(role="user")
    assert put(api_client, user_message, {"score": 1}).status_code == 404
    streaming = Message.objects.create(conversation=reply.conversation, seq=3,
                                       role="assistant", status="streaming")
    assert put(api_client, streaming, {"score": 1}).status_code == 409
    assert not Feedback.objects.exists()


def test_it_filters_conversations_by_customer(api_client: Client, alice: Any, demo_agent: Any):
    Conversation.objects.create(owner=alice, agent=demo_agent, external_user_id="cust-1",
                                title="a")
    Conversation.objects.create(owner=alice, agent=demo_agent, external_user_id="cust-2",
                                title="b")
    data = api_client.get("/api/v1/conversations?external_user_id=cust-1").json()
    assert [c["title"] for c in data["data"]] == ["a"]
