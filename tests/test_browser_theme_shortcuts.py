"""Dark mode and the chat's keyboard shortcuts in a real browser (issue 11 §4)."""

from __future__ import annotations

from typing import Any

import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer
from tests.test_browser import last_reply, new_conversation, send

pytestmark = pytest.mark.browser

# The real-browser fixtures (Daphne, Chromium), shared with test_browser.
server = base.server
browser = base.browser
page = base.page

BODY_BG = "() => getComputedStyle(document.body).backgroundColor"
ROOT_BG = "() => getComputedStyle(document.documentElement).backgroundColor"


def choose_theme(page: Any, value: str) -> None:
    page.click(f"#theme-form button[value={value}]")
    page.wait_for_function(
        "(v) => document.documentElement.dataset.theme === v", arg=value)


def test_it_switches_between_light_and_dark_without_js_state(page: Any, server: LiveServer):
    page.goto(server.url + "/")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "auto"
    choose_theme(page, "light")
    light = page.evaluate(ROOT_BG)
    choose_theme(page, "dark")
    dark = page.evaluate(ROOT_BG)
    assert light == "rgb(246, 247, 249)"
    assert dark == "rgb(17, 20, 24)"
    # The cookie is read by the server: a fresh load paints dark at once.
    page.reload()
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    assert page.evaluate(ROOT_BG) == dark
    assert page.locator("#theme-form button[value=dark]").get_attribute("aria-pressed") == "true"
    # "auto" follows the system's preference.
    choose_theme(page, "auto")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate(ROOT_BG) == dark
    page.emulate_media(color_scheme="light")
    assert page.evaluate(ROOT_BG) == light
    assert page.evaluate(BODY_BG) != dark


def test_it_runs_the_keyboard_shortcuts(page: Any, server: LiveServer):
    new_conversation(page, server, "Shortcuts")
    page.locator("#transcript").click()
    page.keyboard.press("Control+k")
    assert page.evaluate("() => document.activeElement.id") == "sidebar-q"

    # "?" outside a text field opens the list; Esc closes it and gives focus back.
    page.locator("#transcript").click()
    page.keyboard.press("?")
    dialog = page.locator("#shortcuts-dialog")
    assert dialog.evaluate("d => d.open") is True
    assert page.evaluate("() => document.activeElement.classList.contains('shortcuts-close')")
    page.keyboard.press("Escape")
    assert dialog.evaluate("d => d.open") is False
    # Typed in the composer, "?" is text.
    page.fill("#composer-input", "")
    page.press("#composer-input", "?")
    assert dialog.evaluate("d => d.open") is False
    assert page.input_value("#composer-input") == "?"

    # Esc stops a streaming demo reply, as the Stop button does.
    page.fill("#composer-input", "")
    send(page, "Please write a long answer")
    page.wait_for_function(
        "() => (window.chatsite.state.messages.at(-1)?.content || '').length > 40")
    page.keyboard.press("Escape")
    page.wait_for_selector("article.message[data-role=assistant][data-status=canceled]",
                           timeout=5_000)
    assert last_reply(page).locator(".message-stopped").is_visible()

    # ArrowUp in the empty composer edits the last message, inline; Esc leaves the editor.
    page.wait_for_function("() => !document.getElementById('composer-input').disabled")
    page.fill("#composer-input", "")
    page.press("#composer-input", "ArrowUp")
    editor = page.locator("article.message[data-role=user] .edit-input").last
    editor.wait_for(timeout=5_000)
    assert editor.input_value() == "Please write a long answer"
    assert page.evaluate("() => document.activeElement.classList.contains('edit-input')")
    editor.press("Escape")
    assert page.locator(".edit-input").count() == 0
