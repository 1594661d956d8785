"""The conversation list filtered by customer (`?customer=<external user id>`): the sidebar on
every page, its links and the chat page's "All conversations about this customer" link."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.test import Client

from conversations.models import Agent, Conversation

pytestmark = pytest.mark.django_db


def sidebar_ids(response: Any) -> list[str]:
    return re.findall(r'data-conversation-id="([0-9a-f-]+)"', response.content.decode())


def hrefs(response: Any, css_class: str) -> list[str]:
    """The (unescaped) href of every link with `css_class` among its classes."""
    pattern = rf'<a class="(?:[^"]* )?{re.escape(css_class)}(?: [^"]*)?"[^>]*?href="([^"]*)"'
    return [unescape(h) for h in re.findall(pattern, response.content.decode(), re.S)]


@pytest.fixture
def cases(alice: Any, bob: Any, demo_agent: Agent) -> dict[str, Conversation]:
    return {
        "mine": Conversation.objects.create(
            owner=alice, agent=demo_agent, title="Late parcel", external_user_id="cust-7"),
        "mine_too": Conversation.objects.create(
            owner=alice, agent=demo_agent, title="Refund", external_user_id="cust-7"),
        "other_customer": Conversation.objects.create(
            owner=alice, agent=demo_agent, title="Login help", external_user_id="cust-8"),
        "no_customer": Conversation.objects.create(
            owner=alice, agent=demo_agent, title="Internal note"),
        "bobs": Conversation.objects.create(
            owner=bob, agent=demo_agent, title="Bob about cust-7", external_user_id="cust-7"),
        "archived": Conversation.objects.create(
            owner=alice, agent=demo_agent, title="Old parcel", external_user_id="cust-7",
            archived=True),
    }


def test_it_lists_only_my_conversations_about_the_customer(alice_client: Client, cases: Any):
    r = alice_client.get("/?customer=cust-7")
    assert r.status_code == 200
    assert r.context["customer"] == "cust-7"
    assert set(sidebar_ids(r)) == {str(cases["mine"].id), str(cases["mine_too"].id)}
    body = r.content.decode()
    assert "Bob about cust-7" not in body and "Login help" not in body
    # Without the filter, every one of mine (and still none of Bob's).
    everything = set(sidebar_ids(alice_client.get("/")))
    assert str(cases["other_customer"].id) in everything and str(cases["bobs"].id) not in everything


def test_it_never_shows_another_users_customer(client: Client, bob: Any, cases: Any):
    client.force_login(bob)
    assert sidebar_ids(client.get("/?customer=cust-7")) == [str(cases["bobs"].id)]
    assert sidebar_ids(client.get("/?customer=cust-8")) == []


def test_it_shows_a_removable_chip(alice_client: Client, cases: Any):
    r = alice_client.get("/?customer=cust-7&q=parcel")
    body = r.content.decode()
    assert 'class="filter-chip"' in body and "Customer: cust-7" in body
    # Removing the chip keeps the search.
    assert hrefs(r, "filter-chip-remove") == ["/?q=parcel"]
    assert "filter-chip" not in alice_client.get("/").content.decode()


def test_it_keeps_the_filter_in_the_search_form_and_tabs(alice_client: Client, cases: Any):
    r = alice_client.get("/?customer=cust-7")
    body = r.content.decode()
    assert '<input type="hidden" name="customer" value="cust-7">' in body
    assert hrefs(r, "sidebar-tab") == ["/?archived=1&customer=cust-7"]
    searched = alice_client.get("/?customer=cust-7&q=refund")
    assert sidebar_ids(searched) == [str(cases["mine_too"].id)]
    archived = alice_client.get("/?customer=cust-7&archived=1")
    assert sidebar_ids(archived) == [str(cases["archived"].id)]
    assert hrefs(archived, "sidebar-tab") == ["/?customer=cust-7"]


def test_it_keeps_the_filter_in_conversation_links(alice_client: Client, cases: Any):
    r = alice_client.get("/?customer=cust-7")
    assert set(hrefs(r, "conversation-link")) == {
        f"/c/{cases['mine'].id}/?customer=cust-7", f"/c/{cases['mine_too'].id}/?customer=cust-7"}
    # The chat page's sidebar stays filtered, with the current conversation marked.
    chat = alice_client.get(f"/c/{cases['mine'].id}/?customer=cust-7")
    assert set(sidebar_ids(chat)) == {str(cases["mine"].id), str(cases["mine_too"].id)}
    assert chat.context["current_id"] == cases["mine"].id


def test_it_keeps_the_filter_across_pages(alice_client: Client, alice: Any, bob: Any,
                                     demo_agent: Agent):
    for i in range(31):
        Conversation.objects.create(owner=alice, agent=demo_agent, title=f"Case {i:02d}",
                                    external_user_id="cust a&b")
    for i in range(5):
        Conversation.objects.create(owner=alice, agent=demo_agent, title=f"Other {i}",
                                    external_user_id="cust-9")
        Conversation.objects.create(owner=bob, agent=demo_agent, title=f"Bob {i}",
                                    external_user_id="cust a&b")
    first = alice_client.get("/", {"customer": "cust a&b"})
    assert len(first.context["conversations"]) == 30 and first.context["page_obj"].has_next()
    [next_url] = hrefs(first, "pagination-next")
    assert next_url == "/?page=2&customer=cust+a%26b"
    second = alice_client.get(next_url)
    assert second.context["customer"] == "cust a&b"
    [last] = second.context["conversations"]
    assert last.owner == alice and last.external_user_id == "cust a&b"
    [prev_url] = hrefs(second, "pagination-prev")
    assert prev_url == "/?page=1&customer=cust+a%26b"


def test_it_prefills_the_new_conversation_form_with_the_customer(alice_client: Client,
                                                                  cases: Any):
    # The home page is a composer (tests/test_home_composer.py): its draft is about the
    # customer, and its "More options…" form is prefilled with them.
    r = alice_client.get("/?customer=cust-7")
    assert r.context["conversation"].external_user_id == "cust-7"
    assert 'href="/conversations/new?agent=demo&amp;customer=cust-7"' in r.content.decode()
    form = alice_client.get("/conversations/new?agent=demo&customer=cust-7")
    assert form.context["form"]["external_user_id"].value() == "cust-7"
    assert 'class="stacked-form new-conversation-form"' in form.content.decode()


def test_it_links_the_chat_page_to_the_customers_conversations(alice_client: Client,
                                                            cases: Any):
    r = alice_client.get(f"/c/{cases['mine'].id}/")
    body = r.content.decode()
    assert hrefs(r, "customer-conversations") == ["/?customer=cust-7"]
    assert 'name="external_user_id" maxlength="255"' in body and 'value="cust-7"' in body
    # No customer: the link is there for the script to fill in, hidden.
    bare = alice_client.get(f"/c/{cases['no_customer'].id}/").content.decode()
    assert re.search(r'<a class="customer-conversations" href="/\?customer=" hidden>', bare)


def test_it_shows_the_metadata_as_pretty_json(alice_client: Client, alice: Any,
                                             demo_agent: Agent):
    # One key: PostgreSQL's jsonb does not keep key order.
    c = Conversation.objects.create(owner=alice, agent=demo_agent,
                                    metadata={"note": "<b>vip</b>"})
    body = alice_client.get(f"/c/{c.id}/").content.decode()
    assert '{\n  &quot;note&quot;: &quot;&lt;b&gt;vip&lt;/b&gt;&quot;\n}</textarea>' in body
