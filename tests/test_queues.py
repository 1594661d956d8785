"""Review queues (issue 13 §2): the rules that fill them on real events, claiming (order,
expiry, double review by two people), completing and skipping, the API, `manage.py review`,
the admin's "Send to a review queue" and the chat header's form."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import services
from conversations.models import (
    Agent,
    Conversation,
    Message,
    QueueItem,
    ReviewQueue,
    Score,
    ScoreConfig,
    ToolCall,
)
from conversations.services import InvalidInput, NotFound, queue_rules, queues, webhooks
from tests.conftest import csrf_headers, ensure_reviewer_group, logged_in
from tests.fakevendor import json_script
from tests.wsclient import open_socket, wait_for_no_runs

db = database_sync_to_async


@pytest.fixture(autouse=True)
def _fresh_rules() -> Any:
    """The rules are cached per process; a rolled-back test's queues must not linger."""
    queue_rules.forget_rules()
    yield
    queue_rules.forget_rules()


@pytest.fixture
def sam(db: Any) -> Any:
    """A second reviewer."""
    user = get_user_model().objects.create_user("sam", "sam@example.com", None, is_staff=True)
    user.groups.add(ensure_reviewer_group())
    return user


@pytest.fixture
def configs(db: Any) -> list[ScoreConfig]:
    return [
        ScoreConfig.objects.create(name="accuracy", kind="numeric", min_value=1, max_value=5),
        ScoreConfig.objects.create(name="resolved", kind="boolean"),
    ]


def make_queue(configs: list[ScoreConfig], name: str = "QA", **fields: Any) -> ReviewQueue:
    queue = ReviewQueue.objects.create(name=name, **{"reviewer_group": True, **fields})
    queue.configs.set(configs)
    return queue


def reply_in(conversation: Conversation, *, status: str = "completed") -> Message:
    seq = conversation.messages.count()
    Message.objects.create(conversation=conversation, seq=seq + 1, role="user", content="q")
    return Message.objects.create(conversation=conversation, seq=seq + 2, role="assistant",
                                  content="a", status=status)


def finish(reply: Message, status: str = "completed", code: str = "",
           tool_status: str | None = None) -> None:
    tools = [services.ToolCallRecord(call_id="c1", name="lookup", status=tool_status)] \
        if tool_status else []
    assert services.finish_run(reply.pk, reply.conversation_id, services.RunOutcome(
        status=status, content="done", error_code=code, tool_calls=tools)) is not None


def items(queue: ReviewQueue) -> list[tuple[Any, Any, str, int]]:
    return sorted(
        ((i.conversation_id, i.message_id, i.reason, i.review_round)
         for i in queue.items.all()), key=str)


GOOD = [{"config": "accuracy", "value": 4, "comment": "fine"},
        {"config": "resolved", "value": True}]


# Rules -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_enqueues_a_thumbs_down_given_over_the_api(
        configs: list[ScoreConfig], api_client: Client, conversation: Conversation,
        django_capture_on_commit_callbacks: Any):
    down = make_queue(configs, on_thumbs_down=True)
    other = make_queue(configs, name="Other")
    reply = reply_in(conversation)
    with django_capture_on_commit_callbacks(execute=True):
        r = api_client.put(f"/api/v1/messages/{reply.pk}/feedback", json.dumps({"score": 1}),
                           content_type="application/json", **csrf_headers(api_client))
        assert r.status_code == 200
    assert items(down) == []
    for _ in range(2):  # twice: still one item
        with django_capture_on_commit_callbacks(execute=True):
            r = api_client.put(f"/api/v1/messages/{reply.pk}/feedback",
                               json.dumps({"score": -1, "comment": "wrong"}),
                               content_type="application/json", **csrf_headers(api_client))
            assert r.status_code == 200
    assert items(down) == [(conversation.pk, reply.pk, "thumbs_down", 1)]
    assert items(other) == []


