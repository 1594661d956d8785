from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from conversations.models import Conversation, Message, ToolCall
from tests.conftest import csrf_headers

pytestmark = pytest.mark.django_db


def post(client: Client, url: str, body: Any, **extra: Any) -> Any:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(url, data, content_type="application/json", **csrf_headers(client), **extra)


def patch(client: Client, url: str, body: Any) -> Any:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.patch(url, data, content_type="application/json", **csrf_headers(client))


def test_it_creates_a_conversation_with_the_default_agent(api_client: Client, demo_agent: Any):
    r = post(api_client, "/api/v1/conversations", {
        "title": "Billing", "external_user_id": "cust-42", "metadata": {"plan": "pro"}})
    assert r.status_code == 201
    body = r.json()
    assert body["agent"] == "demo"
    assert body["title"] == "Billing"
    assert body["external_user_id"] == "cust-42"
    assert body["metadata"] == {"plan": "pro"}
    assert body["archived"] is False
    assert set(body) >= {"id", "generated_title", "created_at", "updated_at"}
    assert Conversation.objects.get(pk=body["id"]).owner.username == "alice"


def test_it_rejects_a_post_without_the_csrf_token(api_client: Client, demo_agent: Any):
    r = api_client.post("/api/v1/conversations", "{}", content_type="application/json")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "csrf_failed"
    assert Conversation.objects.count() == 0


def test_it_answers_401_to_anonymous_clients(db: Any):
    r = Client().get("/api/v1/conversations")
    assert r.status_code == 401
    assert r["WWW-Authenticate"] == 'Bearer realm="chatsite"'
    assert r.json()["error"] == {
        "code": "unauthenticated", "details": {},
        "message": "Log in, or send a personal API token as “Authorization: Bearer …”."}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "bad_json"),
        ("[1, 2]", 400, "bad_json"),
        ({"agent": "nope"}, 422, "invalid"),
        ({"metadata": [1]}, 422, "invalid"),
        ({"metadata": "x"}, 422, "invalid"),
        ({"title": 5}, 422, "invalid"),
        ({"title": "x" * 201}, 422, "invalid"),
        ({"colour": "red"}, 422, "invalid"),
        ({"metadata": {"blob": "x" * 17_000}}, 413, "too_large"),
    ],
)
def test_it_rejects_bad_create_bodies(
    api_client: Client, demo_agent: Any, body: Any, status: int, code: str
):
    r = post(api_client, "/api/v1/conversations", body)
    assert r.status_code == status, r.content
    error = r.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["details"], dict)
    assert Conversation.objects.count() == 0


def test_it_refuses_bodies_over_64_kib_with_413(api_client: Client, demo_agent: Any):
    r = post(api_client, "/api/v1/conversations", {"title": "x" * 70_000})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


def test_it_answers_405_with_allow(api_client: Client):
    r = api_client.put("/api/v1/conversations", "{}", content_type="application/json",
                       **csrf_headers(api_client))
    assert r.status_code == 405
    assert r["Allow"] == "GET, POST"
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_it_answers_404_json_for_unknown_endpoints(api_client: Client):
    r = api_client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_it_lists_searches_and_paginates(api_client: Client, alice: Any, bob: Any, demo_agent: Any):
    for i in range(35):
        Conversation.objects.create(owner=alice, agent=demo_agent, title=f"Topic {i}")
    hidden = Conversation.objects.create(owner=alice, agent=demo_agent, title="old", archived=True)
    Conversation.objects.create(owner=bob, agent=demo_agent, title="Topic bob")
    first = api_client.get("/api/v1/conversations").json()
    assert len(first["data"]) == 30 and first["page"] == 1 and first["has_more"] is True
    second = api_client.get("/api/v1/conversations?page=2").json()
    assert len(second["data"]) == 5 and second["has_more"] is False
    titles = {c["title"] for c in first["data"] + second["data"]}
    assert "Topic bob" not in titles and "old" not in titles
    archived = api_client.get("/api/v1/conversations?archived=1").json()
    assert [c["id"] for c in archived["data"]] == [str(hidden.id)]
    found = api_client.get("/api/v1/conversations?q=topic 7").json()
    assert {c["title"] for c in found["data"]} == {"Topic 7"}
    assert api_client.get("/api/v1/conversations?page=x").status_code == 422


