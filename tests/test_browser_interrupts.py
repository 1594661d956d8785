"""Interrupts (human in the loop), vendor data blocks and a lost vendor conversation, in a real
browser against a real Daphne process (see tests/test_browser.py for the set-up)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer
from tests.test_browser import last_reply, new_conversation, send

pytestmark = pytest.mark.browser

# The real-browser fixtures (Daphne, Chromium, a logged-in page), shared with test_browser.
server = base.server
browser = base.browser
page = base.page

APPROVAL_REQUEST = "I need approval for a refund"
QUESTION = "Refund 49.99 CAD for order A-1042?"
PAUSED = "article.message[data-role=assistant][data-status=awaiting_input]"


def conversation_id(page: Any) -> str:
    return str(page.url.rstrip("/").split("/")[-1])


def stored_messages(page: Any, server: LiveServer) -> list[dict[str, Any]]:
    data = page.evaluate(
        "async (url) => (await fetch(url)).json()",
        f"{server.url}/api/v1/conversations/{conversation_id(page)}",
    )
    return list(data["messages"])


def wait_for_final_reply(page: Any, text: str) -> Any:
    """The newest reply, once it has completed with `text` in it."""
    page.wait_for_function(
        """(text) => {
            const last = window.chatsite.state.messages.at(-1);
            return last && last.role === "assistant" && last.status === "completed"
                && last.content.includes(text);
        }""",
        arg=text,
        timeout=20_000,
    )
    reply = last_reply(page)
    reply.locator(".content em").first.wait_for()
    return reply


def record_statuses(page: Any) -> None:
    """Keeps every data-status each assistant reply shows, to prove the continuation streamed."""
    page.evaluate(
        """() => {
            window.__statuses = {};
            const note = (el) => {
                if (el.dataset.role !== "assistant") return;
                const seen = (window.__statuses[el.dataset.messageId] ??= []);
                if (seen.at(-1) !== el.dataset.status) seen.push(el.dataset.status);
            };
            new MutationObserver((records) => {
                for (const r of records) {
                    if (r.type === "attributes") note(r.target);
                    for (const n of r.addedNodes) if (n.matches?.("article.message")) note(n);
                }
            }).observe(document.getElementById("transcript"),
                       {subtree: true, childList: true, attributes: true,
                        attributeFilter: ["data-status"]});
        }"""
    )


def ask_for_approval(page: Any) -> Any:
    send(page, APPROVAL_REQUEST)
    page.wait_for_selector(PAUSED, timeout=20_000)
    card = last_reply(page).locator(".interrupt-card")
    card.wait_for()
    return card


def assert_pending_card(page: Any, card: Any) -> None:
    assert card.get_attribute("data-state") == "pending"
    assert card.locator(".interrupt-question").inner_text() == QUESTION
    assert "approval" in card.locator(".interrupt-reason").inner_text()
    options = card.locator(".interrupt-option")
    assert options.count() == 2
    assert [options.nth(i).get_attribute("data-option") for i in range(2)] == [
        "approve", "reject"]
    assert "button-primary" in (options.nth(0).get_attribute("class") or "")
    assert "button-primary" not in (options.nth(1).get_attribute("class") or "")
    assert options.nth(0).is_enabled() and options.nth(1).is_enabled()
    # Options answer the question, so there is no free-text box as well.
    assert card.locator("textarea.interrupt-answer").count() == 0
    # A pending interrupt does not block the composer; the hint points at the card.
    assert not page.locator("#composer-input").is_disabled()
    assert page.locator("#composer-hint").inner_text().strip() != ""


def assert_answered_card(card: Any, answer: str) -> None:
    card.locator(".interrupt-sent").wait_for()
    assert card.get_attribute("data-state") == "answered"
    assert answer in card.locator(".interrupt-sent").inner_text()
    assert card.locator(".interrupt-option").count() == 0
    assert card.locator("textarea.interrupt-answer").count() == 0
    assert card.locator(".interrupt-question").inner_text() == QUESTION


def assert_stored_answer(page: Any, server: LiveServer, answer: str, reply_text: str) -> None:
    messages = stored_messages(page, server)
    paused, user, reply = messages[-3:]
    assert paused["role"] == "assistant" and paused["status"] == "completed"
    assert paused["content"].startswith("Before I refund order **A-1042**")
    interrupt_id = paused["extra"]["pending_interrupt"]["id"]
    assert paused["extra"]["interrupt_answer"] == {"id": interrupt_id, "payload": answer}
    assert user["role"] == "user" and user["content"] == answer
    assert user["extra"]["answers_interrupt"] == interrupt_id
    assert reply["role"] == "assistant" and reply["status"] == "completed"
    assert reply["content"].startswith(f"You answered: *{answer}*.")
    assert reply_text in reply["content"]


def test_it_answers_an_interrupt_with_an_option(page: Any, server: LiveServer):
    new_conversation(page, server, "Browser interrupt")
    card = ask_for_approval(page)
    assert_pending_card(page, card)
    paused_id = last_reply(page).get_attribute("data-message-id")

    record_statuses(page)
    card.locator(".interrupt-option[data-option=approve]").click()
    # The card takes the answer at once and offers nothing more to click.
    paused_card = page.locator(f"article[data-message-id='{paused_id}'] .interrupt-card")
    assert "approve" in paused_card.locator(".interrupt-sent").inner_text()
    assert paused_card.locator(".interrupt-option").count() == 0

    reply = wait_for_final_reply(page, "is on its way")
    assert reply.get_attribute("data-message-id") != paused_id
    assert reply.locator(".content em").first.inner_text() == "approve"
    assert "You answered:" in reply.locator(".content").inner_text()
    statuses = page.evaluate("() => window.__statuses")
    assert statuses[reply.get_attribute("data-message-id")] == ["streaming", "completed"]
    # The answer is a user message of its own, tagged as the answer.
    answer = page.locator("article.message[data-role=user]").last
    assert answer.locator(".content").inner_text() == "approve"
    assert answer.get_attribute("data-answers-interrupt")
    assert_answered_card(paused_card, "approve")
    assert_stored_answer(page, server, "approve", "The refund of **49.99 CAD** is on its way.")
    assert not page.locator("#composer-input").is_disabled()

    page.reload()
    page.wait_for_selector("#connection-status[data-state=connected]")
    card = page.locator(f"article[data-message-id='{paused_id}'] .interrupt-card")
    assert_answered_card(card, "approve")
    assert page.locator(".interrupt-card").count() == 1
    assert page.locator("#composer-hint").inner_text().strip() == ""


def test_it_answers_a_pending_interrupt_after_a_reload(page: Any, server: LiveServer):
    new_conversation(page, server, "Browser interrupt reload")
    ask_for_approval(page)
    page.reload()
    page.wait_for_selector("#connection-status[data-state=connected]")
    card = page.locator(f"{PAUSED} .interrupt-card")
    card.wait_for()
    assert_pending_card(page, card)

    card.locator(".interrupt-option[data-option=reject]").click()
    reply = wait_for_final_reply(page, "no refund was made")
    assert reply.locator(".content em").first.inner_text() == "reject"
    assert "Understood: no refund was made." in reply.locator(".content").inner_text()
    assert_stored_answer(page, server, "reject", "Understood: no refund was made.")
    assert_answered_card(page.locator(".interrupt-card"), "reject")


def test_it_an_interrupt_answered_elsewhere_is_closed_on_the_card(page: Any, server: LiveServer):
    new_conversation(page, server, "Browser interrupt expired")
    card = ask_for_approval(page)
    # Answered behind this page's back (as another tab or the API would): not pending any more.
    server.shell(
        "from conversations.models import Message; "
        f"m = Message.objects.get(conversation_id='{conversation_id(page)}', "
        "status='awaiting_input'); "
        "m.status = 'completed'; "
        "m.extra = {**m.extra, 'interrupt_answer': {'id': m.extra['pending_interrupt']['id'], "
        "'payload': 'approve'}}; "
        "m.save()"
    )
    card.locator(".interrupt-option[data-option=reject]").click()
    card.locator(".interrupt-expired").wait_for()
    assert card.get_attribute("data-state") == "expired"
    assert "already answered or has expired" in card.locator(".interrupt-expired").inner_text()
    options = card.locator(".interrupt-option")
    assert options.count() == 2
    assert all(options.nth(i).is_disabled() for i in range(2))
    # Nothing was sent as a new run; the composer is free.
    assert page.locator("article.message[data-role=user]").count() == 1
    assert not page.locator("#composer-input").is_disabled()


def test_it_shows_vendor_data_and_a_lost_vendor_conversation(page: Any, server: LiveServer):
    new_conversation(page, server, "Browser data blocks")
    spec = [{"op": "add", "path": "/title", "value": "<b>bold?</b>"}]
    extra = {
        "data_spec": [spec],
        "unknown_events": [{"event": "x.one", "data": {"n": 1}}, {"event": "x.two"}],
        "reasoning": "thinking it over",
    }
    server.shell(
        "import json; from conversations.models import Conversation, Message; "
        f"c = Conversation.objects.get(pk='{conversation_id(page)}'); "
        "Message.objects.create(conversation=c, seq=1, role='user', content='hi'); "
        "Message.objects.create(conversation=c, seq=2, role='assistant', content='Done.', "
        f"extra=json.loads({json.dumps(json.dumps(extra))})); "
        "Message.objects.create(conversation=c, seq=3, role='user', content='again'); "
        "Message.objects.create(conversation=c, seq=4, role='assistant', status='failed', "
        "error_code='vendor_conversation_lost', "
        "error_message='The vendor no longer knows this conversation.')"
    )
    page.reload()
    page.wait_for_selector("#connection-status[data-state=connected]")
    replies = page.locator("article.message[data-role=assistant]")
    first = replies.nth(0)
    blocks = first.locator("details.message-data")
    assert [blocks.nth(i).get_attribute("data-key") for i in range(blocks.count())] == [
        "data_spec", "unknown_events"]
    data_spec = first.locator("details.message-data[data-key=data_spec]")
    assert data_spec.locator("summary").inner_text().startswith("Data")
    data_spec.locator("summary").click()
    body = data_spec.locator(".message-data-body")
    assert json.loads(body.inner_text()) == spec
    assert page.locator("#transcript b").count() == 0
    events = first.locator("details.message-data[data-key=unknown_events]")
    assert events.locator("summary").inner_text().startswith("Vendor events")
    assert events.locator(".message-data-count").inner_text() == "2"
    assert json.loads(events.locator(".message-data-body").text_content()) == extra[
        "unknown_events"]
    assert first.locator("details.reasoning").count() == 1

    # A live `message.data` frame appends to its block (delivered as the socket would).
    page.evaluate(
        """(id) => window.chatsite.socket.dispatchEvent(new MessageEvent("message", {
            data: JSON.stringify({type: "message.data", message_id: id, key: "unknown_events",
                                  value: {event: "x.three"}})}))""",
        first.get_attribute("data-message-id"),
    )
    page.wait_for_function(
        "() => document.querySelector('details.message-data[data-key=unknown_events] "
        ".message-data-count').textContent === '3'"
    )
    assert json.loads(events.locator(".message-data-body").text_content())[-1] == {
        "event": "x.three"}

    lost = replies.nth(1)
    assert lost.get_attribute("data-status") == "failed"
    link = lost.locator("a.start-new-conversation")
    assert link.get_attribute("href") == "/conversations/new"
    assert lost.locator(".retry-button").count() == 0
    assert "vendor_conversation_lost" in lost.locator(".message-error").inner_text()
    link.click()
    page.wait_for_url(server.url + "/conversations/new")


def test_it_answers_a_structured_interrupt_as_json(page: Any, server: LiveServer):
    new_conversation(page, server, "Browser interrupt schema")
    payload = {
        "prompt": "Which order and amount?",
        "responseSchema": {"type": "object", "required": ["order", "amount"]},
    }
    pending = {"id": "int_schema_1", "reason": "input", "payload": payload}
    server.shell(
        "import json; from conversations.models import Conversation, Message; "
        f"c = Conversation.objects.get(pk='{conversation_id(page)}'); "
        "Message.objects.create(conversation=c, seq=1, role='user', content='refund please'); "
        "Message.objects.create(conversation=c, seq=2, role='assistant', content='Details?', "
        "status='awaiting_input', "
        f"extra={{'pending_interrupt': json.loads({json.dumps(json.dumps(pending))})}})"
    )
    page.reload()
    page.wait_for_selector("#connection-status[data-state=connected]")
    card = page.locator(".interrupt-card[data-state=pending]")
    card.wait_for()
    assert card.get_attribute("data-answer-format") == "json"
    assert card.locator(".interrupt-question").inner_text() == "Which order and amount?"
    assert "input" in card.locator(".interrupt-reason").inner_text()
    assert card.locator(".interrupt-option").count() == 0
    # The schema is shown as details; the question itself is not repeated there.
    details = json.loads(card.locator(".interrupt-payload").text_content())
    assert details == {"responseSchema": payload["responseSchema"]}

    card.locator("textarea.interrupt-answer").fill("{not json")
    card.locator(".interrupt-send").click()
    card.locator(".interrupt-error").wait_for()
    assert card.locator("textarea.interrupt-answer").input_value() == "{not json"
    assert page.locator("article.message[data-role=user]").count() == 1

    card.locator("textarea.interrupt-answer").fill('{"order": "A-1042", "amount": 49.99}')
    card.locator(".interrupt-send").click()
    reply = wait_for_final_reply(page, "no refund was made")
    assert "A-1042" in reply.locator(".content em").first.inner_text()
    paused = stored_messages(page, server)[1]
    assert paused["status"] == "completed"
    assert paused["extra"]["interrupt_answer"] == {
        "id": "int_schema_1", "payload": {"order": "A-1042", "amount": 49.99}}
    answered = page.locator(".interrupt-card")
    assert answered.get_attribute("data-state") == "answered"
    assert '"amount":49.99' in answered.locator(".interrupt-sent").inner_text()