@pytest.mark.django_db(transaction=True)
async def test_it_enqueues_a_reply_that_failed_at_the_vendor(
        alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any,
        configs: list[ScoreConfig]):
    any_failure = await db(make_queue)(configs, name="Failures", on_failure=True)
    timeouts = await db(make_queue)(configs, name="Timeouts", on_failure=True,
                                    failure_codes=["vendor_timeout"])
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", "/v1/chat/completions",
                          json_script({"error": {"message": "boom"}}, status=500))
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "hello"})
    frames = await sock.recv_until("message.completed", "message.failed")
    await wait_for_no_runs()
    await sock.close()
    failed = frames[-1]["message"]
    assert frames[-1]["type"] == "message.failed"
    assert failed["error"]["code"] == "vendor_unavailable"
    found = await db(lambda: items(any_failure))()
    assert [(str(m), reason) for _c, m, reason, _r in found] == [(failed["id"], "failure")]
    assert await db(lambda: items(timeouts))() == []  # another code


@pytest.mark.django_db
def test_it_enqueues_tool_errors_failures_by_code_and_a_predictable_sample(
        configs: list[ScoreConfig], conversation: Conversation,
        django_capture_on_commit_callbacks: Any):
    tools = make_queue(configs, name="Tools", on_tool_error=True)
    codes = make_queue(configs, name="Codes", on_failure=True, failure_codes=["vendor_auth"])
    sample = make_queue(configs, name="Sample", sample_percent=50)
    replies = [reply_in(conversation, status="streaming") for _ in range(12)]
    with django_capture_on_commit_callbacks(execute=True):
        for reply in replies[:10]:
            finish(reply)
        finish(replies[10], "completed", tool_status=ToolCall.Status.FAILED)
        finish(replies[11], "failed", "vendor_auth")
    expected = {r.pk for r in replies[:11] if queues.draw(r.pk, 50)}
    assert 0 < len(expected) < 11  # the draw is a sample, not all or nothing
    assert {m for _c, m, reason, _r in items(sample) if reason == "sample"} == expected
    assert [(m, reason) for _c, m, reason, _r in items(tools)] == [(replies[10].pk,
                                                                    "tool_error")]
    assert [(m, reason) for _c, m, reason, _r in items(codes)] == [(replies[11].pk,
                                                                    "failure")]


@pytest.mark.django_db
def test_it_never_fails_a_reply_when_a_rule_breaks(
        configs: list[ScoreConfig], conversation: Conversation, monkeypatch: Any,
        caplog: Any, django_capture_on_commit_callbacks: Any):
    make_queue(configs, sample_percent=100)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(queues, "_create", broken)
    reply = reply_in(conversation, status="streaming")
    with django_capture_on_commit_callbacks(execute=True):
        finish(reply)
    reply.refresh_from_db()
    assert reply.status == "completed" and reply.content == "done"
    warnings = [r for r in caplog.records if "review queue rule failed" in r.getMessage()]
    assert len(warnings) == 1 and "database went away" in warnings[0].getMessage()
    assert "Traceback" not in caplog.text
    assert not QueueItem.objects.exists()


@pytest.mark.django_db
def test_it_enqueues_conversations_flagged_in_the_admin(
        configs: list[ScoreConfig], reviewer_client: Client, conversation: Conversation,
        alice: Any, demo_agent: Agent, django_capture_on_commit_callbacks: Any):
    flagged = make_queue(configs, on_flagged=True)
    already = Conversation.objects.create(owner=alice, agent=demo_agent,
                                          review_status="flagged")
    with django_capture_on_commit_callbacks(execute=True):
        r = reviewer_client.post("/admin/conversations/conversation/", {
            "action": "mark_flagged", "_selected_action": [conversation.pk, already.pk]})
        assert r.status_code == 302
    # Only the one that became flagged; as a whole (no message).
    assert items(flagged) == [(conversation.pk, None, "flagged", 1)]
    # The change form too.
    other = Conversation.objects.create(owner=alice, agent=demo_agent)
    with django_capture_on_commit_callbacks(execute=True):
        r = reviewer_client.post(f"/admin/conversations/conversation/{other.pk}/change/", {
            "review_status": "flagged", "review_notes": ""})
        assert r.status_code == 302, r.content
    assert (other.pk, None, "flagged", 1) in items(flagged)


