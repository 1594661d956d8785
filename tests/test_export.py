"""Exports: the CSV and JSONL formats, the API's permissions and filters, streaming and query
counts, and the admin's export actions."""

from __future__ import annotations

import csv
import io
import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext

from conversations.models import Agent, Conversation, Feedback, Label, Message, ToolCall
from conversations.review import export

pytestmark = pytest.mark.django_db

URL = "/api/v1/conversations/export"
T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def transcript(alice: Any, reviewer: Any, demo_agent: Agent) -> Conversation:
    conversation = Conversation.objects.create(
        owner=alice, agent=demo_agent, title="=HYPERLINK(\"http://evil\")",
        external_user_id="cust-1", metadata={"plan": "pro"}, created_at=T0, updated_at=T0,
        review_status="flagged", review_notes="check refund", reviewed_by=reviewer,
        reviewed_at=T0 + timedelta(days=1),
    )
    conversation.labels.add(Label.objects.create(name="refund"),
                            Label.objects.create(name="@vip"))
    Message.objects.create(conversation=conversation, seq=1, role="user",
                           content="-2+3 is it?", created_at=T0)
    reply = Message.objects.create(
        conversation=conversation, seq=2, role="assistant", content="It is 1.",
        created_at=T0, completed_at=T0 + timedelta(seconds=2), ttft_ms=350,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        extra={"reasoning": "math"},
    )
    ToolCall.objects.create(message=reply, index=0, call_id="c1", name="calculator",
                            arguments='{"expr": "-2+3"}', result=1, status="completed")
    ToolCall.objects.create(message=reply, index=1, call_id="c2", name="", status="started")
    Feedback.objects.create(message=reply, author=alice, score=-1, comment="+wrong")
    Message.objects.create(conversation=conversation, seq=3, role="assistant", status="failed",
                           error_code="vendor_auth", error_message="refused", created_at=T0)
    return conversation


def read_csv(response: Any) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def read_jsonl(response: Any) -> list[dict[str, Any]]:
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


def test_it_exports_one_csv_row_per_message(reviewer_client: Client, transcript: Conversation):
    response = reviewer_client.get(URL, {"format": "csv"})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    # export.py's no-store, plus private from chatsite.middleware.no_store_for_users.
    assert set(response["Cache-Control"].split(", ")) == {"no-store", "private"}
    rows = read_csv(response)
    assert list(rows[0]) == export.CSV_COLUMNS
    assert [r["seq"] for r in rows] == ["1", "2", "3"]
    user, reply, failed = rows
    assert reply == {
        "conversation_id": str(transcript.pk),
        # Formula injection: text cells starting with = + - @ get a leading quote.
        "title": "'=HYPERLINK(\"http://evil\")",
        "owner": "alice",
        "agent": "demo",
        "external_user_id": "cust-1",
        "review_status": "flagged",
        "labels": "'@vip; refund",
        "message_id": str(transcript.messages.get(seq=2).pk),
        "seq": "2",
        "role": "assistant",
        "status": "completed",
        "content": "It is 1.",
        "error_code": "",
        "created_at": "2025-03-10T09:00:00+00:00",
        "completed_at": "2025-03-10T09:00:02+00:00",
        "ttft_ms": "350",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "feedback_score": "-1",
        "feedback_comment": "'+wrong",
        "tool_calls": "calculator; c2",
    }
    assert user["content"] == "'-2+3 is it?"
    assert (user["feedback_score"], user["tool_calls"]) == ("", "")
    assert (failed["status"], failed["error_code"], failed["completed_at"]) == (
        "failed", "vendor_auth", "")


def test_it_keeps_conversations_without_messages_in_the_csv(
    reviewer_client: Client, conversation: Conversation
):
    [row] = read_csv(reviewer_client.get(URL, {"format": "csv"}))
    assert (row["conversation_id"], row["title"], row["message_id"], row["seq"]) == (
        str(conversation.pk), "Refund question", "", "")


