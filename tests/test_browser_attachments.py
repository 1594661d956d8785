"""Attachments in a real browser (issue 11 §3): pick a file, paste an image, drop a file, send,
the thumbnails in the transcript, and the OpenAI-compatible vendor's request carrying the file."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import test_browser as base
from tests.fakevendor import FakeVendor, openai_chunk, sse, sse_script
from tests.livesrv import LiveServer, live_server
from tests.test_attachments import png
from tests.test_browser import PASSWORD

pytestmark = pytest.mark.browser

# The real-browser fixtures (Chromium, a logged-in page), on this module's server.
browser = base.browser
page = base.page

TOKEN_ENV = "BROWSER_OPENAI_KEY"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, vendor: FakeVendor,
           media: Path) -> Iterator[LiveServer]:
    env = {"MEDIA_ROOT": str(media), TOKEN_ENV: "sk-browser-test"}
    with live_server(tmp_path_factory.mktemp("live"), env) as srv:
        srv.shell(
            "from django.contrib.auth.models import User\n"
            "from conversations.models import Agent\n"
            f"User.objects.create_user('carol', '', '{PASSWORD}')\n"
            "Agent.objects.create(slug='oai', name='GPT', provider='openai', "
            f"base_url={vendor.url + '/v1'!r}, token_env={TOKEN_ENV!r}, "
            "options={'model': 'gpt-test'})\n"
            "Agent.objects.create(slug='dove', name='Dove', provider='dimedove', "
            "base_url='http://127.0.0.1:9', options={'app_id': 'app_1'})"
        )
        yield srv


def open_chat(page: Any, server: LiveServer, agent: str) -> str:
    conversation_id = server.shell(
        "from django.contrib.auth.models import User\n"
        "from conversations.models import Agent, Conversation\n"
        "print(Conversation.objects.create(owner=User.objects.get(username='carol'), "
        f"agent=Agent.objects.get(slug={agent!r})).pk)"
    )
    page.goto(f"{server.url}/c/{conversation_id}/")
    page.wait_for_selector("#connection-status[data-state=connected]")
    return conversation_id


# In the page: a File from base64, handed to a paste or a drop as a real DataTransfer.
MAKE_TRANSFER = """([name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type }));
  return transfer;
}"""


def paste(page: Any, name: str, content_type: str, data: bytes) -> None:
    # A ClipboardEvent made in the page: Playwright's dispatch_event makes a plain Event for it.
    transfer = page.evaluate_handle(MAKE_TRANSFER, [name, content_type,
                                                   base64.b64encode(data).decode()])
    page.locator("#composer-input").evaluate(
        "(el, clipboardData) => el.dispatchEvent(new ClipboardEvent('paste', "
        "{ clipboardData, bubbles: true, cancelable: true }))", transfer)


def drop(page: Any, selector: str, name: str, content_type: str, data: bytes) -> None:
    transfer = page.evaluate_handle(MAKE_TRANSFER, [name, content_type,
                                                   base64.b64encode(data).decode()])
    page.locator(selector).dispatch_event("dragover", {"dataTransfer": transfer})
    page.locator(selector).dispatch_event("drop", {"dataTransfer": transfer})


def ready_chips(page: Any, count: int) -> Any:
    page.wait_for_function(
        "(n) => document.querySelectorAll('#attachment-chips li.is-ready').length === n",
        arg=count)
    return page.locator("#attachment-chips li")


def test_it_picks_pastes_and_drops_files_then_shows_them_sent(page: Any, server: LiveServer,
                                                             media: Path):
    open_chat(page, server, "demo")
    button = page.locator("#attach-button")
    assert button.is_enabled() and button.get_attribute("title") == "Attach files"
    # Pick: the type comes from the content, whatever the name says.
    page.set_input_files("#attach-input", files=[
        {"name": "receipt.png", "mimeType": "image/png", "buffer": png(32, 32)}])
    ready_chips(page, 1)
    # Paste a screenshot (no name of its own), drop a text file on the transcript.
    paste(page, "image.png", "image/png", png(16, 16))
    drop(page, "#transcript", "order.csv", "text/csv", b"id,total\nA-1042,49.99\n")
    chips = ready_chips(page, 3)
    assert [chips.nth(i).get_attribute("data-name") for i in range(3)] == [
        "receipt.png", "pasted-image.png", "order.csv"]
    # A file can be removed before sending.
    drop(page, "#composer", "extra.txt", "text/plain", b"not this one")
    ready_chips(page, 4)
    page.locator("#attachment-chips li[data-name='extra.txt'] .attachment-chip-remove").click()
    ready_chips(page, 3)

    page.fill("#composer-input", "Here are my files")
    page.press("#composer-input", "Enter")
    assert page.locator("#attachment-chips").is_hidden()
    page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                           timeout=20_000)
    sent = page.locator("article.message[data-role=user]").last
    thumbs = sent.locator(".message-attachments img.attachment-thumb")
    assert thumbs.count() == 2
    # The thumbnails load (served to the owner, same origin, under the CSP).
    page.wait_for_function(
        "() => [...document.querySelectorAll('article.message[data-role=user] "
        "img.attachment-thumb')].every((img) => img.complete && img.naturalWidth > 0)")
    assert thumbs.nth(0).get_attribute("alt") == "receipt.png"
    file_link = sent.locator(".message-attachment-file")
    assert file_link.inner_text().startswith("order.csv")
    assert file_link.get_attribute("download") == "order.csv"
    reply = page.locator("article.message[data-role=assistant]").last.inner_text()
    assert "I received receipt.png (image/png" in reply
    assert "I received pasted-image.png (image/png" in reply
    assert "I received order.csv (text/csv, 22 bytes)." in reply
    assert len([p for p in media.rglob("*") if p.is_file()]) == 4  # the removed one stays unsent

    # After a reload the transcript still shows them (page state from the server).
    page.reload()
    page.wait_for_selector("#connection-status[data-state=connected]")
    sent = page.locator("article.message[data-role=user]").last
    assert sent.locator("img.attachment-thumb").count() == 2


def test_it_sends_the_image_to_an_openai_compatible_vendor(page: Any, server: LiveServer,
                                                           vendor: FakeVendor):
    vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("A receipt.", finish_reason="stop")), sse("[DONE]")))
    before = len(vendor.requests)
    open_chat(page, server, "oai")
    image = png(8, 8)
    page.set_input_files("#attach-input", files=[
        {"name": "receipt.png", "mimeType": "image/png", "buffer": image}])
    ready_chips(page, 1)
    # A file alone is a message.
    page.click("#send-button")
    page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                           timeout=20_000)
    body = vendor.requests[before].json()
    assert body["messages"][-1] == {"role": "user", "content": [
        {"type": "image_url",
         "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}}]}
    assert vendor.requests[before].headers["authorization"] == "Bearer sk-browser-test"


def test_it_disables_the_button_for_an_agent_that_takes_no_files(page: Any, server: LiveServer):
    open_chat(page, server, "dove")
    button = page.locator("#attach-button")
    assert button.is_disabled()
    assert button.get_attribute("title") == "This agent can't take files."
    # Dropping or pasting does nothing there.
    paste(page, "image.png", "image/png", png())
    assert page.locator("#attachment-chips").is_hidden()
