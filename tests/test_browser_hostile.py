"""The chat script and a message the server refuses as unstorable (issue 8 §2): dropped from
the outbox, shown as an error, never resent on reconnect (it was resent 21 times in 20 s
before)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.livesrv import LiveServer
from tests.test_browser import browser, new_conversation, page, server  # noqa: F401

pytestmark = pytest.mark.browser


def test_it_drops_a_refused_message_and_does_not_resend_it(page: Any, server: LiveServer):  # noqa: F811
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on(
        "framesent", lambda payload: sent.append(payload) if "message.send" in payload else None))
    new_conversation(page, server, "Hostile text")
    # A lone surrogate: a JS string may hold one, JSON.stringify writes it as "\ud800".
    page.evaluate("""() => {
        const input = document.querySelector('#composer-input');
        input.value = 'hi \\ud800 there';
        input.dispatchEvent(new Event('input', {bubbles: true}));
    }""")
    page.press("#composer-input", "Enter")
    error = page.locator("#composer-error")
    error.wait_for(state="visible")
    assert "(invalid)" in error.inner_text()
    assert page.evaluate("() => window.chatsite.state.outbox") is None
    assert page.locator("article.message[data-status=pending]").count() == 0
    # The text is back in the composer for the user to fix.
    assert "there" in page.input_value("#composer-input")
    # The socket stays up; a reconnect does not resend the refused message.
    page.wait_for_selector("#connection-status[data-state=connected]")
    page.evaluate("() => window.chatsite.socket.close()")
    page.wait_for_timeout(1500)
    page.wait_for_selector("#connection-status[data-state=connected]")
    assert len(sent) == 1
    # A good message goes through afterwards.
    page.fill("#composer-input", "hello again")
    page.press("#composer-input", "Enter")
    page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                           timeout=20_000)
