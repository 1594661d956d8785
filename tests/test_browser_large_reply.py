"""A reply of over ~1 MB ends visibly in a real browser (issue 9 §8): its final frame comes without
the content, and the chat script keeps the text it assembled from the deltas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakevendor import FakeVendor, openai_chunk, sse, sse_script
from tests.livesrv import LiveServer, live_server
from tests.test_browser import PASSWORD, browser, page, stored_reply  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

# 1.2 MB of reply: its final frame with the content would pass the 1 MiB websocket limit.
PIECE = "word " * 800
PIECES = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, vendor: FakeVendor) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("live"), {"MAX_REPLY_CHARS": "10000000"}) as srv:
        srv.shell(
            "from django.contrib.auth.models import User\n"
            "from conversations.models import Agent\n"
            f"User.objects.create_user('carol', '', '{PASSWORD}')\n"
            "Agent.objects.create(slug='big', name='big', provider='openai', "
            f"base_url={vendor.url + '/v1'!r}, options={{'model': 'm'}})"
        )
        yield srv


def test_it_ends_a_reply_over_a_megabyte_visibly(
    page: Any, server: LiveServer, vendor: FakeVendor  # noqa: F811 - fixtures
):
    vendor.add_route("POST", "/v1/chat/completions", sse_script(
        *[sse(openai_chunk(PIECE)) for _ in range(PIECES)], sse("[DONE]")))
    conversation_id = server.shell(
        "from django.contrib.auth.models import User\n"
        "from conversations.models import Agent, Conversation\n"
        "print(Conversation.objects.create(owner=User.objects.get(username='carol'), "
        "agent=Agent.objects.get(slug='big')).pk)"
    )
    page.goto(f"{server.url}/c/{conversation_id}/")
    page.wait_for_selector("#connection-status[data-state=connected]")
    page.fill("#composer-input", "a very long answer please")
    page.press("#composer-input", "Enter")
    # Re-rendering 1.2 MB of markdown as it grows took ~50 s here on 2 busy cores.
    page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                           timeout=180_000)
    shown = page.evaluate("() => window.chatsite.state.messages.at(-1).content.length")
    stored = stored_reply(page, server)
    assert stored["status"] == "completed"
    assert shown == len(stored["content"]) == len(PIECE) * PIECES
    assert page.locator("#composer-error").is_hidden()  # no `too_large` error shown
    assert not page.locator("#composer-input").is_disabled()
