"""The home page is a composer (issue 11 §1): the chat page in a draft state, with an agent picker
that remembers the last agent used, the customer filter carried, and the "More options…" form."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from conversations.models import Agent, Conversation

DRAFT_ID = "00000000-0000-0000-0000-000000000000"


def page_data(response: Any) -> dict[str, Any]:
    html = response.content.decode()
    match = re.search(r'<script id="chat-initial" type="application/json">(.*?)</script>', html,
                      re.S)
    assert match, "the home page carries the chat's initial state"
    return json.loads(match.group(1))


def picker(response: Any) -> list[tuple[str, bool]]:
    """The agent picker's options: (slug, selected)."""
    html = response.content.decode()
    select = re.search(r'<select id="draft-agent" name="agent">(.*?)</select>', html, re.S)
    assert select
    return [(slug, bool(selected)) for slug, selected in
            re.findall(r'<option value="([^"]+)"( selected)?', select.group(1))]


@pytest.fixture
def agents(demo_agent: Agent) -> dict[str, Agent]:
    return {
        "demo": demo_agent,
        "gpt": Agent.objects.create(slug="gpt", name="GPT", provider="openai",
                                    base_url="http://127.0.0.1:9/v1", options={"model": "m"}),
        "old": Agent.objects.create(slug="old", name="Old bot", provider="demo",
                                    is_active=False),
    }


def touch(conversation: Conversation, minutes_ago: int) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(minutes=minutes_ago))


def test_it_renders_the_chat_as_a_draft_with_the_default_agent(alice_client: Client,
                                                               agents: Any):
    r = alice_client.get("/")
    assert r.status_code == 200
    html = r.content.decode()
    # Inactive agents are not offered; with no conversation yet, the default agent is chosen.
    assert picker(r) == [("demo", True), ("gpt", False)]
    assert "Old bot" not in html
    data = page_data(r)
    assert data["messages"] == [] and data["ws_path"] is None
    assert data["conversation"]["id"] is None
    assert data["conversation"]["agent"] == "demo"
    draft = data["draft"]
    assert draft["placeholder_id"] == DRAFT_ID
    assert draft["create_url"] == "/api/v1/conversations"
    assert draft["chat_url"] == f"/c/{DRAFT_ID}/"
    assert draft["ws_path"] == f"/ws/conversations/{DRAFT_ID}/"
    assert draft["customer"] == "" and draft["listed"] is True
    assert [a["slug"] for a in draft["agents"]] == ["demo", "gpt"]
    # The composer is there and the controls of an existing conversation are not (yet).
    assert 'id="composer-input"' in html and 'placeholder="Message Demo agent…"' in html
    assert re.search(r'<details class="rename-panel" id="rename-panel" hidden>', html)
    assert re.search(r'id="delete-link" href="/c/0{8}-0{4}-0{4}-0{4}-0{12}/delete" hidden>', html)
    assert re.search(r'id="connection-status"[^>]* hidden>', html)
    assert 'href="/conversations/new?agent=demo"' in html  # More options…
    assert 'src="/static/chat/main.js"' in html


def test_it_defaults_to_the_agent_of_the_most_recently_updated_conversation(
        alice_client: Client, alice: Any, bob: Any, agents: Any):
    older = Conversation.objects.create(owner=alice, agent=agents["demo"], title="Older")
    recent = Conversation.objects.create(owner=alice, agent=agents["gpt"], title="Recent")
    touch(older, 30)
    touch(recent, 5)
    # Another user's newer conversation does not count.
    touch(Conversation.objects.create(owner=bob, agent=agents["demo"]), 1)
    r = alice_client.get("/")
    assert picker(r) == [("demo", False), ("gpt", True)]
    assert page_data(r)["conversation"]["agent"] == "gpt"
    assert 'placeholder="Message GPT…"' in r.content.decode()
    assert 'href="/conversations/new?agent=gpt"' in r.content.decode()

    # Used again, the older conversation's agent becomes the default.
    touch(older, 0)
    assert picker(alice_client.get("/")) == [("demo", True), ("gpt", False)]


