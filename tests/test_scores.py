"""Scores against rubrics (issue 13 §1): value rules, one score per (config, author, target)
with history, and `POST`/`GET /api/v1/scores` for reviewers and tools."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from conversations import services
from conversations.models import Conversation, Message, Score, ScoreConfig
from conversations.services import InvalidInput, NotFound

pytestmark = pytest.mark.django_db


@pytest.fixture
def configs(db: Any) -> dict[str, ScoreConfig]:
    return {
        "accuracy": ScoreConfig.objects.create(name="accuracy", kind="numeric", min_value=1,
                                               max_value=5, description="1 wrong … 5 exact"),
        "tone": ScoreConfig.objects.create(name="tone", kind="categorical",
                                           options=["rude", "neutral", "warm"]),
        "resolved": ScoreConfig.objects.create(name="resolved", kind="boolean"),
    }


@pytest.fixture
def reply(conversation: Conversation) -> Message:
    Message.objects.create(conversation=conversation, seq=1, role="user", content="hi")
    return Message.objects.create(conversation=conversation, seq=2, role="assistant",
                                  content="Hello")


def post(client: Client, body: Any) -> Any:
    return client.post("/api/v1/scores", body if isinstance(body, str) else json.dumps(body),
                       content_type="application/json")


@pytest.mark.parametrize(("name", "value", "stored"), [
    ("accuracy", 4, 4), ("accuracy", 4.0, 4), ("accuracy", 2.5, 2.5), ("accuracy", 1, 1),
    ("tone", "warm", "warm"), ("resolved", False, False),
])
def test_it_accepts_values_of_each_kind(configs: dict[str, ScoreConfig], name: str,
                                        value: Any, stored: Any):
    result = services.validate_value(configs[name], value)
    assert result == stored and type(result) is type(stored)


@pytest.mark.parametrize(("name", "value", "part"), [
    ("accuracy", 6, "between 1 and 5"), ("accuracy", 0.5, "between 1 and 5"),
    ("accuracy", True, "needs a number"), ("accuracy", "4", "needs a number"),
    ("accuracy", float("nan"), "needs a number"), ("accuracy", float("inf"), "needs a number"),
    ("accuracy", None, "needs a number"),
    ("tone", "Warm", "one of: rude, neutral, warm"), ("tone", 1, "one of"),
    ("resolved", 1, "true or false"), ("resolved", "true", "true or false"),
])
def test_it_refuses_values_outside_the_rubric(configs: dict[str, ScoreConfig], name: str,
                                              value: Any, part: str):
    with pytest.raises(InvalidInput) as exc:
        services.validate_value(configs[name], value)
    assert exc.value.code == "invalid" and exc.value.field == "value"
    assert part in exc.value.message


def test_it_keeps_one_score_per_author_and_target_with_history(
        configs: dict[str, ScoreConfig], reply: Message, reviewer: Any, staff: Any):
    accuracy = configs["accuracy"]
    first = services.set_score(reviewer, config=accuracy, value=3, comment="vague",
                               message=reply)
    assert (first.conversation_id, first.message_id, first.source) == (
        reply.conversation_id, reply.pk, "human")
    same = services.set_score(reviewer, config=accuracy, value=3, comment="vague",
                              message=reply.pk)
    assert same.pk == first.pk and same.history == []
    changed = services.set_score(reviewer, config=accuracy, value=5, comment=" exact ",
                                 message=reply, conversation=reply.conversation_id)
    assert changed.pk == first.pk
    assert (changed.value, changed.comment) == (5, "exact")
    assert [(h["value"], h["comment"]) for h in changed.history] == [(3, "vague")]
    assert changed.history[0]["at"].startswith(first.updated_at.date().isoformat())
    # Another author, and the conversation as a whole, are other scores.
    services.set_score(staff, config=accuracy, value=2, message=reply)
    whole = services.set_score(reviewer, config=accuracy, value=1,
                               conversation=reply.conversation)
    assert whole.message_id is None
    assert Score.objects.count() == 3
    assert [s.value for s in services.scores_for(message=reply, author=reviewer)] == [5]
    assert {s.value for s in services.scores_for(conversation=reply.conversation_id)} == {
        5, 2, 1}
    assert [s.value for s in services.scores_for(
        conversation=reply.conversation, config=accuracy, author=reviewer
    ).filter(message__isnull=True)] == [1]


def test_it_scores_only_assistant_replies_of_the_conversation(
        configs: dict[str, ScoreConfig], reply: Message, reviewer: Any, alice: Any,
        demo_agent: Any):
    question = Message.objects.get(conversation=reply.conversation, role="user")
    with pytest.raises(InvalidInput, match="Only an assistant reply"):
        services.set_score(reviewer, config=configs["resolved"], value=True, message=question)
    other = Conversation.objects.create(owner=alice, agent=demo_agent)
    with pytest.raises(InvalidInput, match="not in that conversation"):
        services.set_score(reviewer, config=configs["resolved"], value=True, message=reply,
                           conversation=other)
    with pytest.raises(NotFound):
        services.set_score(reviewer, config=configs["resolved"], value=True,
                           message="00000000-0000-0000-0000-000000000000")
    with pytest.raises(InvalidInput, match="message_id or conversation_id"):
        services.set_score(reviewer, config=configs["resolved"], value=True)
    configs["tone"].is_active = False
    configs["tone"].save()
    with pytest.raises(InvalidInput, match="active score config"):
        services.set_score(reviewer, config=configs["tone"], value="warm", message=reply)
    assert not Score.objects.exists()


def test_it_writes_scores_over_the_api_as_source_api(
        configs: dict[str, ScoreConfig], reply: Message, reviewer_client: Client):
    r = post(reviewer_client, {"config": "accuracy", "value": 4, "comment": "good",
                               "message_id": str(reply.pk)})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["config"] == {"id": configs["accuracy"].pk, "name": "accuracy"}
    assert (body["value"], body["comment"], body["source"], body["author"]) == (
        4, "good", "api", "rita")
    assert body["message_id"] == str(reply.pk)
    assert body["conversation_id"] == str(reply.conversation_id)
    r = post(reviewer_client, {"config": configs["tone"].pk, "value": "warm",
                               "conversation_id": str(reply.conversation_id)})
    assert r.status_code == 201 and r.json()["message_id"] is None
    r = post(reviewer_client, {"config": "accuracy", "value": 2, "message_id": str(reply.pk)})
    assert r.json()["history"][0]["value"] == 4 and r.json()["value"] == 2
    assert Score.objects.count() == 2


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"config": "accuracy", "value": 9}, 422, "value"),
    ({"config": "accuracy", "value": True}, 422, "value"),
    ({"config": "nope", "value": 3}, 422, "config"),
    ({"config": ["accuracy"], "value": 3}, 422, "config"),
    ({"config": 10**30, "value": 3}, 422, "config"),
    ({"value": 3}, 422, "config"),
    ({"config": "accuracy"}, 422, "value"),
    ({"config": "accuracy", "value": 3, "message_id": "x' OR 1=1"}, 422, "message_id"),
    ({"config": "accuracy", "value": 3, "message_id": 7}, 422, "message_id"),
    ({"config": "accuracy", "value": 3, "comment": ["x"]}, 422, "comment"),
    ({"config": "accuracy", "value": 3, "comment": "x" * 2001}, 422, "comment"),
    ({"config": "accuracy", "value": 3, "author": "someone"}, 422, "author"),
    ({"config": "accuracy", "value": 3}, 422, "message_id"),
    ("[1, 2]", 400, None),
    ('{"config": "accuracy", "value": NaN}', 422, None),
    ("{oops", 400, None),
])
def test_it_refuses_hostile_score_bodies(configs: dict[str, ScoreConfig], reply: Message,
                                         reviewer_client: Client, body: Any, status: int,
                                         field: str | None, caplog: Any):
    if isinstance(body, dict) and "message_id" not in body and field != "message_id":
        body = {**body, "message_id": str(reply.pk)}
    r = post(reviewer_client, body)
    assert r.status_code == status, r.content
    error = r.json()["error"]
    assert error["code"] in ("invalid", "bad_json") and error["message"]
    if field:
        assert error["details"] == {"field": field}
    assert not Score.objects.exists()
    assert "Traceback" not in caplog.text


def test_it_answers_404_for_a_missing_target(configs: dict[str, ScoreConfig],
                                             reviewer_client: Client):
    r = post(reviewer_client, {"config": "accuracy", "value": 3,
                               "conversation_id": "00000000-0000-0000-0000-000000000000"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_it_keeps_scores_from_users_who_are_not_reviewers(
        configs: dict[str, ScoreConfig], reply: Message, alice_client: Client,
        reviewer: Any):
    r = post(alice_client, {"config": "accuracy", "value": 3, "message_id": str(reply.pk)})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    services.set_score(reviewer, config=configs["accuracy"], value=3, message=reply)
    r = alice_client.get("/api/v1/scores")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert Client().get("/api/v1/scores").status_code == 401


def test_it_lists_scores_with_filters(configs: dict[str, ScoreConfig], reply: Message,
                                      reviewer: Any, reviewer_client: Client, staff: Any):
    services.set_score(reviewer, config=configs["accuracy"], value=4, message=reply)
    services.set_score(staff, config=configs["accuracy"], value=2, message=reply)
    services.set_score(reviewer, config=configs["resolved"], value=True,
                       conversation=reply.conversation)

    def listed(query: str) -> list[Any]:
        r = reviewer_client.get(f"/api/v1/scores{query}")
        assert r.status_code == 200, r.content
        return sorted((s["config"]["name"], s["value"], s["author"]) for s in r.json()["data"])

    assert listed("") == [("accuracy", 2, "root"), ("accuracy", 4, "rita"),
                          ("resolved", True, "rita")]
    assert listed("?config=accuracy&author=rita") == [("accuracy", 4, "rita")]
    assert listed(f"?config={configs['resolved'].pk}") == [("resolved", True, "rita")]
    assert listed(f"?message_id={reply.pk}") == [("accuracy", 2, "root"),
                                                 ("accuracy", 4, "rita")]
    assert len(listed(f"?conversation_id={reply.conversation_id}")) == 3
    assert listed("?since=2000-01-01&until=2999-12-31") == listed("")
    assert listed("?until=2000-01-01") == []
    for query, field in (("?since=yesterday", "since"), ("?message_id=nope", "message_id"),
                         ("?config=ghost", "config"), ("?colour=red", "colour")):
        r = reviewer_client.get(f"/api/v1/scores{query}")
        assert r.status_code == 422 and r.json()["error"]["details"] == {"field": field}
