"""Review scores in the exports: the JSONL's scores per message and per conversation, the CSV's
column per active config, the export endpoint's queue and score filters (hostile values
included), and a query count that does not grow with the scores."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from conversations.models import (
    Agent,
    Conversation,
    Message,
    QueueItem,
    ReviewQueue,
    Score,
    ScoreConfig,
)
from conversations.review import export

pytestmark = pytest.mark.django_db

URL = "/api/v1/conversations/export"
T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def read(response: Any) -> str:
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content).decode()


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def scored(alice: Any, bob: Any, reviewer: Any, demo_agent: Agent) -> dict[str, Any]:
    """Three conversations: one scored on two replies and as a whole, one only in a queue, one
    untouched."""
    helpful = ScoreConfig.objects.create(name="helpful", kind="boolean")
    accuracy = ScoreConfig.objects.create(name="accuracy", kind="numeric", min_value=1,
                                          max_value=5)
    tone = ScoreConfig.objects.create(name="tone", kind="categorical",
                                      options=["good", "=bad", "1"])
    retired = ScoreConfig.objects.create(name="retired", kind="boolean", is_active=False)

    def conversation(title: str, minutes: int) -> Conversation:
        return Conversation.objects.create(owner=alice, agent=demo_agent, title=title,
                                           created_at=T0 + timedelta(minutes=minutes))

    scored_one = conversation("scored", 0)
    Message.objects.create(conversation=scored_one, seq=1, role="user", content="hi")
    r1 = Message.objects.create(conversation=scored_one, seq=2, role="assistant", content="a")
    r2 = Message.objects.create(conversation=scored_one, seq=3, role="assistant", content="b")
    queued = conversation("queued", 1)
    q_reply = Message.objects.create(conversation=queued, seq=1, role="assistant", content="c")
    conversation("plain", 2)

    def score(config: ScoreConfig, author: Any, value: Any, seconds: int, *,
              message: Message | None = None, comment: str = "", source: str = "human") -> None:
        Score.objects.create(config=config, author=author, value=value, comment=comment,
                             source=source, conversation=scored_one, message=message,
                             created_at=at(seconds), updated_at=at(seconds + 1))

    score(accuracy, reviewer, 4, 1, message=r1, comment="=SUM(A1)")
    score(accuracy, bob, 5, 2, message=r1)
    score(helpful, bob, False, 3, message=r1)
    score(helpful, reviewer, True, 4, message=r1)
    score(tone, reviewer, "=bad", 5, message=r2)
    score(accuracy, None, 2, 6, message=r2, source="api")
    score(retired, reviewer, True, 7, message=r2)
    score(tone, bob, "good", 8)  # the conversation as a whole
    score(accuracy, reviewer, 3, 9)

    queue = ReviewQueue.objects.create(name="Thumbs down")
    queue.configs.set([helpful])
    QueueItem.objects.create(queue=queue, conversation=queued, message=q_reply,
                             reason="thumbs_down")
    empty_queue = ReviewQueue.objects.create(name="1234")
    empty_queue.configs.set([tone])
    return {"scored": scored_one, "r1": r1, "r2": r2, "queue": queue,
            "empty_queue": empty_queue}


def test_it_puts_scores_in_the_jsonl(reviewer_client: Client, scored: dict[str, Any]):
    lines = [json.loads(line) for line in
             read(reviewer_client.get(URL, {"format": "jsonl"})).splitlines()]
    first = lines[0]
    assert first["title"] == "scored"
    # The conversation's own scores, oldest first.
    assert first["scores"] == [
        {"config": "tone", "value": "good", "comment": "", "author": "bob", "source": "human",
         "updated_at": "2025-03-10T09:00:09+00:00"},
        {"config": "accuracy", "value": 3, "comment": "", "author": "rita",
         "source": "human", "updated_at": "2025-03-10T09:00:10+00:00"},
    ]
    user, r1, r2 = first["messages"]
    assert user["scores"] == []
    assert [(s["config"], s["value"], s["author"]) for s in r1["scores"]] == [
        ("accuracy", 4, "rita"), ("accuracy", 5, "bob"), ("helpful", False, "bob"),
        ("helpful", True, "rita")]
    assert r1["scores"][0]["comment"] == "=SUM(A1)"  # JSON needs no formula guard
    # An inactive config's scores are still the record; an evaluator's author is null.
    assert [(s["config"], s["value"], s["author"], s["source"]) for s in r2["scores"]] == [
        ("tone", "=bad", "rita", "human"), ("accuracy", 2, None, "api"),
        ("retired", True, "rita", "human")]
    assert [line["scores"] for line in lines[1:]] == [[], []]
    assert lines[1]["messages"][0]["scores"] == []


def test_it_puts_one_column_per_active_config_in_the_csv(
    reviewer_client: Client, scored: dict[str, Any]
):
    rows = list(csv.DictReader(io.StringIO(read(reviewer_client.get(URL, {"format": "csv"})))))
    assert list(rows[0]) == [
        *export.CSV_COLUMNS, "score:accuracy", "score:helpful", "score:tone",
        "conversation_score:accuracy", "conversation_score:helpful", "conversation_score:tone",
    ]

    def scores(row: dict[str, str]) -> list[str]:
        return [row[name] for name in list(row)[len(export.CSV_COLUMNS):]]

    user, r1, r2, queued, plain = rows
    own = ["3", "", "good"]  # the conversation's own, on each of its rows
    assert scores(user) == ["", "", "", *own]
    # r1: accuracy mean of 4 and 5; helpful, the first score's (bob's "no").
    assert scores(r1) == ["4.5", "false", "", *own]
    # r2: the evaluator's 2 alone; "=bad" guarded against formulas; "retired" has no column.
    assert scores(r2) == ["2", "", "'=bad", *own]
    assert scores(queued) == [""] * 6
    assert (plain["message_id"], scores(plain)) == ("", [""] * 6)


def test_it_keeps_the_csv_header_when_no_config_is_active(
    reviewer_client: Client, scored: dict[str, Any]
):
    ScoreConfig.objects.update(is_active=False)
    rows = list(csv.DictReader(io.StringIO(read(reviewer_client.get(URL, {"format": "csv"})))))
    assert list(rows[0]) == export.CSV_COLUMNS


def titles(client: Client, **query: str) -> list[str]:
    body = read(client.get(URL, {"format": "jsonl", **query}))
    return [json.loads(line)["title"] for line in body.splitlines()]


def test_it_filters_by_queue_and_score(reviewer_client: Client, scored: dict[str, Any]):
    queue, empty_queue = scored["queue"], scored["empty_queue"]
    assert titles(reviewer_client) == ["scored", "queued", "plain"]
    assert titles(reviewer_client, queue="Thumbs down") == ["queued"]
    assert titles(reviewer_client, queue=str(queue.pk)) == ["queued"]
    # An all-digit name that is no queue's id is a name.
    assert "1234" != str(empty_queue.pk)
    assert titles(reviewer_client, queue="1234") == []
    assert titles(reviewer_client, queue=str(empty_queue.pk)) == []

    assert titles(reviewer_client, score_config="accuracy") == ["scored"]
    assert titles(reviewer_client, score_config="helpful", score_value="false") == ["scored"]
    assert titles(reviewer_client, score_config="helpful", score_value="yes") == ["scored"]
    assert titles(reviewer_client, score_config="accuracy", score_value="4.0") == ["scored"]
    assert titles(reviewer_client, score_config="accuracy", score_value="4.5") == []
    assert titles(reviewer_client, score_config="accuracy", score_value="1") == []
    # The conversation's own score counts as well as its replies'.
    assert titles(reviewer_client, score_config="tone", score_value="good") == ["scored"]
    assert titles(reviewer_client, score_config="tone", score_value="=bad") == ["scored"]
    assert titles(reviewer_client, score_config="tone", score_value="1") == []
    # Retired configs still filter: their scores are in the export.
    assert titles(reviewer_client, score_config="retired", score_value="true") == ["scored"]
    assert titles(reviewer_client, queue="Thumbs down", score_config="helpful") == []
    # A config without bounds takes any number, however large.
    ScoreConfig.objects.create(name="open", kind="numeric")
    assert titles(reviewer_client, score_config="open", score_value="1e300") == []
    assert titles(reviewer_client, score_config="open", score_value="-" + "9" * 300) == []
    assert titles(reviewer_client, score_config="accuracy", owner="alice",
                  since="2025-03-10") == ["scored"]


@pytest.mark.parametrize(("query", "field", "message"), [
    ({"queue": "nope"}, "queue", 'Unknown queue "nope".'),
    ({"queue": "99999999999999999999"}, "queue", 'Unknown queue "99999999999999999999".'),
    ({"queue": "-1"}, "queue", 'Unknown queue "-1".'),
    ({"queue": "٣"}, "queue", 'Unknown queue "٣".'),
    ({"queue": "x" * 5000}, "queue", f'Unknown queue "{"x" * 5000}".'),
    ({"score_config": "nope"}, "score_config", 'Unknown score config "nope".'),
    ({"score_config": "<b>"}, "score_config", 'Unknown score config "<b>".'),
    ({"score_value": "4"}, "score_value", "score_value needs score_config."),
    ({"score_config": "accuracy", "score_value": "great"}, "score_value",
     "accuracy needs a number."),
    ({"score_config": "accuracy", "score_value": "nan"}, "score_value",
     "accuracy needs a number."),
    ({"score_config": "accuracy", "score_value": "4_0"}, "score_value",
     "accuracy needs a number."),
    ({"score_config": "accuracy", "score_value": "1e999"}, "score_value",
     "accuracy needs a number."),
    ({"score_config": "accuracy", "score_value": "9"}, "score_value",
     "accuracy must be between 1 and 5."),
    ({"score_config": "helpful", "score_value": "maybe"}, "score_value",
     "helpful must be true or false."),
    ({"score_config": "tone", "score_value": "GOOD"}, "score_value",
     "tone must be one of: good, =bad, 1."),
])
def test_it_refuses_bad_queue_and_score_filters_before_the_first_byte(
    reviewer_client: Client, scored: dict[str, Any], caplog: Any, query: dict[str, str],
    field: str, message: str,
):
    with caplog.at_level(logging.WARNING):
        response = reviewer_client.get(URL, {"format": "csv", **query})
    assert response.status_code == 422
    assert not response.streaming
    assert response.json() == {
        "error": {"code": "invalid", "message": message, "details": {"field": field}}
    }
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def _queries(client: Client, export_format: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        read(client.get(URL, {"format": export_format}))
    return len(queries)


@pytest.mark.parametrize("export_format", ["csv", "jsonl"])
def test_it_exports_scores_in_a_fixed_number_of_queries(
    reviewer_client: Client, scored: dict[str, Any], alice: Any, bob: Any, demo_agent: Agent,
    export_format: str,
):
    small = _queries(reviewer_client, export_format)
    configs = [ScoreConfig.objects.create(name=f"extra{i}", kind="numeric") for i in range(4)]
    for i in range(10):
        conversation = Conversation.objects.create(owner=alice, agent=demo_agent,
                                                   title=f"more{i}")
        message = Message.objects.create(conversation=conversation, seq=1, role="assistant",
                                         content="x")
        for config in configs:
            for author in (alice, bob):
                Score.objects.create(config=config, conversation=conversation, message=message,
                                     author=author, value=i)
    assert _queries(reviewer_client, export_format) == small
