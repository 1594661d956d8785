"""The chat UI in a real browser: Debian's Chromium driven by Playwright, against a real Daphne
process started as `make run` starts it (migrate, bootstrap, daphne)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.livesrv import LiveServer, live_server

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "browser-pw-123"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("live")) as srv:
        srv.shell(
            "from django.contrib.auth.models import User; "
            f"User.objects.create_user('carol', '', '{PASSWORD}')"
        )
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Debian's chromium is required: apt-get install chromium (.ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server.url + "/accounts/login/")
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(server.url + "/")
    yield page
    assert dialogs == [], "model output must never run script"
    context.close()


def new_conversation(page: Any, server: LiveServer, title: str) -> None:
    page.goto(server.url + "/conversations/new")
    page.fill("input[name=title]", title)
    page.click("#content form button[type=submit], main form button[type=submit]")
    page.wait_for_url("**/c/*/")
    page.wait_for_selector("#connection-status[data-state=connected]")


def send(page: Any, text: str) -> None:
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def last_reply(page: Any) -> Any:
    return page.locator("article.message[data-role=assistant]").last


def stored_reply(page: Any, server: LiveServer) -> dict[str, Any]:
    conversation_id = page.url.rstrip("/").split("/")[-1]
    data = page.evaluate(
        "async (url) => (await fetch(url)).json()",
        f"{server.url}/api/v1/conversations/{conversation_id}",
    )
    return data["messages"][-1]


def test_it_streams_a_markdown_reply(page: Any, server: LiveServer):
    new_conversation(page, server, "Browser streaming")
    send(page, "Hello <img src=x onerror=alert(1)> **there**")
    reply = last_reply(page)
    reply.locator(".streaming-indicator").wait_for()
    page.wait_for_selector("#stop-button:visible")
    assert page.locator("#composer-input").is_disabled()
    page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                           timeout=20_000)
    content = reply.locator(".content")
    assert content.locator("h1, h2, h3").count() >= 1
    assert content.locator("ul li, ol li").count() >= 2
    assert content.locator("table").count() == 1
    assert content.locator("pre code.hljs").count() >= 1
    assert content.locator(".copy-button").count() >= 1
    # The quoted user text is shown as text, never as an element.
    assert page.locator("#transcript img").count() == 0
    assert "<img src=x onerror=alert(1)>" in reply.inner_text()
    stored = stored_reply(page, server)
    assert stored["status"] == "completed"
    assert stored["content"].startswith(
        reply.evaluate("el => window.chatsite.state.messages.at(-1).content")[:40])
    assert not page.locator("#composer-input").is_disabled()


def test_it_stops_and_keeps_the_partial_reply(page: Any, server: LiveServer):
    new_conversation(page, server, "Browser stop")
    send(page, "Please write a long answer")
    reply = last_reply(page)
    page.wait_for_function(
        "() => (window.chatsite.state.messages.at(-1)?.content || '').length > 40")
    page.click("#stop-button")
    page.wait_for_selector("article.message[data-role=assistant][data-status=canceled]",
                           timeout=5_000)
    assert reply.locator(".message-stopped").is_visible()
    shown = page.evaluate("() => window.chatsite.state.messages.at(-1).content")
    stored = stored_reply(page, server)
    assert stored["status"] == "canceled"
    assert stored["content"] == shown and len(shown) > 40
    assert not page.locator("#composer-input").is_disabled()


def test_it_continues_the_reply_after_a_reload(page: Any, server: LiveServer):
    new_conversation(page, server, "Browser reload")
    send(page, "Tell me everything, slowly")
    page.wait_for_function(
        "() => (window.chatsite.state.messages.at(-1)?.content || '').length > 30")
    page.reload()
    page.wait_for_selector("#connection-status[data-state=connected]")
    # Still streaming after the reload, then completes with exactly the stored text.
    page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                           timeout=20_000)
    shown = page.evaluate("() => window.chatsite.state.messages.at(-1).content")
    stored = stored_reply(page, server)
    assert stored["status"] == "completed" and shown == stored["content"]
    users = page.locator("article.message[data-role=user]")
    assert users.count() == 1
    assert json.loads(json.dumps(shown)).count("Tell me everything, slowly") == 1


def test_it_shows_a_tool_call_card_with_arguments_and_result(page: Any, server: LiveServer):
    new_conversation(page, server, "Browser tool")
    send(page, "Please use a tool to find my order")
    page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                           timeout=20_000)
    card = last_reply(page).locator("details.tool-call")
    assert card.count() == 1
    assert card.locator(".tool-call-name").inner_text() == "lookup_order"
    card.locator("summary").click()
    assert "A-1042" in card.locator(".tool-call-arguments").inner_text()
    assert "Purolator" in card.locator(".tool-call-result").inner_text()
