"""The chat in Canadian French in a real browser (its language is fr-CA), then switched to English
with the header's switcher (see tests/test_browser.py for the set-up)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests import test_browser as base
from tests.livesrv import LiveServer
from tests.test_browser import PASSWORD, last_reply, send

pytestmark = pytest.mark.browser

# The real-browser fixtures (Daphne, Chromium), shared with test_browser.
server = base.server
browser = base.browser


@pytest.fixture
def french_page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(locale="fr-CA")
    page = context.new_page()
    page.goto(server.url + "/accounts/login/")
    expect(page.locator("main h1")).to_have_text("Se connecter")
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(server.url + "/")
    yield page
    context.close()


def test_it_the_chat_speaks_french_and_switches_to_english(french_page: Any, server: LiveServer):
    page = french_page
    page.goto(server.url + "/conversations/new")
    expect(page.locator("main h1")).to_have_text("Nouvelle conversation")
    page.fill("input[name=title]", "Colis")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/c/*/")
    # Strings set by the chat script come from the template's translated table.
    page.wait_for_selector("#connection-status[data-state=connected]")
    expect(page.locator("#connection-status")).to_have_text("Connecté")
    expect(page.locator("#send-button")).to_have_text("Envoyer")
    send(page, "Bonjour")
    page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                           timeout=20_000)
    expect(last_reply(page).locator(".feedback-up")).to_have_attribute("title", "Bonne réponse")
    author = page.locator("article.message[data-role=user] .message-author").first
    expect(author).to_have_text("Vous")

    page.click("#language-form button[value=en]")
    page.wait_for_url("**/c/*/")
    page.wait_for_selector("#connection-status[data-state=connected]")
    expect(page.locator("#connection-status")).to_have_text("Connected")
    expect(page.locator("#send-button")).to_have_text("Send")
    expect(page.locator("#language-form button")).to_have_text("Français")
