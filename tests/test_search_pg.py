"""Full-text conversation search on PostgreSQL (ConversationQuerySet.search / search_ranking,
migration 0009): ranking, highlighted snippets, the GIN indexes, hostile input. Runs on the
PostgreSQL pass of `make test` (DATABASE_URL=postgres://...); skipped on SQLite, whose substring
search tests/test_list_views.py covers."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from conversations import services
from conversations.models import (
    MARK_END,
    MARK_START,
    Agent,
    Conversation,
    Message,
    StoredVector,
    search_query,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL full-text search"),
]


def no_tracebacks(caplog: Any) -> None:
    assert not [r for r in caplog.records if r.exc_info], "no traceback may be logged"
    assert "Traceback" not in caplog.text


def make(owner: Any, agent: Agent, title: str, *texts: str, minutes_ago: int = 0,
         **fields: Any) -> Conversation:
    when = timezone.now() - timedelta(minutes=minutes_ago)
    conversation = Conversation.objects.create(owner=owner, agent=agent, title=title,
                                               created_at=when, updated_at=when, **fields)
    for seq, text in enumerate(texts, 1):
        Message.objects.create(conversation=conversation, seq=seq, role="user", content=text)
    return conversation


def test_it_ranks_titles_then_denser_messages_then_recent_ones(alice: Any, demo_agent: Agent):
    make(alice, demo_agent, "once, recent", "the refund is pending", minutes_ago=1)
    make(alice, demo_agent, "once, older", "the refund is pending", minutes_ago=50)
    make(alice, demo_agent, "dense", "refund refund: refund the refund please", minutes_ago=30)
    make(alice, demo_agent, "Refund for order 12", "hello", minutes_ago=90)
    make(alice, demo_agent, "customer", "hello", minutes_ago=95, external_user_id="refund-desk")
    make(alice, demo_agent, "unrelated", "where is my parcel", minutes_ago=0)
    page = services.list_conversations(alice, q="refund")
    assert [c.title for c in page.object_list] == [
        "Refund for order 12", "customer", "dense", "once, recent", "once, older"]
    assert page.paginator.count == 5


def test_it_parses_web_search_syntax(alice: Any, demo_agent: Agent):
    make(alice, demo_agent, "card", "my credit card was declined")
    make(alice, demo_agent, "split", "credit is fine, the card is not")
    make(alice, demo_agent, "paid", "the invoice is paid")
    make(alice, demo_agent, "unpaid", "the invoice is open")

    def found(q: str) -> set[str]:
        return {c.title for c in services.list_conversations(alice, q=q).object_list}

    assert found('"credit card"') == {"card"}
    assert found("credit card") == {"card", "split"}
    assert found("invoice -paid") == {"unpaid"}
    assert found("declined or open") == {"card", "unpaid"}
    assert found("INVOICE") == {"paid", "unpaid"}


def test_it_highlights_snippets_safely(alice: Any, alice_client: Client, demo_agent: Agent):
    hostile = (f"<img src=x onerror=alert(1)> the {MARK_START}fake{MARK_END} mark, then "
               "words words words about a delayed parcel & <b>more</b>")
    conversation = make(alice, demo_agent, "snippet", "hello", hostile)
    page = services.list_conversations(alice, q="parcel")
    [row] = page.object_list
    assert row.pk == conversation.pk
    assert ("parcel", True) in row.search_snippet
    assert [text for text, hit in row.search_snippet if hit] == ["parcel"]
    # The markers typed into the text are dropped before the headline: no fake highlight.
    assert not any(MARK_START in text or MARK_END in text for text, _ in row.search_snippet)
    html = alice_client.get("/", {"q": "parcel"}).content.decode()
    [snippet] = re.findall(r'<span class="conversation-snippet">(.*?)</span>', html)
    assert "<mark>parcel</mark>" in snippet
    # ts_headline drops what its parser takes for tags; whatever is left is escaped text.
    assert "<img" not in html and "<b>" not in snippet
    assert "&amp;" in snippet and re.sub(r"</?mark>", "", snippet).count("<") == 0


def test_it_has_gin_indexes_the_planner_uses(alice: Any, demo_agent: Agent):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN "
                       "('msg_search_vector', 'conv_search_vector') ORDER BY indexname")
        indexes = dict(cursor.fetchall())
    assert set(indexes) == {"conv_search_vector", "msg_search_vector"}
    assert "USING gin (search_vector)" in indexes["msg_search_vector"]
    # Enough rows that a sequential scan costs more than the index for a rare word.
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=alice, agent=demo_agent, title=f"c{i}") for i in range(200))
    Message.objects.bulk_create(
        Message(conversation=c, seq=seq, role="user",
                content=f"ordinary support text number {seq} of {i} about orders and billing")
        for i, c in enumerate(conversations) for seq in range(1, 21))
    Message.objects.create(conversation=conversations[7], seq=99, role="user",
                           content="a chargeback arrived")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE conversations_message")
        cursor.execute("ANALYZE conversations_conversation")
        # Inside the test's transaction the statistics lag; what matters is that the index
        # matches the queries' expressions, so the planner can use it when it is cheaper.
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = (Message.objects.alias(vector=StoredVector()).filter(vector=search_query("chargeback"))
            .values("conversation_id").explain())
    assert "msg_search_vector" in plan, plan
    assert [c.pk for c in services.list_conversations(alice, q="chargeback").object_list] == [
        conversations[7].pk]
    plan = Conversation.objects.search("c17").explain()
    assert "conv_search_vector" in plan, plan


def test_it_indexes_a_huge_reply_without_failing(alice: Any, demo_agent: Agent):
    # 1,000,000 characters of distinct words: its whole tsvector would pass PostgreSQL's 1 MB
    # cap; the stored vector reads the first 100,000 characters, so the save succeeds.
    words = " ".join(f"w{i}" for i in range(150_000))[:1_000_000]
    conversation = make(alice, demo_agent, "huge", words[:10])
    reply = Message.objects.create(conversation=conversation, seq=2, role="assistant",
                                   content="")
    Message.objects.filter(pk=reply.pk).update(content=words + " needle")
    [row] = services.list_conversations(alice, q="w12").object_list
    assert ("w12", True) in row.search_snippet
    # Past the indexed prefix a word is not found by full-text search (docs/performance.md).
    assert list(services.list_conversations(alice, q="needle").object_list) == []


HOSTILE = [
    "'", '"', '"unbalanced', "a & b | !c", "!!!", "&|!():*<->", "(((", ")", "foo:*", "a <-> b",
    "\\", "%", "_", "--", "' OR 1=1 --", "a\x00b", "\ud800", "émoji 🎉", "-", "or", "x" * 10_000,
    "word " * 2_000, "<script>alert(1)</script>",
]


def test_it_never_fails_on_hostile_queries(
    alice: Any, api_client: Client, alice_client: Client, demo_agent: Agent, caplog: Any
):
    caplog.set_level(logging.WARNING)
    make(alice, demo_agent, "target", "a b c foo word 🎉 émoji")
    for q in HOSTILE:
        services.list_conversations(alice, q=q)  # no exception
        assert isinstance(Conversation.objects.search(q, everywhere=True).count(), int)
        if "\x00" in q or "\ud800" in q:
            continue  # refused before any view (tests/test_hostile_json.py)
        response = api_client.get("/api/v1/conversations", {"q": q})
        assert response.status_code == 200, (q[:20], response.content[:200])
        page = alice_client.get("/", {"q": q})
        assert page.status_code == 200, q[:20]
        assert "<script>alert(1)</script>" not in page.content.decode()
    assert {c["title"] for c in api_client.get(
        "/api/v1/conversations", {"q": "émoji"}).json()["data"]} == {"target"}
    no_tracebacks(caplog)