def test_it_searches_message_text(api_client: Client, conversation: Conversation):
    Message.objects.create(conversation=conversation, seq=1, role="user", content="my parcel")
    found = api_client.get("/api/v1/conversations?q=PARCEL").json()
    assert [c["id"] for c in found["data"]] == [str(conversation.id)]


def test_it_returns_a_conversation_with_its_messages(api_client: Client, conversation: Any):
    Message.objects.create(conversation=conversation, seq=1, role="user", content="hi")
    reply = Message.objects.create(
        conversation=conversation, seq=2, role="assistant", content="Hello", status="failed",
        error_code="vendor_timeout", error_message="timed out", usage={"total_tokens": 3})
    ToolCall.objects.create(message=reply, call_id="c1", name="lookup", arguments='{"a":1}',
                            result={"ok": True}, status="completed")
    body = api_client.get(f"/api/v1/conversations/{conversation.id}").json()
    assert body["title"] == "Refund question"
    user_msg, assistant = body["messages"]
    assert user_msg["role"] == "user" and user_msg["content"] == "hi"
    assert assistant["error"] == {"code": "vendor_timeout", "message": "timed out"}
    assert assistant["token_usage"] == {"total_tokens": 3}
    assert assistant["tool_calls"] == [{"id": "c1", "name": "lookup", "arguments": '{"a":1}',
                                        "result": {"ok": True}, "status": "completed"}]
    assert set(assistant) >= {"id", "status", "created_at", "completed_at"}


def test_it_patches_title_metadata_and_archived(api_client: Client, conversation: Any):
    url = f"/api/v1/conversations/{conversation.id}"
    r = patch(api_client, url, {"title": "New", "metadata": {"k": 1}, "archived": True})
    assert r.status_code == 200
    conversation.refresh_from_db()
    assert (conversation.title, conversation.metadata, conversation.archived) == (
        "New", {"k": 1}, True)
    bad = patch(api_client, url, {"archived": "yes"})
    assert bad.status_code == 422 and bad.json()["error"]["details"] == {"field": "archived"}
    conversation.refresh_from_db()
    assert conversation.archived is True


def test_it_deletes_with_204(api_client: Client, conversation: Any):
    r = api_client.delete(f"/api/v1/conversations/{conversation.id}", **csrf_headers(api_client))
    assert r.status_code == 204
    assert not Conversation.objects.filter(pk=conversation.id).exists()


def test_it_answers_404_for_other_users_conversations(api_client: Client, bob: Any,
                                                      demo_agent: Any):
    theirs = Conversation.objects.create(owner=bob, agent=demo_agent, title="secret")
    url = f"/api/v1/conversations/{theirs.id}"
    assert api_client.get(url).status_code == 404
    assert patch(api_client, url, {"title": "mine"}).status_code == 404
    assert api_client.delete(url, **csrf_headers(api_client)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.title == "secret"


def test_it_rate_limits_writes_with_429(api_client: Client, demo_agent: Any, settings: Any,
                                        monkeypatch: Any):
    import time
    import types

    from django.core.cache import cache

    from conversations import ratelimit

    # One fixed-window minute for the whole test, however long 125 requests take.
    frozen = time.time()
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(
        time=lambda: frozen, monotonic=time.monotonic))
    cache.clear()
    statuses = [post(api_client, "/api/v1/conversations", {}).status_code for _ in range(125)]
    assert statuses[:120] == [201] * 120
    assert statuses[-1] == 429
    cache.clear()
