"""Regenerate, edit and move between alternatives in a real browser, on the demo agent
(issue 11 §2)."""

from __future__ import annotations

from typing import Any

import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer
from tests.test_browser import last_reply, new_conversation, send

pytestmark = pytest.mark.browser

server = base.server
browser = base.browser
page = base.page

USER = "article.message[data-role=user]"
REPLY = "article.message[data-role=assistant]"


def wait_idle(page: Any) -> None:
    page.wait_for_selector(f"{REPLY}[data-status=completed] >> nth=-1", timeout=15_000)
    page.wait_for_function(
        "() => !window.chatsite.state.messages.some((m) => m.status === 'streaming')")


def stored(page: Any, server: LiveServer) -> dict[str, Any]:
    conversation_id = page.url.rstrip("/").split("/")[-1]
    return page.evaluate("async (url) => (await fetch(url)).json()",
                         f"{server.url}/api/v1/conversations/{conversation_id}")


def test_it_regenerates_edits_and_navigates_alternatives(page: Any, server: LiveServer):
    new_conversation(page, server, "Branches")
    send(page, "Tell me about otters")
    wait_idle(page)
    first_reply = last_reply(page).get_attribute("data-message-id")

    # Regenerate: a second reply replaces the first on screen, "2 / 2".
    last_reply(page).locator(".regenerate-button").click()
    page.wait_for_function(
        "(id) => { const r = [...document.querySelectorAll('article.message[data-role=assistant]')]"
        ".at(-1); return r && r.dataset.messageId !== id && r.dataset.status === 'completed'; }",
        arg=first_reply)
    assert page.locator(REPLY).count() == 1
    assert last_reply(page).locator(".branch-position").inner_text() == "2 / 2"
    second_reply = last_reply(page).get_attribute("data-message-id")

    # ‹ goes back to the first reply, and the server's active path follows.
    last_reply(page).locator(".branch-previous").click()
    page.wait_for_selector(f"{REPLY}[data-message-id='{first_reply}']")
    assert last_reply(page).locator(".branch-position").inner_text() == "1 / 2"
    assert stored(page, server)["active_path"][-1] == first_reply
    page.reload()
    page.wait_for_selector("#connection-status[data-state=connected]")
    assert last_reply(page).get_attribute("data-message-id") == first_reply
    last_reply(page).locator(".branch-next").click()
    page.wait_for_selector(f"{REPLY}[data-message-id='{second_reply}']")

    # Edit the question: the editor opens with its text; the new message and its reply replace
    # the old branch; the message shows "2 / 2".
    page.locator(USER).last.locator(".edit-button").click()
    editor = page.locator(".edit-input")
    assert editor.input_value() == "Tell me about otters"
    editor.fill("Tell me about beavers")
    page.locator(".edit-save").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('article.message[data-role=user]')].at(-1)"
        "?.textContent.includes('beavers')")
    wait_idle(page)
    assert page.locator(USER).count() == 1
    assert "beavers" in last_reply(page).inner_text()
    assert page.locator(USER).last.locator(".branch-position").inner_text() == "2 / 2"
    data = stored(page, server)
    assert len(data["messages"]) == 5  # two questions, three replies
    assert [m["content"] for m in data["messages"] if m["id"] in data["active_path"]][0] \
        == "Tell me about beavers"

    # Back to the first question: its newest reply comes with it.
    page.locator(USER).last.locator(".branch-previous").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('article.message[data-role=user]')].at(-1)"
        "?.textContent.includes('otters')")
    page.wait_for_selector(f"{REPLY}[data-message-id='{second_reply}']")