@pytest.mark.django_db
def test_it_reads_the_rules_once_per_window_and_nothing_without_rules(
        configs: list[ScoreConfig], conversation: Conversation,
        django_capture_on_commit_callbacks: Any):
    # Both per-process caches the final write's hooks read, inside their window (the
    # webhooks' one expired or not depending on the test before: a flaky third statement).
    queue_rules.rules()
    webhooks.subscribed_events()
    reply = reply_in(conversation, status="streaming")
    # The final write's two UPDATEs and nothing else: no queue has a rule.
    with CaptureQueriesContext(connection) as seen, \
            django_capture_on_commit_callbacks(execute=True):
        finish(reply)
    assert [q["sql"].split()[0] for q in seen.captured_queries
            if "SAVEPOINT" not in q["sql"]] == ["UPDATE", "UPDATE"]
    make_queue(configs, on_thumbs_down=True)  # a change is read again at once
    assert [r.on_thumbs_down for r in queue_rules.rules()] == [True]


# Claiming --------------------------------------------------------------------------------------


def pending_items(queue: ReviewQueue, conversation: Conversation, n: int) -> list[QueueItem]:
    made = []
    for i in range(n):
        reply = reply_in(conversation)
        item = queues.enqueue(queue, conversation=conversation, message=reply, reason="manual")
        assert item is not None
        QueueItem.objects.filter(pk=item.pk).update(
            created_at=timezone.now() - timedelta(minutes=10 - i))
        made.append(item)
    return made


@pytest.mark.django_db
def test_it_claims_oldest_first_and_returns_an_unfinished_claim_first(
        configs: list[ScoreConfig], conversation: Conversation, reviewer: Any, sam: Any):
    queue = make_queue(configs)
    first, second, third = pending_items(queue, conversation, 3)
    assert queues.claim_next(queue.pk, reviewer).pk == first.pk
    assert queues.claim_next(queue.pk, reviewer).pk == first.pk  # still hers, not a second
    assert queues.claim_next(queue.pk, sam).pk == second.pk
    done = queues.complete(first.pk, reviewer, GOOD)
    assert (done.status, done.completed_by) == ("done", reviewer)
    assert queues.claim_next(queue.pk, reviewer).pk == third.pk
    assert queues.claim_next(queue.pk, reviewer).pk == third.pk
    queues.skip(third.pk, reviewer)
    assert queues.claim_next(queue.pk, reviewer) is None
    summary = {s.name: s for s in services.queues_for(reviewer)}["QA"]
    assert (summary.pending, summary.in_progress, summary.done, summary.skipped) == (0, 1, 1, 1)
    assert summary.done_by == {"rita": 1}


@pytest.mark.django_db
def test_it_gives_an_expired_claim_to_the_next_reviewer(
        configs: list[ScoreConfig], conversation: Conversation, reviewer: Any, sam: Any,
        settings: Any):
    settings.REVIEW_CLAIM_MINUTES = 30
    queue = make_queue(configs)
    (item,) = pending_items(queue, conversation, 1)
    assert queues.claim_next(queue.pk, reviewer).pk == item.pk
    assert queues.claim_next(queue.pk, sam) is None
    QueueItem.objects.filter(pk=item.pk).update(
        claimed_at=timezone.now() - timedelta(minutes=29))
    assert queues.claim_next(queue.pk, sam) is None
    assert services.queues_for(sam)[0].in_progress == 1
    QueueItem.objects.filter(pk=item.pk).update(
        claimed_at=timezone.now() - timedelta(minutes=31))
    assert services.queues_for(sam)[0].pending == 1
    assert queues.claim_next(queue.pk, sam).pk == item.pk
    # The first claimer lost it: her completion is refused, nothing is written.
    with pytest.raises(NotFound):
        queues.complete(item.pk, reviewer, GOOD)
    assert not Score.objects.exists()
    assert queues.complete(item.pk, sam, GOOD).completed_by == sam


