from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


def test_it_requires_login_everywhere(conversation: Conversation):
    anon = Client()
    for url in ["/", "/conversations/new", f"/c/{conversation.id}/",
                f"/c/{conversation.id}/delete"]:
        r = anon.get(url)
        assert r.status_code == 302 and r["Location"].startswith("/accounts/login/"), url


def test_it_logs_in_and_out(alice: Any, demo_agent: Any):
    client = Client()
    r = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert r.status_code == 302
    assert client.get("/").status_code == 200
    bad = Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert bad.status_code == 200 and b"correct username and password" in bad.content
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_it_lists_only_my_conversations(alice_client: Client, bob: Any, conversation: Any,
                                        demo_agent: Any):
    Conversation.objects.create(owner=bob, agent=demo_agent, title="Bob's secret")
    body = alice_client.get("/").content.decode()
    assert "Refund question" in body and "Bob&#x27;s secret" not in body and "Bob's" not in body


def test_it_searches_and_filters_archived(alice_client: Client, alice: Any, demo_agent: Any):
    Conversation.objects.create(owner=alice, agent=demo_agent, title="Shipping delay")
    Conversation.objects.create(owner=alice, agent=demo_agent, title="Old thing", archived=True)
    found = alice_client.get("/?q=shipping").content.decode()
    assert "Shipping delay" in found and "Old thing" not in found
    archived = alice_client.get("/?archived=1").content.decode()
    assert "Old thing" in archived and "Shipping delay" not in archived


def test_it_paginates_the_sidebar(alice_client: Client, alice: Any, demo_agent: Any):
    for i in range(31):
        Conversation.objects.create(owner=alice, agent=demo_agent, title=f"Case {i:02d}")
    r = alice_client.get("/")
    assert r.context["page_obj"].has_next()
    assert len(r.context["conversations"]) == 30
    assert len(alice_client.get("/?page=2").context["conversations"]) == 1


def test_it_creates_a_conversation_from_the_form(alice_client: Client, demo_agent: Any):
    r = alice_client.post("/conversations/new", {
        "agent": "demo", "title": "Printer", "external_user_id": "cust-7",
        "metadata": '{"tier": "gold"}'})
    conversation = Conversation.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/c/{conversation.id}/"
    assert (conversation.title, conversation.external_user_id, conversation.metadata) == (
        "Printer", "cust-7", {"tier": "gold"})


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"agent": "demo", "metadata": "{oops"}, "Metadata is not valid JSON"),
        ({"agent": "demo", "metadata": "[1]"}, "Metadata must be a JSON object."),
        ({"agent": "demo", "metadata": json.dumps({"x": "y" * 17_000})}, "at most 16 KB"),
        ({"agent": "nope"}, "Select a valid choice"),
        ({"agent": "demo", "title": "t" * 201}, "at most 200 characters"),
    ],
)
def test_it_rerenders_the_form_with_errors(alice_client: Client, demo_agent: Any, data: Any,
                                           error: str):
    r = alice_client.post("/conversations/new", data)
    assert r.status_code == 400
    assert error in r.content.decode()
    assert Conversation.objects.count() == 0


def test_it_shows_the_chat_page_with_initial_state(alice_client: Client, conversation: Any):
    Message.objects.create(conversation=conversation, seq=1, role="user",
                           content="<script>alert(1)</script>")
    r = alice_client.get(f"/c/{conversation.id}/")
    assert r.status_code == 200
    body = r.content.decode()
    assert "<script>alert(1)</script>" not in body  # json_script escapes it
    state = r.context["initial_state"]
    assert state["ws_path"] == f"/ws/conversations/{conversation.id}/"
    assert state["messages"][0]["content"] == "<script>alert(1)</script>"


def test_it_hides_other_users_conversations_with_404(alice_client: Client, bob: Any,
                                                     demo_agent: Any):
    theirs = Conversation.objects.create(owner=bob, agent=demo_agent, title="x")
    assert alice_client.get(f"/c/{theirs.id}/").status_code == 404
    assert alice_client.post(f"/c/{theirs.id}/rename", {"title": "y"}).status_code == 404
    assert alice_client.post(f"/c/{theirs.id}/archive", {"archived": "1"}).status_code == 404
    assert alice_client.get(f"/c/{theirs.id}/delete").status_code == 404
    assert alice_client.post(f"/c/{theirs.id}/delete").status_code == 404
    theirs.refresh_from_db()
    assert theirs.title == "x" and not theirs.archived


def test_it_renames_archives_and_deletes(alice_client: Client, conversation: Any):
    url = f"/c/{conversation.id}/"
    assert alice_client.post(url + "rename", {"title": "  Late   refund "}).status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "Late refund"
    bad = alice_client.post(url + "rename", {"title": "x" * 201}, follow=True)
    assert "at most 200 characters" in bad.content.decode()
    alice_client.post(url + "archive", {"archived": "1"})
    conversation.refresh_from_db()
    assert conversation.archived
    alice_client.post(url + "archive", {"archived": "0"})
    conversation.refresh_from_db()
    assert not conversation.archived
    confirm = alice_client.get(url + "delete")
    assert confirm.status_code == 200 and "Late refund" in confirm.content.decode()
    assert alice_client.get(url + "rename").status_code == 405
    r = alice_client.post(url + "delete")
    assert r.status_code == 302 and not Conversation.objects.filter(pk=conversation.pk).exists()


def test_it_checks_csrf_on_forms(alice: Any, conversation: Any):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/c/{conversation.id}/rename", {"title": "hack"}).status_code == 403
    conversation.refresh_from_db()
    assert conversation.title == "Refund question"
