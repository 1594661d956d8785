"""Issue 11 §1: a conversation with no title takes one from its first message (first line, up to
60 characters) until the vendor or the user gives one."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import translation

from conversations import services
from conversations.frames import conversation_json, localize_conversation
from conversations.models import Agent, Conversation, Message
from conversations.services.errors import InvalidInput
from conversations.services.runs import AUTO_TITLE_MAX_CHARS, title_from_message
from tests.wsclient import open_socket, wait_for_no_runs

LONG = ("My order from last Tuesday never arrived and the tracking page says it was "
        "delivered to a neighbour")


@pytest.fixture
def untitled(alice: Any, demo_agent: Agent) -> Conversation:
    return Conversation.objects.create(owner=alice, agent=demo_agent)


def finish(accepted: services.AcceptedMessage) -> None:
    """End the accepted reply as the relay would, so the next message may be sent."""
    assert accepted.assistant_message is not None
    Message.objects.filter(pk=accepted.assistant_message.pk).update(
        status=Message.Status.COMPLETED, content="ok")


def send(conversation: Conversation, content: str, **kwargs: Any) -> services.AcceptedMessage:
    accepted = services.accept_user_message(conversation.id, conversation.owner,
                                            content=content, **kwargs)
    conversation.refresh_from_db()
    return accepted


# Deriving the title ---------------------------------------------------------------------------


def test_it_keeps_a_short_first_line_whole():
    assert title_from_message("Where is my parcel?") == "Where is my parcel?"


def test_it_cuts_a_long_first_line_on_a_word_boundary_with_an_ellipsis():
    title = title_from_message(LONG)
    assert title == "My order from last Tuesday never arrived and the tracking…"
    assert title.endswith("…") and len(title) - 1 <= AUTO_TITLE_MAX_CHARS
    assert LONG.startswith(title[:-1])


def test_it_keeps_a_line_of_exactly_the_limit_uncut():
    line = "x" * AUTO_TITLE_MAX_CHARS
    assert title_from_message(line) == line


def test_it_takes_the_first_non_empty_line_and_collapses_whitespace():
    content = "\n   \n\t\u00a0\n  Refund   for\torder  A-1  \nsecond line\nthird"
    assert title_from_message(content) == "Refund for order A-1"


def test_it_returns_nothing_for_only_whitespace_lines():
    assert title_from_message(" \n\t\n\u2028\u3000\r\n") == ""
    assert title_from_message("\u200b\u200d\n\u202e\u2069\n") == ""
    assert title_from_message("\u200b\n\u202e\nhello") == "hello"


def test_it_cuts_one_32000_character_word_hard():
    title = title_from_message("a" * 32_000)
    assert title == "a" * AUTO_TITLE_MAX_CHARS + "…"


def test_it_cuts_32000_characters_of_words_and_ignores_the_rest():
    content = ("word " * 6_400)[:32_000] + "\n" + "tail " * 100
    title = title_from_message(content)
    assert title == " ".join(["word"] * 12) + "…"
    assert len(title) <= AUTO_TITLE_MAX_CHARS + 1


def test_it_never_splits_an_emoji_sequence_or_an_accent():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji, five code points
    thumbs = "\U0001f44d\U0001f3fd"  # thumbs up, medium skin tone
    for glyph in (family, thumbs, "e\u0301"):
        title = title_from_message(glyph * 40)
        body = title[:-1]
        assert title.endswith("…") and len(body) <= AUTO_TITLE_MAX_CHARS
        assert body and len(body) % len(glyph) == 0 and body == glyph * (len(body) // len(glyph))


def test_it_keeps_right_to_left_text_and_drops_bidi_overrides():
    arabic = "أين طلبي؟ لقد طلبته الأسبوع الماضي"
    assert title_from_message(arabic) == arabic
    hebrew = "שלום " * 20
    title = title_from_message(hebrew)
    assert title == ("שלום " * 12).strip() + "…"
    # An override left open would reorder the whole list around the title.
    assert title_from_message("\u202eevil\u202c title \u2067x\u2069") == "evil title x"
    assert title_from_message("bell\x07and\x1bescape") == "bell and escape"


# Accepting the first message -------------------------------------------------------------------


def test_it_titles_a_conversation_from_its_first_message(untitled: Conversation):
    accepted = send(untitled, "  \n\nMy parcel is late\nOrder A-1, sent Monday")
    assert accepted.title_changed is True and accepted.metadata_changed is False
    assert untitled.auto_title == "My parcel is late"
    assert untitled.title == "" and untitled.generated_titles == {}
    assert untitled.display_title() == "My parcel is late"
    assert str(untitled) == "My parcel is late"
    assert accepted.conversation.auto_title == "My parcel is late"


def test_it_stores_a_long_first_line_cut(untitled: Conversation):
    send(untitled, LONG)
    assert untitled.auto_title == "My order from last Tuesday never arrived and the tracking…"


def test_a_second_message_does_not_change_it(untitled: Conversation):
    finish(send(untitled, "First question"))
    accepted = send(untitled, "Something else entirely")
    assert accepted.title_changed is False and accepted.metadata_changed is False
    assert untitled.auto_title == "First question"
    assert untitled.display_title() == "First question"


def test_a_repeated_client_id_does_not_report_a_change(untitled: Conversation):
    send(untitled, "First question", client_id="c-1")
    again = send(untitled, "First question", client_id="c-1")
    assert again.assistant_message is None and again.title_changed is False
    assert untitled.auto_title == "First question"


def test_a_refused_message_leaves_no_title(untitled: Conversation):
    for content in (" \n\t\n ", "x" * 32_001, 42):
        with pytest.raises(InvalidInput):
            send(untitled, content)
    untitled.refresh_from_db()
    assert untitled.auto_title == ""
    with translation.override("en"):
        assert untitled.display_title() == "New conversation"


def test_it_takes_32000_characters_of_emoji_and_rtl_text(untitled: Conversation):
    send(untitled, ("😀 مرحبا " * 5_000)[:32_000])
    assert untitled.auto_title.endswith("…")
    assert len(untitled.auto_title) <= AUTO_TITLE_MAX_CHARS + 1
    assert untitled.auto_title.startswith("😀 مرحبا 😀")


def test_a_user_title_wins(untitled: Conversation, conversation: Conversation):
    # Titled before the first message: nothing is taken from it.
    accepted = send(conversation, "Please refund me")
    assert accepted.title_changed is False and accepted.metadata_changed is False
    assert conversation.auto_title == "" and conversation.display_title() == "Refund question"
    # Renamed after: the user's title shows; cleared again, the first message's returns.
    finish(send(untitled, "Please refund me"))
    services.update_conversation(untitled, title="Refund for Bob")
    untitled.refresh_from_db()
    assert untitled.display_title() == "Refund for Bob"
    assert conversation_json(untitled)["display_title"] == "Refund for Bob"
    services.update_conversation(untitled, title="")
    untitled.refresh_from_db()
    assert untitled.display_title() == "Please refund me"


def test_a_vendor_title_wins(untitled: Conversation, alice: Any, demo_agent: Agent):
    titled = Conversation.objects.create(owner=alice, agent=demo_agent,
                                         generated_titles={"en-ca": "Parcel question"})
    accepted = send(titled, "Where is it?")
    assert accepted.title_changed is False and titled.auto_title == ""
    # A vendor title arriving after the first message outranks the one taken from it.
    accepted = send(untitled, "Where is it?")
    assert untitled.auto_title == "Where is it?"
    assert accepted.assistant_message is not None
    services.finish_run(accepted.assistant_message.pk, untitled.pk, services.RunOutcome(
        status=Message.Status.COMPLETED, content="Monday.",
        generated_titles={"en-ca": "Parcel question", "fr-ca": "Question sur le colis"}))
    untitled.refresh_from_db()
    assert untitled.auto_title == "Where is it?"
    assert untitled.display_title("en-ca") == "Parcel question"
    assert untitled.display_title("fr-ca") == "Question sur le colis"


def test_every_language_shows_it(untitled: Conversation):
    send(untitled, "Où est mon colis ?")
    data = conversation_json(untitled, "en")
    assert data["display_title"] == data["auto_title"] == "Où est mon colis ?"
    assert localize_conversation(data, "fr-ca")["display_title"] == "Où est mon colis ?"
    untitled.auto_title = ""
    assert localize_conversation(conversation_json(untitled, "en"), "fr-ca")[
        "display_title"] == "Nouvelle conversation"


def test_the_api_the_page_and_the_admin_list_show_it(
    untitled: Conversation, api_client: Client, alice_client: Client, staff_client: Client
):
    send(untitled, "<b>Parcel</b> & refund")
    listed = api_client.get("/api/v1/conversations").json()
    item = next(c for c in listed["data"] if c["id"] == str(untitled.id))
    assert item["display_title"] == "<b>Parcel</b> & refund" and item["title"] == ""
    page = alice_client.get(f"/c/{untitled.id}/").content.decode()
    assert "&lt;b&gt;Parcel&lt;/b&gt; &amp; refund" in page and "<b>Parcel</b>" not in page
    admin = staff_client.get("/admin/conversations/conversation/").content.decode()
    assert "&lt;b&gt;Parcel&lt;/b&gt; &amp; refund" in admin


# The open tab ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_announces_it(alice_client: Client, alice: Any, demo_agent: Agent):
    untitled = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, agent=demo_agent)
    _, sock = await open_socket(alice_client, untitled.id)
    assert sock.sync["conversation"]["display_title"] == "New conversation"
    await sock.send({"type": "message.send", "content": "\n" + LONG + "\nmore"})
    frames = await sock.recv_until("message.completed")
    updated = [f for f in frames if f["type"] == "conversation.updated"]
    assert len(updated) == 1
    expected = "My order from last Tuesday never arrived and the tracking…"
    assert updated[0]["conversation"]["display_title"] == expected
    assert updated[0]["conversation"]["auto_title"] == expected
    assert updated[0]["conversation"]["title"] == ""
    kinds = [f["type"] for f in frames]
    assert kinds.index("conversation.updated") < kinds.index("message.completed")
    # The second message announces nothing.
    await sock.send({"type": "message.send", "content": "thanks"})
    frames = await sock.recv_until("message.completed")
    assert not [f for f in frames if f["type"] == "conversation.updated"]
    await wait_for_no_runs()
    await database_sync_to_async(untitled.refresh_from_db)()
    assert untitled.auto_title == expected
    await sock.close()