@pytest.mark.django_db
def test_it_sends_a_double_review_to_another_reviewer_only(
        configs: list[ScoreConfig], conversation: Conversation, reviewer: Any, sam: Any,
        staff: Any):
    queue = make_queue(configs, double_review_percent=100)
    (item,) = pending_items(queue, conversation, 1)
    queues.claim_next(queue.pk, reviewer)
    queues.complete(item.pk, reviewer, GOOD)
    second = QueueItem.objects.get(queue=queue, review_round=2)
    assert (second.message_id, second.status, second.reason) == (item.message_id, "pending",
                                                                 "manual")
    assert queues.claim_next(queue.pk, reviewer) is None  # she scored round 1
    claimed = queues.claim_next(queue.pk, sam)
    assert claimed.pk == second.pk
    queues.complete(second.pk, sam, [{"config": "accuracy", "value": 2},
                                     {"config": configs[1].pk, "value": False}])
    # Round 2 is not doubled again; two people's scores on one reply.
    assert queue.items.count() == 2
    assert sorted((s.author.username, s.value) for s in Score.objects.filter(
        config=configs[0])) == [("rita", 4), ("sam", 2)]
    # Conversation-level targets too.
    whole = queues.enqueue(queue, conversation=conversation, reason="manual")
    assert queues.claim_next(queue.pk, staff).pk == whole.pk
    queues.complete(whole.pk, staff, GOOD)
    assert queues.claim_next(queue.pk, staff) is None
    assert queues.claim_next(queue.pk, sam).message_id is None


@pytest.mark.django_db
def test_it_draws_double_reviews_deterministically(
        configs: list[ScoreConfig], conversation: Conversation, reviewer: Any):
    queue = make_queue(configs, double_review_percent=40)
    made = pending_items(queue, conversation, 10)
    for item in made:
        queues.claim_next(queue.pk, reviewer)
        queues.complete(item.pk, reviewer, GOOD)
    expected = {i.message_id for i in made if queues.draw(f"double:{i.pk}", 40)}
    assert set(queue.items.filter(review_round=2).values_list("message_id", flat=True)) \
        == expected
    assert 0 < len(expected) < 10


@pytest.mark.django_db
def test_it_checks_completions(configs: list[ScoreConfig], conversation: Conversation,
                               reviewer: Any, sam: Any):
    queue = make_queue(configs)
    (item,) = pending_items(queue, conversation, 1)
    with pytest.raises(NotFound):  # not claimed by her
        queues.complete(item.pk, reviewer, GOOD)
    queues.claim_next(queue.pk, reviewer)
    for bad, part in (
        ([GOOD[0]], "missing: resolved"),
        ([*GOOD, GOOD[0]], "scored twice"),
        ([*GOOD, {"config": "nope", "value": 1}], "No such active score config"),
        ([GOOD[0], {"config": "resolved", "value": "yes"}], "true or false"),
        ([GOOD[0], {"config": "resolved", "value": True, "extra": 1}], "Each score is"),
        ("all good", "must be a list"),
        ([1, 2], "Each score is"),
    ):
        with pytest.raises(InvalidInput, match=part):
            queues.complete(item.pk, reviewer, bad)
    other = ScoreConfig.objects.create(name="other", kind="boolean")
    with pytest.raises(InvalidInput, match="not scored in this queue"):
        queues.complete(item.pk, reviewer, [*GOOD, {"config": other.pk, "value": True}])
    assert not Score.objects.exists()
    with pytest.raises(NotFound):
        queues.skip(item.pk, sam)
    queues.complete(item.pk, reviewer, GOOD)
    with pytest.raises(InvalidInput) as exc:
        queues.skip(item.pk, reviewer)
    assert exc.value.status == 409 and exc.value.code == "not_claimed"
    assert queues.item_for(reviewer, item.pk).pk == item.pk
    with pytest.raises(NotFound):
        queues.item_for(sam, item.pk)


