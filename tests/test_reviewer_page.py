"""The reviewer page (/review/, issue 13 §3): who may open it, claiming, scoring with the
rubric's form, labels and the note, skipping, and hostile posts (clear errors, nothing stored,
the typed values kept)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from conversations.models import (
    Agent,
    Conversation,
    Feedback,
    Label,
    Message,
    QueueItem,
    ReviewQueue,
    Score,
    ScoreConfig,
    ToolCall,
)
from conversations.services import queues
from tests.conftest import ensure_reviewer_group, logged_in

pytestmark = pytest.mark.django_db

QUEUES = "/review/"


def item_url(item: QueueItem | int) -> str:
    return f"/review/items/{getattr(item, 'pk', item)}/"


def start_url(queue: ReviewQueue) -> str:
    return f"/review/queues/{queue.pk}/start"


def flash(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def configs(db: Any) -> dict[str, ScoreConfig]:
    return {
        "accuracy": ScoreConfig.objects.create(
            name="Accuracy", kind="numeric", min_value=1, max_value=5,
            description="1: wrong facts … 5: every fact checks out."),
        "tone": ScoreConfig.objects.create(
            name="Tone", kind="categorical", options=["friendly", "neutral", "rude"],
            description="How the reply sounds to the customer."),
        "resolved": ScoreConfig.objects.create(
            name="Resolved", kind="boolean", description="Did it solve the problem?"),
    }


@pytest.fixture
def queue(configs: dict[str, ScoreConfig], reviewer: Any) -> ReviewQueue:
    queue = ReviewQueue.objects.create(name="Thumbs down", description="Replies users disliked")
    queue.configs.set(configs.values())
    queue.assignees.add(reviewer)
    return queue


def reply_in_queue(queue: ReviewQueue, owner: Any, agent: Agent, n: int, **conv: Any
                   ) -> QueueItem:
    conversation = Conversation.objects.create(owner=owner, agent=agent, title=f"Order {n}",
                                               **conv)
    Message.objects.create(conversation=conversation, seq=1, role="user",
                           content=f"Where is my order {n}?")
    reply = Message.objects.create(conversation=conversation, seq=2, role="assistant",
                                   content=f"Your order **{n}** has shipped.", ttft_ms=310)
    item = queues.enqueue(queue, conversation=conversation, message=reply, reason="thumbs_down")
    assert item is not None
    return item


@pytest.fixture
def items(queue: ReviewQueue, alice: Any, demo_agent: Agent) -> list[QueueItem]:
    return [reply_in_queue(queue, alice, demo_agent, n,
                           external_user_id=f"cust-{n}", metadata={"plan": "pro", "n": n})
            for n in (1, 2, 3)]


@pytest.fixture
def ron(db: Any) -> Any:
    """A second reviewer."""
    user = get_user_model().objects.create_user("ron", "ron@example.com", None, is_staff=True)
    user.groups.add(ensure_reviewer_group())
    return user


def good_scores(configs: dict[str, ScoreConfig], **extra: str) -> dict[str, str]:
    return {f"score-{configs['accuracy'].pk}": "4",
            f"comment-{configs['accuracy'].pk}": "One date was off",
            f"score-{configs['tone'].pk}": "neutral",
            f"score-{configs['resolved'].pk}": "yes",
            **extra}


def claim(client: Client, queue: ReviewQueue) -> int:
    response = client.post(start_url(queue))
    assert response.status_code == 302
    assert response.url.startswith("/review/items/")
    return int(response.url.rstrip("/").rsplit("/", 1)[1])


# Who may open it -----------------------------------------------------------------------------


def test_it_answers_404_to_everyone_but_reviewers_staff_and_assignees(
    alice: Any, bob: Any, queue: ReviewQueue, items: list[QueueItem], reviewer_client: Client
) -> None:
    item_id = claim(reviewer_client, queue)
    client = logged_in(bob)
    assert client.get(QUEUES).status_code == 404
    assert client.post(start_url(queue)).status_code == 404
    assert client.get(item_url(item_id)).status_code == 404
    assert client.post(item_url(item_id), {"action": "skip"}).status_code == 404
    assert client.get("/").content.count(b'href="/review/"') == 0
    # Logged out: the login page first.
    anonymous = Client().get(QUEUES)
    assert anonymous.status_code == 302 and anonymous.url.startswith("/accounts/login/")
    assert QueueItem.objects.get(pk=item_id).status == "in_progress"
    assert QueueItem.objects.filter(claimed_by=bob).count() == 0
    # An assignee who is neither staff nor a reviewer works the queue here as over the API
    # (services.queues.may_review), but never another's claimed item.
    queue.assignees.add(alice)
    assignee = logged_in(alice)
    assert assignee.get(QUEUES).status_code == 200
    assert assignee.get(item_url(item_id)).status_code == 404
    mine = claim(assignee, queue)
    assert assignee.get(item_url(mine)).status_code == 200
    assert QueueItem.objects.get(pk=mine).claimed_by == alice


def test_it_hides_another_reviewers_item(
    queue: ReviewQueue, items: list[QueueItem], reviewer_client: Client, ron: Any,
    configs: dict[str, ScoreConfig],
) -> None:
    queue.assignees.add(ron)
    item_id = claim(reviewer_client, queue)
    ron_client = logged_in(ron)
    assert ron_client.get(item_url(item_id)).status_code == 404
    assert ron_client.post(item_url(item_id), good_scores(configs)).status_code == 404
    assert ron_client.post(item_url(item_id), {"action": "skip"}).status_code == 404
    assert Score.objects.count() == 0
    assert QueueItem.objects.get(pk=item_id).status == "in_progress"
    # A queue ron is not assigned to: 404 too.
    other = ReviewQueue.objects.create(name="Private")
    assert ron_client.post(start_url(other)).status_code == 404
    assert ron_client.post("/review/queues/999999/start").status_code == 404


# The queues ----------------------------------------------------------------------------------


def test_it_lists_the_queues_with_their_progress(
    queue: ReviewQueue, items: list[QueueItem], reviewer: Any, reviewer_client: Client,
    ron: Any, configs: dict[str, ScoreConfig],
) -> None:
    ReviewQueue.objects.create(name="Not mine")  # neither assigned nor open to reviewers
    queue.assignees.add(ron)
    first = claim(logged_in(ron), queue)
    assert logged_in(ron).post(item_url(first), good_scores(configs)).status_code == 302
    response = reviewer_client.get(QUEUES)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Thumbs down" in html and "Replies users disliked" in html
    assert "Not mine" not in html
    # ron's post claimed item 2 for him after saving item 1.
    assert '<dd data-count="pending">1</dd>' in html
    assert '<dd data-count="in_progress">1</dd>' in html
    assert '<dd data-count="done">1</dd>' in html
    assert "<td>ron</td><td class=\"num\">1</td>" in html
    assert f'action="{start_url(queue)}"' in html
    assert 'href="/review/"' in html  # the nav link of a reviewer


def test_it_says_when_nothing_is_pending(queue: ReviewQueue, reviewer_client: Client) -> None:
    response = reviewer_client.post(start_url(queue), follow=True)
    assert response.redirect_chain == [(QUEUES, 302)]
    assert flash(response) == ["Queue “Thumbs down” is done: nothing is pending."]


# One item ------------------------------------------------------------------------------------


def test_it_shows_the_transcript_context_and_score_form(
    queue: ReviewQueue, items: list[QueueItem], reviewer_client: Client,
    configs: dict[str, ScoreConfig],
) -> None:
    reply = items[0].message
    ToolCall.objects.create(message=reply, call_id="c1", name="lookup_order",
                            arguments='{"order": 1}', result={"status": "shipped"},
                            status="completed")
    Feedback.objects.create(message=reply, author=items[0].conversation.owner, score=-1,
                            comment="Too vague")
    Label.objects.create(name="refund")
    item_id = claim(reviewer_client, queue)
    assert item_id == items[0].pk
    response = reviewer_client.get(item_url(item_id))
    assert response.status_code == 200
    html = response.content.decode()
    # The admin's transcript partial: markdown, tool call, timing, feedback.
    assert "Your order <strong>1</strong> has shipped." in html
    assert "lookup_order" in html and "Too vague" in html and "310 ms" in html
    assert f'data-highlight="msg-{reply.pk}"' in html
    assert f'id="msg-{reply.pk}"' in html
    # The customer context.
    assert "cust-1" in html and "&quot;plan&quot;: &quot;pro&quot;" in html
    # One field per config, each with its rubric and the right input.
    accuracy, tone, resolved = (configs[k].pk for k in ("accuracy", "tone", "resolved"))
    assert "1: wrong facts … 5: every fact checks out." in html
    assert (f'<input type="number" class="score-control" name="score-{accuracy}" value="" '
            'step="any" min="1" max="5">') in html
    for option in ("friendly", "neutral", "rude"):
        assert f'name="score-{tone}" value="{option}"' in html
    assert f'name="score-{resolved}" value="yes"' in html
    assert f'name="score-{resolved}" value="no"' in html
    assert '<option value="' in html and "refund" in html
    assert 'src="/static/review/reviewer.js"' in html
    assert "style=" not in html.split("<body", 1)[1]


def test_it_saves_the_scores_label_and_note_and_opens_the_next(
    queue: ReviewQueue, items: list[QueueItem], reviewer: Any, reviewer_client: Client,
    configs: dict[str, ScoreConfig],
) -> None:
    label = Label.objects.create(name="late delivery")
    item_id = claim(reviewer_client, queue)
    response = reviewer_client.post(item_url(item_id), good_scores(
        configs, label=str(label.pk), note="Check the carrier's dates."))
    assert response.status_code == 302
    assert response.url == item_url(items[1])
    item = QueueItem.objects.get(pk=item_id)
    assert (item.status, item.completed_by) == ("done", reviewer)
    stored = {s.config.name: (s.value, s.comment, s.message_id, s.author)
              for s in Score.objects.filter(conversation=item.conversation)}
    assert stored == {
        "Accuracy": (4, "One date was off", item.message_id, reviewer),
        "Tone": ("neutral", "", item.message_id, reviewer),
        "Resolved": (True, "", item.message_id, reviewer),
    }
    conversation = Conversation.objects.get(pk=item.conversation_id)
    assert list(conversation.labels.values_list("name", flat=True)) == ["late delivery"]
    assert conversation.review_notes == "Check the carrier's dates."
    assert conversation.reviewed_by == reviewer
    # The next item is claimed for the reviewer.
    assert QueueItem.objects.get(pk=items[1].pk).claimed_by == reviewer

    # Back on a done item, the form shows the reviewer's own scores.
    html = reviewer_client.get(item_url(item_id)).content.decode()
    assert f'name="score-{configs["accuracy"].pk}" value="4"' in html
    assert f'name="score-{configs["tone"].pk}" value="neutral" checked' in html
    assert "One date was off</textarea>" in html


def test_it_reviews_a_whole_queue_then_says_it_is_done(
    queue: ReviewQueue, items: list[QueueItem], reviewer_client: Client,
    configs: dict[str, ScoreConfig],
) -> None:
    item_id = claim(reviewer_client, queue)
    for expected in items[1:]:
        response = reviewer_client.post(item_url(item_id), good_scores(configs))
        assert response.url == item_url(expected)
        item_id = expected.pk
    response = reviewer_client.post(item_url(item_id), good_scores(configs), follow=True)
    assert response.redirect_chain == [(QUEUES, 302)]
    assert flash(response) == ["Queue “Thumbs down” is done: nothing is pending."]
    assert Score.objects.count() == 9
    assert set(QueueItem.objects.values_list("status", flat=True)) == {"done"}


def test_it_skips_to_the_next_item(
    queue: ReviewQueue, items: list[QueueItem], reviewer: Any, reviewer_client: Client,
) -> None:
    item_id = claim(reviewer_client, queue)
    response = reviewer_client.post(item_url(item_id), {"action": "skip"})
    assert response.url == item_url(items[1])
    assert QueueItem.objects.get(pk=item_id).status == "skipped"
    assert Score.objects.count() == 0
    # Start reviewing again: the reviewer's own unfinished claim comes back first.
    assert claim(reviewer_client, queue) == items[1].pk


# Hostile posts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "raw", "message"), [
    ("accuracy", "9", "Accuracy must be between 1 and 5."),
    ("accuracy", "-1", "Accuracy must be between 1 and 5."),
    ("accuracy", "four", "Accuracy needs a number."),
    ("accuracy", "1e999", "Accuracy needs a number."),
    ("accuracy", "NaN", "Accuracy needs a number."),
    ("accuracy", "", "A value is needed."),
    ("tone", "", "A value is needed."),
    ("tone", "sarcastic", "Tone must be one of: friendly, neutral, rude."),
    ("resolved", "maybe", "Resolved must be true or false."),
])
def test_it_refuses_a_bad_value_and_keeps_what_was_typed(
    queue: ReviewQueue, items: list[QueueItem], reviewer_client: Client,
    configs: dict[str, ScoreConfig], caplog: pytest.LogCaptureFixture,
    field: str, raw: str, message: str,
) -> None:
    item_id = claim(reviewer_client, queue)
    caplog.set_level(logging.WARNING)
    post = good_scores(configs, note="my typed note", **{f"score-{configs[field].pk}": raw})
    response = reviewer_client.post(item_url(item_id), post)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was saved: correct the fields marked below." in html
    assert f'<p class="field-error" id="error-{configs[field].pk}" role="alert">' \
           f'{message}</p>' in html
    # What the reviewer typed is still there.
    assert "One date was off</textarea>" in html
    assert "my typed note</textarea>" in html
    if field != "accuracy":
        assert f'name="score-{configs["accuracy"].pk}" value="4"' in html
    assert Score.objects.count() == 0
    assert QueueItem.objects.get(pk=item_id).status == "in_progress"
    assert Conversation.objects.get(pk=items[0].conversation_id).review_notes == ""
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize(("extra", "message"), [
    ("not-in-queue", "Other is not scored in this queue."),
    ("999999", "No such active score config."),
    ("<script>", "No such active score config."),
])
def test_it_refuses_a_config_outside_the_queue(
    queue: ReviewQueue, items: list[QueueItem], reviewer_client: Client,
    configs: dict[str, ScoreConfig], extra: str, message: str,
) -> None:
    other = ScoreConfig.objects.create(name="Other", kind="boolean")
    ref = str(other.pk) if extra == "not-in-queue" else extra
    item_id = claim(reviewer_client, queue)
    response = reviewer_client.post(item_url(item_id), good_scores(configs, **{
        f"score-{ref}": "yes"}))
    assert response.status_code == 400
    html = response.content.decode()
    assert f"Nothing was saved: {message}" in html
    assert "<script>" not in html.split("<body", 1)[1].split("<script type=\"module\"")[0]
    assert Score.objects.count() == 0
    assert QueueItem.objects.get(pk=item_id).status == "in_progress"


def test_it_refuses_a_bad_label_a_long_note_or_comment_and_an_unknown_action(
    queue: ReviewQueue, items: list[QueueItem], reviewer_client: Client,
    configs: dict[str, ScoreConfig],
) -> None:
    item_id = claim(reviewer_client, queue)
    url = item_url(item_id)
    response = reviewer_client.post(url, good_scores(configs, label="424242"))
    assert response.status_code == 400
    assert "Choose a label from the list." in response.content.decode()
    response = reviewer_client.post(url, good_scores(configs, note="x" * 10_001))
    assert response.status_code == 400
    assert "Keep the note under 10000 characters." in response.content.decode()
    long_comment = {f"comment-{configs['tone'].pk}": "y" * 2_001}
    response = reviewer_client.post(url, good_scores(configs, **long_comment))
    assert response.status_code == 400
    assert "The comment must be at most 2,000 characters." in response.content.decode()
    response = reviewer_client.post(url, good_scores(configs, action="delete"))
    assert response.status_code == 400
    assert "Unknown action." in response.content.decode()
    assert Score.objects.count() == 0
    conversation = Conversation.objects.get(pk=items[0].conversation_id)
    assert conversation.labels.count() == 0 and conversation.review_notes == ""
    assert QueueItem.objects.get(pk=item_id).status == "in_progress"


def test_it_refuses_to_save_an_item_twice(
    queue: ReviewQueue, items: list[QueueItem], reviewer_client: Client,
    configs: dict[str, ScoreConfig],
) -> None:
    item_id = claim(reviewer_client, queue)
    assert reviewer_client.post(item_url(item_id), good_scores(configs)).status_code == 302
    response = reviewer_client.post(item_url(item_id), good_scores(
        configs, **{f"score-{configs['accuracy'].pk}": "2"}))
    assert response.status_code == 409
    assert "Nothing was saved: This item is already done." in response.content.decode()
    assert Score.objects.get(config=configs["accuracy"], message=items[0].message).value == 4


def test_it_writes_number_bounds_unlocalised_for_the_browser(
    queue: ReviewQueue, items: list[QueueItem], reviewer_client: Client,
    configs: dict[str, ScoreConfig],
) -> None:
    ScoreConfig.objects.filter(pk=configs["accuracy"].pk).update(min_value=0.5, max_value=2.5)
    item_id = claim(reviewer_client, queue)
    html = reviewer_client.get(item_url(item_id), HTTP_ACCEPT_LANGUAGE="fr-CA").content.decode()
    assert '<html lang="fr-ca"' in html
    # French writes 0,5; an <input type=number> needs 0.5.
    assert 'step="any" min="0.5" max="2.5">' in html
