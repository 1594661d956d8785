"""Feedback on replies, the customer context panel and the customer filter, in a real browser
against a real Daphne process (see tests/test_browser.py for the set-up)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests import test_browser as base
from tests.livesrv import LiveServer
from tests.test_browser import last_reply, send

pytestmark = pytest.mark.browser

# The real-browser fixtures (Daphne, Chromium), shared with test_browser.
server = base.server
browser = base.browser

STAFF = "sam"
STAFF_PASSWORD = "staff-pw-123"
COMPLETED = "article.message[data-role=assistant][data-status=completed]"
COMMENT = "Too vague about the refund delay"


@pytest.fixture(scope="module")
def staff_user(server: LiveServer) -> str:
    server.shell(
        "from django.contrib.auth.models import User; "
        f"User.objects.create_superuser('{STAFF}', 'sam@example.com', '{STAFF_PASSWORD}')"
    )
    return STAFF


@pytest.fixture
def page(browser: Any, server: LiveServer, staff_user: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server.url + "/accounts/login/")
    page.fill("input[name=username]", staff_user)
    page.fill("input[name=password]", STAFF_PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(server.url + "/")
    yield page
    assert dialogs == [], "model output must never run script"
    context.close()


def new_conversation(page: Any, server: LiveServer, title: str, customer: str = "") -> str:
    page.goto(server.url + "/conversations/new")
    page.fill("input[name=title]", title)
    page.fill("input[name=external_user_id]", customer)
    page.click("main form button[type=submit], #content form button[type=submit]")
    page.wait_for_url("**/c/*/")
    page.wait_for_selector("#connection-status[data-state=connected]")
    return str(page.url.rstrip("/").split("/")[-1])


def stored(page: Any, server: LiveServer, conversation_id: str) -> dict[str, Any]:
    return dict(page.evaluate(
        "async (url) => (await fetch(url)).json()",
        f"{server.url}/api/v1/conversations/{conversation_id}",
    ))


def reload(page: Any) -> None:
    page.reload()
    page.wait_for_selector("#connection-status[data-state=connected]")


def test_it_rates_a_reply_and_the_admin_lists_it(page: Any, server: LiveServer):
    conversation_id = new_conversation(page, server, "Feedback in the browser")
    send(page, "Where is my refund?")
    reply = last_reply(page)
    reply.wait_for()
    # Nothing to rate while the reply streams.
    page.wait_for_selector(COMPLETED, timeout=20_000)
    up, down = reply.locator(".feedback-up"), reply.locator(".feedback-down")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(down).to_have_attribute("aria-pressed", "false")
    expect(reply.locator(".feedback-form")).to_be_hidden()
    assert page.locator("article.message[data-role=user] .feedback").count() == 0

    # Thumbs down is recorded at once; the comment form opens for an optional comment.
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    comment = reply.locator("textarea.feedback-comment")
    expect(reply.locator(".feedback-form")).to_be_visible()
    expect(comment).to_be_focused()
    assert stored(page, server, conversation_id)["messages"][-1]["feedback"] == {
        "score": -1, "comment": ""}
    comment.fill(COMMENT)
    reply.locator(".feedback-save").click()
    expect(reply.locator(".feedback-note")).to_have_text("Thanks — saved.")
    assert stored(page, server, conversation_id)["messages"][-1]["feedback"] == {
        "score": -1, "comment": COMMENT}

    # After a reload: still thumbs down, the comment prefilled.
    reload(page)
    reply = last_reply(page)
    up, down = reply.locator(".feedback-up"), reply.locator(".feedback-down")
    comment = reply.locator("textarea.feedback-comment")
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(comment).to_be_visible()
    expect(comment).to_have_value(COMMENT)

    # A refused change shows the API's message next to the buttons and changes nothing.
    page.route("**/api/v1/messages/*/feedback", lambda route: route.fulfill(
        status=429, content_type="application/json",
        body=json.dumps({"error": {"code": "rate_limited",
                                   "message": "Too many requests; wait a minute.",
                                   "details": {}}})))
    up.click()
    expect(reply.locator(".feedback-error")).to_have_text("Too many requests; wait a minute.")
    expect(down).to_have_attribute("aria-pressed", "true")
    page.unroute("**/api/v1/messages/*/feedback")

    # Changed to thumbs up: the comment is kept.
    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(down).to_have_attribute("aria-pressed", "false")
    expect(reply.locator(".feedback-error")).to_be_hidden()
    assert stored(page, server, conversation_id)["messages"][-1]["feedback"] == {
        "score": 1, "comment": COMMENT}

    # The admin's Feedback list shows it.
    response = page.goto(server.url + "/admin/conversations/feedback/")
    assert response is not None and response.status == 200, "the Feedback admin is missing"
    row = page.locator("#result_list tbody tr", has_text=COMMENT)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("+1")
    expect(row).to_contain_text("Feedback in the browser")

    # Back in the chat, pressing the chosen thumb again takes the rating back.
    page.goto(f"{server.url}/c/{conversation_id}/")
    page.wait_for_selector("#connection-status[data-state=connected]")
    reply = last_reply(page)
    reply.locator(".feedback-up").click()
    expect(reply.locator(".feedback-up")).to_have_attribute("aria-pressed", "false")
    expect(reply.locator(".feedback-form")).to_be_hidden()
    assert stored(page, server, conversation_id)["messages"][-1]["feedback"] is None


def test_it_edits_the_customer_context(page: Any, server: LiveServer):
    other_id = new_conversation(page, server, "Another customer", customer="cust-78")
    conversation_id = new_conversation(page, server, "Context in the browser")
    panel = page.locator("#context-panel")
    expect(panel).to_be_visible()
    external = panel.locator("input[name=external_user_id]")
    metadata = panel.locator("textarea[name=metadata]")
    link = panel.locator("a.customer-conversations")
    expect(external).to_have_value("")
    expect(link).to_be_hidden()

    external.fill("cust-77")
    metadata.fill('{"plan": "gold"}')
    page.click("#context-save")
    expect(page.locator("#context-status")).to_have_text("Saved")
    expect(page.locator("#context-error")).to_be_hidden()
    expect(page.locator("#conversation-external-user")).to_have_text("cust-77")
    expect(link).to_be_visible()
    assert link.get_attribute("href") == "/?customer=cust-77"
    data = stored(page, server, conversation_id)
    assert data["external_user_id"] == "cust-77" and data["metadata"] == {"plan": "gold"}

    reload(page)
    expect(external).to_have_value("cust-77")
    expect(metadata).to_have_value('{\n  "plan": "gold"\n}')
    expect(link).to_be_visible()

    # Invalid JSON: a clear error, and nothing is saved (not even the other field).
    external.fill("cust-99")
    metadata.fill('{"plan": gold}')
    page.click("#context-save")
    error = page.locator("#context-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Metadata is not valid JSON")
    expect(metadata).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#context-status")).to_have_text("")
    # JSON, but not an object.
    metadata.fill('["gold"]')
    page.click("#context-save")
    expect(error).to_have_text('Metadata must be a JSON object, like {"plan": "gold"}.')
    # Over 16 KB: the server refuses it (413) and its message is shown.
    metadata.fill(json.dumps({"notes": "x" * 17_000}))
    page.click("#context-save")
    expect(error).to_have_text("Metadata must be at most 16 KB when serialized.")
    data = stored(page, server, conversation_id)
    assert data["external_user_id"] == "cust-77" and data["metadata"] == {"plan": "gold"}
    expect(page.locator("#conversation-external-user")).to_have_text("cust-77")

    # The link leads to this customer's conversations only.
    link.click()
    page.wait_for_url(f"{server.url}/?customer=cust-77")
    sidebar = page.locator("#sidebar .conversation-link")
    expect(sidebar).to_have_count(1)
    assert sidebar.get_attribute("data-conversation-id") == conversation_id
    assert page.locator(f"[data-conversation-id='{other_id}']").count() == 0
    expect(page.locator(".filter-chip")).to_contain_text("Customer: cust-77")
    # Removing the chip lists every conversation again.
    page.click(".filter-chip-remove")
    page.wait_for_url(f"{server.url}/")
    expect(page.locator(f"#sidebar [data-conversation-id='{other_id}']")).to_have_count(1)


def test_it_the_context_panel_collapses_and_is_a_drawer_on_phones(page: Any, server: LiveServer):
    new_conversation(page, server, "Context panel layout")
    panel, toggle = page.locator("#context-panel"), page.locator("#context-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(panel).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(panel).to_be_visible()
    expect(page.locator("#context-external-user-id")).to_be_focused()

    page.set_viewport_size({"width": 390, "height": 800})
    expect(panel).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(panel).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(toggle).to_be_focused()