@pytest.mark.django_db
def test_it_lets_only_assignees_reviewers_when_open_and_staff_claim(
        configs: list[ScoreConfig], conversation: Conversation, reviewer: Any, alice: Any,
        bob: Any, staff: Any):
    closed = make_queue(configs, name="Closed", reviewer_group=False)
    closed.assignees.add(alice)
    open_ = make_queue(configs, name="Open")
    retired = make_queue(configs, name="Retired", is_active=False)
    assert [q.name for q in services.queues_for(alice)] == ["Closed"]
    assert [q.name for q in services.queues_for(reviewer)] == ["Open"]
    assert [q.name for q in services.queues_for(bob)] == []
    assert [q.name for q in services.queues_for(staff)] == ["Closed", "Open"]
    assert services.may_claim(alice, closed) and not services.may_claim(reviewer, closed)
    assert not services.may_claim(staff, retired)
    with pytest.raises(InvalidInput) as exc:
        queues.claim_next(closed.pk, reviewer)
    assert (exc.value.code, exc.value.status) == ("forbidden", 403)
    with pytest.raises(NotFound):
        queues.claim_next(retired.pk, staff)
    assert queues.claim_next(open_.pk, staff) is None


# API -------------------------------------------------------------------------------------------


def api_post(client: Client, url: str, body: Any = None) -> Any:
    data = "" if body is None else body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data, content_type="application/json")


@pytest.mark.django_db
def test_it_reviews_over_the_api(configs: list[ScoreConfig], conversation: Conversation,
                                 reviewer_client: Client, alice: Any):
    queue = make_queue(configs)
    (item,) = pending_items(queue, conversation, 1)
    r = reviewer_client.get("/api/v1/review/queues")
    assert r.json() == {"queues": [{"id": queue.pk, "name": "QA", "pending": 1,
                                    "in_progress": 0, "done": 0, "skipped": 0}]}
    r = api_post(reviewer_client, f"/api/v1/review/queues/{queue.pk}/claim")
    assert r.status_code == 200
    claimed = r.json()["item"]
    assert (claimed["id"], claimed["conversation_id"], claimed["message_id"]) == (
        item.pk, str(conversation.pk), str(item.message_id))
    assert [(c["name"], c["kind"], c["min"], c["max"]) for c in claimed["configs"]] == [
        ("accuracy", "numeric", 1, 5), ("resolved", "boolean", None, None)]
    r = api_post(reviewer_client, f"/api/v1/review/items/{item.pk}/complete",
                 {"scores": GOOD})
    assert r.status_code == 200 and r.json()["item"]["status"] == "done"
    assert Score.objects.filter(source="human").count() == 2
    r = api_post(reviewer_client, f"/api/v1/review/queues/{queue.pk}/claim")
    assert r.status_code == 204 and r.content == b""
    r = reviewer_client.get("/api/v1/review/queues")
    assert r.json()["queues"][0]["done"] == 1
    # Skip.
    (item2,) = pending_items(queue, conversation, 1)
    api_post(reviewer_client, f"/api/v1/review/queues/{queue.pk}/claim")
    r = api_post(reviewer_client, f"/api/v1/review/items/{item2.pk}/skip")
    assert r.status_code == 200 and r.json()["item"]["status"] == "skipped"
    # Not an assignee: 403, in the API's error shape.
    queue.reviewer_group = False
    queue.save()
    r = api_post(reviewer_client, f"/api/v1/review/queues/{queue.pk}/claim")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert logged_in(alice).get("/api/v1/review/queues").json() == {"queues": []}


@pytest.mark.django_db
def test_it_refuses_hostile_review_api_calls(configs: list[ScoreConfig],
                                             conversation: Conversation,
                                             reviewer_client: Client, caplog: Any):
    queue = make_queue(configs)
    (item,) = pending_items(queue, conversation, 1)
    api_post(reviewer_client, f"/api/v1/review/queues/{queue.pk}/claim")
    url = f"/api/v1/review/items/{item.pk}/complete"
    for body, status in (
        ({"scores": "x"}, 422), ({"scores": [{"config": {"$ne": 1}, "value": 4}]}, 422),
        ({"scores": GOOD, "item": 1}, 422), ({"scores": [{"config": "accuracy",
                                                          "value": 1e308}, GOOD[1]]}, 422),
        ("[]", 400), ("{", 400), ("{\"scores\": [NaN]}", 422), ({}, 422),
    ):
        r = api_post(reviewer_client, url, body)
        assert r.status_code == status, (body, r.content)
        assert r.json()["error"]["message"]
    assert api_post(reviewer_client, "/api/v1/review/items/99999999/complete",
                    {"scores": GOOD}).status_code == 404
    assert api_post(reviewer_client, "/api/v1/review/queues/99999999999/claim"
                    ).status_code == 404
    assert api_post(reviewer_client, f"/api/v1/review/queues/{queue.pk}/claim",
                    {"x": 1}).status_code == 422
    assert reviewer_client.get(f"/api/v1/review/queues/{queue.pk}/claim").status_code == 405
    assert not Score.objects.exists()
    assert QueueItem.objects.get().status == "in_progress"
    assert "Traceback" not in caplog.text


