"""Start by typing (issue 11 §1) in a real browser: the home page is the chat in a draft state;
the first send creates the conversation, the URL becomes /c/<id>/ without a reload and the reply
streams in place (see tests/test_browser.py for the set-up)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer
from tests.test_browser import last_reply

pytestmark = pytest.mark.browser

# The real-browser fixtures (Daphne, Chromium), shared with test_browser.
server = base.server
browser = base.browser
page = base.page

COMPLETED = "article.message[data-role=assistant][data-status=completed]"
CHAT_PATH = re.compile(r"^/c/([0-9a-f-]{36})/$")


def conversation_id(page: Any) -> str:
    path = page.evaluate("() => location.pathname")
    match = CHAT_PATH.match(path)
    assert match, path
    return match.group(1)


def stored(page: Any, server: LiveServer, conversation_id: str) -> dict[str, Any]:
    return dict(page.evaluate("async (url) => (await fetch(url)).json()",
                              f"{server.url}/api/v1/conversations/{conversation_id}"))


def count_conversations(server: LiveServer) -> int:
    return int(server.shell(
        "from conversations.models import Conversation; print(Conversation.objects.count())"))


def type_and_send(page: Any, text: str) -> None:
    # Typed where the focus already is: the composer is focused on load.
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_it_starts_a_conversation_by_typing_on_the_home_page(page: Any, server: LiveServer):
    page.goto(server.url + "/")
    page.wait_for_function("() => document.activeElement?.id === 'composer-input'")
    assert page.input_value("#draft-agent") == "demo"
    assert page.locator("#rename-panel").is_hidden()
    assert page.locator("#connection-status").is_hidden()
    # A marker that only survives if the page is never reloaded.
    page.evaluate("() => { window.homeMarker = 'same page'; }")

    type_and_send(page, "Where is my parcel A-1042?")
    page.wait_for_function("() => location.pathname.startsWith('/c/')")
    conversation = conversation_id(page)
    assert page.evaluate("() => window.homeMarker") == "same page"

    # The reply streams in place, then completes.
    last_reply(page).locator(".streaming-indicator").wait_for()
    page.wait_for_selector(COMPLETED, timeout=20_000)
    assert page.evaluate("() => window.homeMarker") == "same page"
    data = stored(page, server, conversation)
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][0]["content"] == "Where is my parcel A-1042?"
    assert data["messages"][1]["status"] == "completed"
    assert data["messages"][1]["content"] == page.evaluate(
        "() => window.chatsite.state.messages.at(-1).content")
    assert data["agent"] == "demo" and data["display_title"] == "Where is my parcel A-1042?"

    # The page is now that conversation's chat: title in the header and the sidebar, its
    # controls, its URLs and its socket.
    assert page.locator("#conversation-title").inner_text() == "Where is my parcel A-1042?"
    link = page.locator(f'.conversation-link[data-conversation-id="{conversation}"]')
    assert link.count() == 1 and link.get_attribute("aria-current") == "page"
    assert link.locator(".conversation-title").inner_text() == "Where is my parcel A-1042?"
    assert page.locator("#connection-status[data-state=connected]").is_visible()
    assert page.locator("#draft-agent").count() == 0
    assert page.locator("#conversation-agent").inner_text() == "Demo agent"
    assert page.locator("#rename-form").get_attribute("action") == f"/c/{conversation}/rename"
    assert page.locator("#delete-link").get_attribute("href") == f"/c/{conversation}/delete"
    assert page.title() == "Where is my parcel A-1042? · chatsite"

    # A second message goes on the same conversation.
    page.wait_for_function("() => !document.getElementById('composer-input').disabled")
    page.fill("#composer-input", "Thanks")
    page.press("#composer-input", "Enter")
    page.wait_for_function("() => window.chatsite.state.messages.length === 4", timeout=10_000)
    page.wait_for_selector(f"{COMPLETED} >> nth=1", timeout=20_000)
    assert conversation_id(page) == conversation
    assert len(stored(page, server, conversation)["messages"]) == 4

    # Back: the home page again, a fresh draft listing the new conversation; Forward: the chat.
    page.go_back()
    page.wait_for_function(
        "() => location.pathname === '/' && !!document.getElementById('draft-agent')")
    assert page.evaluate("() => window.homeMarker") is None
    assert page.locator(f'.conversation-link[data-conversation-id="{conversation}"]').count() == 1
    assert page.locator("article.message").count() == 0
    page.go_forward()
    page.wait_for_selector("#connection-status[data-state=connected]")
    assert conversation_id(page) == conversation
    assert page.locator("article.message").count() == 4


def test_it_carries_the_customer_filter_and_context(page: Any, server: LiveServer):
    page.goto(server.url + "/?customer=cust-42")
    page.wait_for_function("() => document.activeElement?.id === 'composer-input'")
    assert page.input_value("#context-external-user-id") == "cust-42"
    page.fill("#context-metadata", '{"plan": "gold"}')
    page.focus("#composer-input")
    type_and_send(page, "Hello from the customer list")
    page.wait_for_function("() => location.pathname.startsWith('/c/')")
    conversation = conversation_id(page)
    assert page.evaluate("() => location.search") == "?customer=cust-42"
    page.wait_for_selector("#connection-status[data-state=connected]")
    # The server has the message once it answers with the reply's placeholder.
    page.wait_for_function("() => window.chatsite.state.outbox === null"
                           " && window.chatsite.state.messages.length === 2")
    data = stored(page, server, conversation)
    assert data["external_user_id"] == "cust-42" and data["metadata"] == {"plan": "gold"}
    assert data["messages"][0]["content"] == "Hello from the customer list"
    # The customer context saves to the new conversation now.
    page.fill("#context-metadata", '{"plan": "platinum"}')
    page.click("#context-save")
    page.wait_for_selector("#context-status:has-text('Saved')")
    assert stored(page, server, conversation)["metadata"] == {"plan": "platinum"}
    page.wait_for_selector(COMPLETED, timeout=20_000)


def test_it_keeps_the_text_when_the_server_refuses_the_new_conversation(page: Any,
                                                                         server: LiveServer):
    page.goto(server.url + "/")
    page.wait_for_function("() => document.activeElement?.id === 'composer-input'")
    before = count_conversations(server)
    server.shell("from conversations.models import Agent; "
                 "Agent.objects.filter(slug='demo').update(is_active=False)")
    try:
        type_and_send(page, "Is anyone there?")
        error = page.locator("#composer-error")
        error.wait_for(state="visible")
        assert error.inner_text() == "Unknown agent “demo”."
        # Nothing lost, nothing created, still the home page.
        assert page.input_value("#composer-input") == "Is anyone there?"
        assert page.locator("article.message").count() == 0
        assert page.evaluate("() => location.pathname") == "/"
        assert count_conversations(server) == before

        # Hostile context: metadata that is not a JSON object is refused before any request.
        page.fill("#context-metadata", "[1, 2]")
        page.focus("#composer-input")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.getElementById('composer-error')"
                               ".textContent.startsWith('Metadata must')")
        assert page.input_value("#composer-input") == "Is anyone there?"
    finally:
        server.shell("from conversations.models import Agent; "
                     "Agent.objects.filter(slug='demo').update(is_active=True)")
    # Fixed, the same text goes out.
    page.fill("#context-metadata", "{}")
    page.focus("#composer-input")
    page.keyboard.press("Enter")
    page.wait_for_function("() => location.pathname.startsWith('/c/')")
    conversation = conversation_id(page)
    page.wait_for_selector(COMPLETED, timeout=20_000)
    assert stored(page, server, conversation)["messages"][0]["content"] == "Is anyone there?"
    assert "Traceback" not in server.log.read_text()


def test_it_still_offers_the_form_with_more_options(page: Any, server: LiveServer):
    page.goto(server.url + "/")
    page.click("#more-options")
    page.wait_for_url("**/conversations/new?agent=demo")
    page.fill("input[name=title]", "From the form")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/c/*/")
    page.wait_for_selector("#connection-status[data-state=connected]")
    assert page.locator("#conversation-title").inner_text() == "From the form"
    data = stored(page, server, conversation_id(page))
    assert data["title"] == "From the form" and data["messages"] == []
    initial = json.loads(page.locator("#chat-initial").text_content())
    assert initial["conversation"]["agent"] == "demo"