def test_it_exports_one_jsonl_line_per_conversation(
    reviewer_client: Client, transcript: Conversation, bob: Any, demo_agent: Agent
):
    Conversation.objects.create(owner=bob, agent=demo_agent, title="Bob's",
                                created_at=T0 + timedelta(hours=1))
    response = reviewer_client.get(URL, {"format": "jsonl"})

    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    first, second = read_jsonl(response)
    assert second["title"] == "Bob's" and second["messages"] == []
    assert first["id"] == str(transcript.pk)
    assert first["owner"] == "alice"
    assert first["metadata"] == {"plan": "pro"}
    assert first["review"] == {
        "status": "flagged", "labels": ["@vip", "refund"], "notes": "check refund",
        "reviewed_by": "rita", "reviewed_at": "2025-03-11T09:00:00+00:00",
    }
    user, reply, failed = first["messages"]
    assert user["content"] == "-2+3 is it?"  # JSON needs no formula guard
    assert reply["seq"] == 2
    assert reply["feedback"] == {"score": -1, "comment": "+wrong"}
    assert reply["tool_calls"] == [
        {"id": "c1", "name": "calculator", "arguments": '{"expr": "-2+3"}', "result": 1,
         "status": "completed"},
        {"id": "c2", "name": "", "arguments": "", "result": None, "status": "started"},
    ]
    assert reply["token_usage"] == {"prompt_tokens": 5, "completion_tokens": 3,
                                    "total_tokens": 8}
    assert reply["ttft_ms"] == 350
    assert reply["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert reply["extra"] == {"reasoning": "math"}
    assert failed["error"] == {"code": "vendor_auth", "message": "refused"}


def test_it_requires_the_export_permission(client: Client, alice_client: Client,
                                           transcript: Conversation, staff: Any):
    anonymous = client.get(URL, {"format": "csv"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    refused = alice_client.get(URL, {"format": "csv"})
    assert refused.status_code == 403
    assert refused.json() == {"error": {
        "code": "forbidden", "message": "You are not allowed to export conversations.",
        "details": {},
    }}
    staff_client = Client()
    staff_client.force_login(staff)
    assert len(read_csv(staff_client.get(URL, {"format": "csv"}))) == 3


@pytest.mark.parametrize(("query", "field", "message"), [
    ({}, "format", "format must be csv or jsonl."),
    ({"format": "xlsx"}, "format", "format must be csv or jsonl."),
    ({"format": "csv", "agnet": "demo"}, "agnet", "Unknown filter(s): agnet."),
    ({"format": "csv", "agent": "nope"}, "agent", 'Unknown agent "nope".'),
    ({"format": "csv", "owner": "nobody"}, "owner", 'Unknown owner "nobody".'),
    ({"format": "csv", "label": "nope"}, "label", 'Unknown label "nope".'),
    ({"format": "csv", "review_status": "done"}, "review_status",
     "review_status must be one of: unreviewed, reviewed, flagged."),
    ({"format": "csv", "since": "yesterday"}, "since",
     "since must be a date such as 2025-01-31 or an ISO datetime."),
    ({"format": "csv", "until": "2025-02-30"}, "until",
     "until must be a date such as 2025-01-31 or an ISO datetime."),
    ({"format": "csv", "since": "2025-03-11", "until": "2025-03-10"}, "since",
     "since must be before until."),
])
def test_it_refuses_bad_formats_and_filters(
    reviewer_client: Client, transcript: Conversation, query: dict[str, str], field: str,
    message: str,
):
    response = reviewer_client.get(URL, query)
    assert response.status_code == 422
    assert response.json() == {
        "error": {"code": "invalid", "message": message, "details": {"field": field}}
    }


def test_it_filters_the_export(
    reviewer_client: Client, alice: Any, bob: Any, demo_agent: Agent
):
    other = Agent.objects.create(slug="other", name="Other", provider="demo")
    refund = Label.objects.create(name="Refund")

    def make(title: str, owner: Any, agent: Agent, day: int, **fields: Any) -> Conversation:
        return Conversation.objects.create(
            owner=owner, agent=agent, title=title, created_at=T0 + timedelta(days=day),
            **fields)

    make("a1", alice, demo_agent, 0, external_user_id="cust-9")
    make("a2", alice, other, 1, review_status="reviewed").labels.add(refund)
    b1 = make("b1", bob, other, 2, metadata={"city": "Montréal"})
    Message.objects.create(conversation=b1, seq=1, role="user", content="where is my parcel")

    def titles(**query: str) -> list[str]:
        response = reviewer_client.get(URL, {"format": "jsonl", **query})
        assert response.status_code == 200, response.content
        return [line["title"] for line in read_jsonl(response)]

    assert titles() == ["a1", "a2", "b1"]
    assert titles(agent="other") == ["a2", "b1"]
    assert titles(owner="bob") == ["b1"]
    assert titles(review_status="reviewed") == ["a2"]
    assert titles(label="refund") == ["a2"]
    assert titles(since="2025-03-11") == ["a2", "b1"]
    assert titles(until="2025-03-11") == ["a1", "a2"]
    assert titles(since="2025-03-11", until="2025-03-11") == ["a2"]
    assert titles(since="2025-03-11T12:00:00+00:00") == ["b1"]
    assert titles(external_user_id="cust-9") == ["a1"]
    assert titles(q="parcel") == ["b1"]
    assert titles(q="montréal") == ["b1"]
    assert titles(q="a2") == ["a2"]
    assert titles(agent="other", owner="alice") == ["a2"]


def _export_queries(client: Client, export_format: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, {"format": export_format})
        body = b"".join(response.streaming_content)
    assert body
    return len(queries)


def _add_conversations(owner: Any, agent: Agent, n: int) -> None:
    label = Label.objects.get_or_create(name="bulk")[0]
    for i in range(n):
        conversation = Conversation.objects.create(owner=owner, agent=agent, title=f"c{i}")
        conversation.labels.add(label)
        Message.objects.create(conversation=conversation, seq=1, role="user", content="hi")
        reply = Message.objects.create(conversation=conversation, seq=2, role="assistant",
                                       content="hello")
        ToolCall.objects.create(message=reply, call_id="t", name="lookup")
        Feedback.objects.create(message=reply, author=owner, score=1)


@pytest.mark.parametrize("export_format", ["csv", "jsonl"])
def test_it_exports_in_a_fixed_number_of_queries(
    reviewer_client: Client, alice: Any, demo_agent: Agent, export_format: str
):
    _add_conversations(alice, demo_agent, 3)
    small = _export_queries(reviewer_client, export_format)
    _add_conversations(alice, demo_agent, 27)
    large = _export_queries(reviewer_client, export_format)
    assert small == large


def test_it_reads_large_exports_chunk_by_chunk(
    reviewer_client: Client, alice: Any, demo_agent: Agent, monkeypatch: pytest.MonkeyPatch
):
    _add_conversations(alice, demo_agent, 7)
    monkeypatch.setattr(export, "EXPORT_CHUNK_SIZE", 3)
    with CaptureQueriesContext(connection) as queries:
        response = reviewer_client.get(URL, {"format": "jsonl"})
        lines = read_jsonl(response)
    assert len(lines) == 7
    # The messages of each chunk of 3 conversations are fetched in one query: 3 chunks.
    message_queries = [q for q in queries if 'FROM "conversations_message"' in q["sql"]]
    assert len(message_queries) == 3


@pytest.mark.django_db(transaction=True)
async def test_it_streams_under_asgi_without_buffering(
    demo_agent: Agent, alice: Any, reviewer: Any
):
    from asgiref.sync import sync_to_async

    await sync_to_async(_add_conversations)(alice, demo_agent, 5)
    client = AsyncClient()
    await client.aforce_login(reviewer)
    with warnings.catch_warnings():
        # Django warns (and reads everything into a list) when an ASGI response is given a
        # synchronous iterator.
        warnings.filterwarnings("error", message="StreamingHttpResponse must consume")
        response = await client.get(URL, {"format": "csv"})
        chunks = [chunk async for chunk in response.streaming_content]
    # The test client keeps the request thread's connection open (in production Django closes
    # it when the response ends); PostgreSQL would refuse to drop the test database.
    await sync_to_async(connections.close_all)()
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == 10
    assert {r["title"] for r in rows} == {"c0", "c1", "c2", "c3", "c4"}


# Admin actions ---------------------------------------------------------------------------------


def test_it_exports_selected_conversations_from_the_admin(
    reviewer_client: Client, transcript: Conversation, bob: Any, demo_agent: Agent
):
    Conversation.objects.create(owner=bob, agent=demo_agent, title="not selected")
    response = reviewer_client.post("/admin/conversations/conversation/", {
        "action": "export_csv", "_selected_action": [str(transcript.pk)], "index": 0,
    })
    assert response.status_code == 200
    rows = read_csv(response)
    assert {r["conversation_id"] for r in rows} == {str(transcript.pk)}
    assert len(rows) == 3

    response = reviewer_client.post("/admin/conversations/conversation/?q=selected", {
        "action": "export_jsonl", "select_across": "1", "index": 0,
        "_selected_action": [str(transcript.pk)],
    })
    assert [line["title"] for line in read_jsonl(response)] == ["not selected"]


def test_it_hides_export_actions_without_the_permission(db: Any):
    clerk = get_user_model().objects.create_user("clerk", "c@example.com", None,
                                                 is_staff=True)
    from django.contrib.auth.models import Permission

    clerk.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    client = Client()
    client.force_login(clerk)
    response = client.get("/admin/conversations/conversation/")
    assert response.status_code == 200
    # View only: no export and no review change, so no action at all.
    assert response.context["action_form"] is None
    refused = client.post("/admin/conversations/conversation/", {
        "action": "export_csv", "_selected_action": [], "select_across": "1", "index": 0,
    })
    assert not refused.streaming