# Command, admin, chat header -------------------------------------------------------------------


def review(*args: str) -> str:
    out = StringIO()
    call_command("review", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_it_manages_configs_and_queues_from_the_command_line(reviewer: Any):
    assert "no score configs" in review("list")
    review("add-config", "accuracy", "--kind", "numeric", "--min", "1", "--max", "5",
           "--description", "1 wrong, 5 exact")
    review("add-config", "tone", "--kind", "categorical", "--option", "rude",
           "--option", "warm")
    review("add-config", "resolved", "--kind", "boolean")
    out = review("add-queue", "Triage", "--config", "accuracy", "--config", "tone",
                 "--sample-percent", "2.5", "--on-thumbs-down", "--on-failure",
                 "--failure-code", "vendor_timeout", "--on-tool-error", "--on-flagged",
                 "--double-review-percent", "10", "--assignee", "rita", "--reviewers")
    queue = ReviewQueue.objects.get(name="Triage")
    assert f"id {queue.pk}" in out
    assert (queue.sample_percent, queue.on_thumbs_down, queue.on_failure, queue.failure_codes,
            queue.on_tool_error, queue.on_flagged, queue.double_review_percent,
            queue.reviewer_group) == (2.5, True, True, ["vendor_timeout"], True, True, 10,
                                      True)
    assert [c.name for c in queue.configs.all()] == ["accuracy", "tone"]
    assert [u.username for u in queue.assignees.all()] == ["rita"]
    tone = ScoreConfig.objects.get(name="tone")
    assert (tone.kind, tone.options) == ("categorical", ["rude", "warm"])
    listing = review("list")
    assert "config\taccuracy\tnumeric\t1..5" in listing
    assert "rules: thumbs-down, failure vendor_timeout, tool-error, flagged, sample 2.5%" \
        in listing
    for args, message in (
        (["add-config", "x", "--kind", "numeric"], "needs --min and --max"),
        (["add-config", "x", "--kind", "numeric", "--min", "5", "--max", "1"], "below"),
        (["add-config", "x", "--kind", "numeric", "--min", "nan", "--max", "1"], "finite"),
        (["add-config", "x", "--kind", "categorical", "--option", "a"], "at least two"),
        (["add-config", "x", "--kind", "boolean", "--option", "a"], "for categorical"),
        (["add-config", "accuracy", "--kind", "boolean"], "already exists"),
        (["add-queue", "Q", "--config", "ghost"], "no score config named 'ghost'"),
        (["add-queue", "Q", "--config", "accuracy", "--assignee", "ghost"], "no user"),
        (["add-queue", "Q", "--config", "accuracy", "--sample-percent", "101"], "0 and 100"),
        (["add-queue", "Q", "--config", "accuracy", "--failure-code", "x"], "needs --on-"),
        (["add-queue", "Triage", "--config", "accuracy"], "already exists"),
    ):
        with pytest.raises(CommandError, match=message):
            review(*args)
    assert ReviewQueue.objects.count() == 1 and ScoreConfig.objects.count() == 3


@pytest.mark.django_db
def test_it_sends_selected_conversations_to_a_queue_from_the_admin(
        configs: list[ScoreConfig], reviewer_client: Client, conversation: Conversation,
        alice: Any, demo_agent: Agent, reviewer: Any):
    queue = make_queue(configs)
    reply_in(conversation)
    latest = reply_in(conversation)
    empty = Conversation.objects.create(owner=alice, agent=demo_agent)
    url = "/admin/conversations/conversation/"
    selected = {"action": "send_to_queue", "_selected_action": [conversation.pk, empty.pk]}
    page = reviewer_client.post(url, selected)
    assert page.status_code == 200 and "Send to a review queue" in page.content.decode()
    assert f'<option value="{queue.pk}">QA</option>' in page.content.decode()
    r = reviewer_client.post(url, {**selected, "apply": "1", "queue": queue.pk}, follow=True)
    assert "2 conversations sent to “QA”." in r.content.decode()
    assert items(queue) == sorted([(conversation.pk, latest.pk, "manual", 1),
                                   (empty.pk, None, "manual", 1)], key=str)
    r = reviewer_client.post(url, {**selected, "apply": "1", "queue": queue.pk}, follow=True)
    assert "0 conversations sent to “QA”. 2 already there." in r.content.decode()

    # Staff read the items (filtered) and the scores, with their history, never edit them.
    staff = logged_in(get_user_model().objects.create_superuser("boss", "b@example.com", "pw"))
    item = queue.items.get(message=latest)
    page = staff.get(f"/admin/conversations/queueitem/?queue__id__exact={queue.pk}"
                     "&status__exact=pending").content.decode()
    assert f"/admin/conversations/queueitem/{item.pk}/change/" in page
    while (claimed := queues.claim_next(queue.pk, reviewer)) is not None:
        assert queues.complete(claimed.pk, reviewer, GOOD).status == "done"
    first = Score.objects.get(config=configs[0], message=latest)
    services.set_score(reviewer, config=configs[0], value=2, comment="on reflection",
                       message=first.message_id, conversation=first.conversation_id)
    page = staff.get(f"/admin/conversations/score/{first.pk}/change/").content.decode()
    assert "Earlier values" in page and "<li><time>" in page and ": 4 — fine</li>" in page
    assert staff.post(f"/admin/conversations/score/{first.pk}/change/",
                      {"comment": "x"}).status_code == 403


@pytest.mark.django_db
def test_it_sends_to_a_queue_from_the_chat_header_for_reviewers_only(
        configs: list[ScoreConfig], reviewer: Any, alice: Any, demo_agent: Agent,
        alice_client: Client, bob: Any):
    queue = make_queue(configs)
    mine = Conversation.objects.create(owner=reviewer, agent=demo_agent)
    reply = reply_in(mine)
    client = logged_in(reviewer)
    page = client.get(f"/c/{mine.pk}/").content.decode()
    assert f'action="/review/send/{mine.pk}/"' in page and ">QA</option>" in page
    r = client.post(f"/review/send/{mine.pk}/", {"queue": queue.pk}, follow=True)
    assert r.redirect_chain[-1][0] == f"/c/{mine.pk}/"
    assert "Sent to the review queue “QA”." in r.content.decode()
    assert items(queue) == [(mine.pk, reply.pk, "manual", 1)]
    r = client.post(f"/review/send/{mine.pk}/", {"queue": queue.pk}, follow=True)
    assert "Already in the review queue “QA”." in r.content.decode()
    r = client.post(f"/review/send/{mine.pk}/", {"queue": "1' or 1=1"}, follow=True)
    assert "Choose a review queue." in r.content.decode()
    r = client.post(f"/review/send/{mine.pk}/", {"queue": queue.pk,
                                                 "next": "https://evil.example/"})
    assert r["Location"] == f"/c/{mine.pk}/"
    # Not a reviewer: no form, and 404 for the view.
    theirs = Conversation.objects.create(owner=alice, agent=demo_agent)
    assert "/review/send/" not in alice_client.get(f"/c/{theirs.pk}/").content.decode()
    assert alice_client.post(f"/review/send/{theirs.pk}/",
                             {"queue": queue.pk}).status_code == 404
    assert client.get(f"/review/send/{mine.pk}/").status_code == 405
    assert client.post("/review/send/00000000-0000-0000-0000-000000000000/",
                       {"queue": queue.pk}).status_code == 404
    assert queue.items.count() == 1