def test_it_skips_a_last_agent_that_was_deactivated(alice_client: Client, alice: Any,
                                                    agents: Any):
    touch(Conversation.objects.create(owner=alice, agent=agents["gpt"]), 10)
    touch(Conversation.objects.create(owner=alice, agent=agents["old"]), 1)
    r = alice_client.get("/")
    # The newest conversation's agent is inactive: the newest one with an active agent counts.
    assert picker(r) == [("demo", False), ("gpt", True)]
    Agent.objects.filter(slug="gpt").update(is_active=False)
    assert picker(alice_client.get("/")) == [("demo", True)]


def test_it_carries_the_customer_filter(alice_client: Client, alice: Any, agents: Any):
    Conversation.objects.create(owner=alice, agent=agents["demo"], external_user_id="cust-7")
    r = alice_client.get("/", {"customer": "cust a&b"})
    html = r.content.decode()
    draft = page_data(r)["draft"]
    assert draft["customer"] == "cust a&b"
    assert draft["chat_url"] == f"/c/{DRAFT_ID}/?customer=cust+a%26b"
    assert page_data(r)["conversation"]["external_user_id"] == "cust a&b"
    # Shown in the header and prefilled in the customer context sent with the first send.
    assert ('<span id="conversation-external-user" title="External user id">cust a&amp;b</span>'
            in html)
    assert 'id="context-external-user-id" name="external_user_id" maxlength="255"\n' \
           '                 value="cust a&amp;b"' in html
    # "New conversation" stays on the filtered list; "More options…" carries the customer.
    assert ('class="button button-primary new-conversation-link" href="/?customer=cust+a%26b"'
            in html)
    assert 'href="/conversations/new?agent=demo&amp;customer=cust+a%26b"' in html


def test_it_says_where_a_new_conversation_is_not_listed(alice_client: Client, agents: Any):
    assert page_data(alice_client.get("/?q=refund"))["draft"]["listed"] is False
    assert page_data(alice_client.get("/?archived=1"))["draft"]["listed"] is False
    assert page_data(alice_client.get("/?customer=x"))["draft"]["listed"] is True


def test_it_keeps_the_notice_without_any_agent(alice_client: Client, db: Any):
    Agent.objects.create(slug="off", name="Off", provider="demo", is_active=False)
    r = alice_client.get("/")
    html = r.content.decode()
    assert r.status_code == 200
    assert "No agent is available yet." in html and "Ask an administrator to add one." in html
    assert 'id="composer-input"' not in html and "chat/main.js" not in html


def test_it_prefills_more_options_from_the_home_page(alice_client: Client, agents: Any):
    r = alice_client.get("/conversations/new", {"agent": "gpt", "customer": "cust-7"})
    assert r.status_code == 200
    assert r.context["form"]["agent"].value() == "gpt"
    assert r.context["form"]["external_user_id"].value() == "cust-7"
    # An unknown or inactive agent falls back to the default; hostile input is just text.
    r = alice_client.get("/conversations/new", {"agent": "old", "customer": "<b>x</b>"})
    assert r.context["form"]["agent"].value() == "demo"
    assert 'value="&lt;b&gt;x&lt;/b&gt;"' in r.content.decode()
    # And the form still creates a conversation.
    r = alice_client.post("/conversations/new", {"agent": "gpt", "title": "Printer",
                                                  "external_user_id": "cust-7"})
    conversation = Conversation.objects.get(title="Printer")
    assert r.status_code == 302 and r["Location"] == f"/c/{conversation.id}/"
    assert conversation.agent.slug == "gpt" and conversation.external_user_id == "cust-7"


def test_it_the_draft_page_needs_a_login(client: Client, agents: Any):
    r = client.get("/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
