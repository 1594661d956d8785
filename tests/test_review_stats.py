"""Review scores on /stats/: the distribution per agent and period, reviewer throughput and
agreement between reviewers, from fixed fixtures whose figures are worked out by hand in the
tests; a bounded number of queries; hostile names and values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
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
from conversations.review import stats
from conversations.review.agreement import NO_UNITS, NO_VARIATION

pytestmark = pytest.mark.django_db

D1, D2, D3 = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)
RANGE = {"start": "2025-03-01", "end": "2025-03-03"}


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


class Scorer:
    """Scores in a known order (created_at one second apart): agreement takes the first two."""

    def __init__(self) -> None:
        self.clock = at(D3, 20)

    def __call__(self, config: ScoreConfig, author: Any, value: Any, *,
                 message: Message | None = None, conversation: Conversation | None = None,
                 source: str = "human") -> Score:
        self.clock += timedelta(seconds=1)
        return Score.objects.create(
            config=config, author=author, value=value, source=source, message=message,
            conversation=conversation if message is None else message.conversation,
            created_at=self.clock, updated_at=self.clock,
        )


def reply(conversation: Conversation, seq: int, created: datetime) -> Message:
    return Message.objects.create(conversation=conversation, seq=seq, role="assistant",
                                  content="…", status="completed", created_at=created,
                                  completed_at=created + timedelta(seconds=1))


@pytest.fixture
def sam(db: Any) -> Any:
    return get_user_model().objects.create_user("sam", "sam@example.com", None)


@pytest.fixture
def scored(alice: Any, bob: Any, reviewer: Any, sam: Any) -> dict[str, Any]:
    """Two agents, four replies and a conversation scored on three configs; the expected
    figures are worked out in the tests."""
    rita = reviewer
    alpha = Agent.objects.create(slug="alpha", name="Alpha", provider="demo")
    beta = Agent.objects.create(slug="beta", name="Beta", provider="demo")
    a1 = Conversation.objects.create(owner=alice, agent=alpha, created_at=at(D1, 10))
    r1, r2 = reply(a1, 1, at(D1, 10)), reply(a1, 2, at(D1, 11))
    a2 = Conversation.objects.create(owner=alice, agent=alpha, created_at=at(D2, 8))
    r3 = reply(a2, 1, at(D2, 8))
    b1 = Conversation.objects.create(owner=alice, agent=beta, created_at=at(D1, 9))
    r4 = reply(b1, 1, at(D1, 9))
    # Outside the range: created the day after it ends.
    late = Conversation.objects.create(owner=alice, agent=alpha, created_at=at(D3, 23))
    r_late = reply(late, 1, at(D3, 23) + timedelta(hours=2))

    helpful = ScoreConfig.objects.create(name="helpful", kind="boolean")
    tone = ScoreConfig.objects.create(name="tone", kind="categorical",
                                      options=["good", "ok", "bad"])
    accuracy = ScoreConfig.objects.create(name="accuracy", kind="numeric", min_value=1,
                                          max_value=5)
    empty = ScoreConfig.objects.create(name="empty", kind="numeric", min_value=0, max_value=1)
    old = ScoreConfig.objects.create(name="old", kind="boolean", is_active=False)

    score = Scorer()
    # helpful: r1 yes/yes, r2 yes/no, r3 no/no (rita first each time), r4 rita yes and an
    # automated evaluator no (not a reviewer: left out of agreement).
    for message, first, second in ((r1, True, True), (r2, True, False), (r3, False, False)):
        score(helpful, rita, first, message=message)
        score(helpful, bob, second, message=message)
    score(helpful, rita, True, message=r4)
    score(helpful, None, False, message=r4, source="api")
    score(helpful, rita, True, message=r_late)
    score(old, rita, True, message=r1)

    # accuracy: r1 4/5/4, r2 2/2, the conversation a1 3/1, r4 5 alone.
    for author, value in ((rita, 4), (bob, 5), (sam, 4)):
        score(accuracy, author, value, message=r1)
    score(accuracy, rita, 2, message=r2)
    score(accuracy, bob, 2.0, message=r2)
    score(accuracy, rita, 3, conversation=a1)
    score(accuracy, bob, 1, conversation=a1)
    score(accuracy, rita, 5, message=r4)

    # tone: r1 good/good (no variation), r3 a value no longer among the options.
    score(tone, rita, "good", message=r1)
    score(tone, bob, "good", message=r1)
    score(tone, rita, "excellent", message=r3)

    thumbs = ReviewQueue.objects.create(name="Thumbs")
    thumbs.configs.set([helpful, accuracy])
    tones = ReviewQueue.objects.create(name="Tone")
    tones.configs.set([tone])

    def item(queue: ReviewQueue, message: Message, status: str, by: Any = None,
             done: datetime | None = None, round_: int = 1) -> QueueItem:
        return QueueItem.objects.create(
            queue=queue, conversation=message.conversation, message=message, reason="manual",
            review_round=round_, status=status, completed_by=by, completed_at=done,
            claimed_by=by, claimed_at=done,
        )

    item(thumbs, r1, "done", rita, at(D1, 12))
    item(thumbs, r1, "done", bob, at(D2, 12), round_=2)
    item(thumbs, r2, "done", rita, at(D2, 13))
    item(tones, r1, "done", rita, at(D3, 1))
    item(thumbs, r3, "done", sam, at(D3, 23) + timedelta(hours=2))  # after the range
    item(thumbs, r4, "pending")
    item(tones, r3, "skipped", bob, at(D2, 1))
    return {"alpha": alpha, "beta": beta, "helpful": helpful, "tone": tone,
            "accuracy": accuracy, "empty": empty}


def by_name(result: stats.ReviewStats) -> dict[str, stats.ConfigStats]:
    return {c.name: c for c in result.configs}


def test_it_computes_the_boolean_distribution_and_kappa(scored: dict[str, Any]):
    alpha, beta = scored["alpha"], scored["beta"]
    result = stats.compute_review_stats(D1, D3)

    assert not result.weekly
    assert [c.name for c in result.configs] == ["accuracy", "empty", "helpful", "tone"]
    helpful = by_name(result)["helpful"]
    assert helpful.columns == [("true", "Yes"), ("false", "No")]
    assert [a.slug for a in helpful.agents] == ["alpha", "beta"]
    # Alpha on March 1: r1 yes, yes; r2 yes, no. March 2: r3 no, no. Beta: r4 rita yes, API no.
    assert [(p, a.slug, d.count, cells) for p, a, d, cells in helpful.period_rows()] == [
        (D2, "alpha", 2, [0, 2]),
        (D1, "alpha", 4, [3, 1]),
        (D1, "beta", 2, [1, 1]),
    ]
    assert helpful.by_agent[alpha.pk].counts == {"true": 3, "false": 3}
    assert helpful.by_agent[beta.pk].count == 2
    assert (helpful.total.count, helpful.total_cells) == (8, [4, 4])
    # Kappa over the three replies two reviewers scored (r4's API score is no reviewer's):
    # pairs (yes, yes), (yes, no), (no, no). p_o = 2/3. First: yes 2, no 1; second: yes 1,
    # no 2. p_e = (2*1 + 1*2) / 9 = 4/9. kappa = (2/3 - 4/9) / (1 - 4/9) = (2/9) / (5/9) = 0.4.
    assert helpful.method == "kappa"
    assert helpful.agreement.value == pytest.approx(0.4)
    assert (helpful.agreement.units, helpful.double_reviewed) == (3, 3)
    assert helpful.agreement_note == ""


def test_it_computes_the_numeric_mean_and_alpha(scored: dict[str, Any]):
    alpha, beta = scored["alpha"], scored["beta"]
    accuracy = by_name(stats.compute_review_stats(D1, D3))["accuracy"]

    # Alpha, March 1: r1 4, 5, 4; r2 2, 2; the conversation (created March 1) 3, 1: 7 scores,
    # sum 21, mean 3. Beta: r4 5.
    [(period, agent, dist, cells)] = [row for row in accuracy.period_rows()
                                      if row[1].id == alpha.pk]
    assert (period, dist.count, dist.mean, cells) == (D1, 7, 3.0, [])
    assert accuracy.by_agent[beta.pk].mean == 5.0
    assert (accuracy.total.count, accuracy.total.mean) == (8, 26 / 8)
    # Units [4, 5, 4], [2, 2], [3, 1] (r4 alone is not pairable). Pooled: n = 7, sum 21,
    # squares 75: D_e = 2 * (7 * 75 - 21^2) / (7 * 6) = 168 / 42 = 4.
    # D_o = (2 * (3 * 57 - 13^2) / 2 + 0 + 2 * (2 * 10 - 4^2) / 1) / 7 = (2 + 0 + 8) / 7 = 10/7.
    # alpha = 1 - (10/7) / 4 = 9/14.
    assert accuracy.method == "alpha"
    assert accuracy.agreement.value == pytest.approx(9 / 14)
    assert (accuracy.agreement.units, accuracy.double_reviewed) == (3, 3)


def test_it_says_why_agreement_is_undefined(scored: dict[str, Any]):
    configs = by_name(stats.compute_review_stats(D1, D3))
    tone, empty = configs["tone"], configs["empty"]
    # r1 good/good is the only doubly-scored reply, and every score is "good".
    assert (tone.agreement.value, tone.agreement.reason, tone.double_reviewed) == (
        None, NO_VARIATION, 1)
    assert tone.agreement_note.startswith("Undefined: every score was the same value")
    # A value dropped from the options still gets its column.
    assert tone.columns == [("good", "good"), ("ok", "ok"), ("bad", "bad"),
                            ("excellent", "excellent")]
    assert tone.total_cells == [2, 0, 0, 1]
    assert (empty.agreement.reason, empty.double_reviewed, empty.total.count) == (
        NO_UNITS, 0, 0)
    assert empty.agreement_note == "No item was scored by two reviewers."


def test_it_counts_items_done_per_reviewer(scored: dict[str, Any]):
    result = stats.compute_review_stats(D1, D3)
    # Done in the range: rita 2 in Thumbs and 1 in Tone, bob 1 in Thumbs; sam's is after
    # the range, the pending and the skipped items are not done.
    assert [(r.name, total, queues) for r, total, queues in result.reviewers] == [
        ("rita", 3, [("Thumbs", 2), ("Tone", 1)]),
        ("bob", 1, [("Thumbs", 1)]),
    ]
    configs = by_name(result)
    assert [(r.name, n) for r, n in configs["helpful"].throughput] == [("rita", 2), ("bob", 1)]
    assert [(r.name, n) for r, n in configs["accuracy"].throughput] == [("rita", 2), ("bob", 1)]
    assert [(r.name, n) for r, n in configs["tone"].throughput] == [("rita", 1)]
    assert configs["empty"].throughput == []


def test_it_reads_per_week_past_a_month(scored: dict[str, Any]):
    result = stats.compute_review_stats(date(2025, 2, 1), date(2025, 3, 31))
    assert result.weekly
    # March 1 (a Saturday) and March 2 fall in the week of Monday, February 24.
    helpful = by_name(result)["helpful"]
    assert [(p, a.slug, d.count, cells) for p, a, d, cells in helpful.period_rows()] == [
        (date(2025, 3, 3), "alpha", 1, [1, 0]),  # r_late, created March 4 (week of March 3)
        (date(2025, 2, 24), "alpha", 6, [3, 3]),
        (date(2025, 2, 24), "beta", 2, [1, 1]),
    ]


def test_it_runs_a_fixed_number_of_queries(scored: dict[str, Any], alice: Any, bob: Any):
    with CaptureQueriesContext(connection) as small:
        stats.compute_review_stats(D1, D3)
    # Many more configs, agents, scores and items.
    for i in range(5):
        agent = Agent.objects.create(slug=f"more{i}", name=f"More {i}", provider="demo")
        config = ScoreConfig.objects.create(name=f"extra{i}", kind="categorical",
                                            options=["a", "b"])
        queue = ReviewQueue.objects.create(name=f"Queue {i}")
        queue.configs.set([config, scored["helpful"]])
        conversation = Conversation.objects.create(owner=alice, agent=agent,
                                                   created_at=at(D2, 1))
        for seq in range(4):
            message = reply(conversation, seq, at(D2, 2))
            Score.objects.create(config=config, conversation=conversation, message=message,
                                 author=alice, value="a")
            Score.objects.create(config=config, conversation=conversation, message=message,
                                 author=bob, value="b")
            QueueItem.objects.create(queue=queue, conversation=conversation, message=message,
                                     reason="manual", status="done", completed_by=bob,
                                     completed_at=at(D2, 3))
    with CaptureQueriesContext(connection) as large:
        result = stats.compute_review_stats(D1, D3)
    assert len(result.configs) == 9
    assert len(small) == len(large) == 4


def test_it_keeps_the_page_query_count_fixed(reviewer_client: Client, scored: dict[str, Any],
                                             alice: Any):
    def page_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert reviewer_client.get("/stats/", RANGE).status_code == 200
        return len(queries)

    small = page_queries()
    for i in range(3):
        config = ScoreConfig.objects.create(name=f"more{i}", kind="numeric")
        conversation = Conversation.objects.create(owner=alice, agent=scored["beta"],
                                                   created_at=at(D2, 1))
        Score.objects.create(config=config, conversation=conversation, author=alice, value=i)
    assert page_queries() == small


# The page --------------------------------------------------------------------------------------


def section(html: str, name: str) -> str:
    start = html.index(f'data-config="{name}"')
    end = html.find("data-config=", start + 1)
    return html[start:end if end > 0 else len(html)]


def test_it_shows_the_scores_on_the_page(reviewer_client: Client, scored: dict[str, Any]):
    response = reviewer_client.get("/stats/", RANGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<h2 id="scores-heading">Review scores</h2>' in html

    helpful = section(html, "helpful")
    assert "helpful <span class=\"muted\">(Yes / no)</span>" in helpful
    assert "Cohen’s kappa" in helpful
    assert '<strong class="agreement-value">0.40</strong>' in helpful
    assert "3 doubly-reviewed items" in helpful
    row = helpful[helpful.index('<tr data-period="2025-03-01" data-agent="alpha">'):]
    row = row[:row.index("</tr>")]
    assert [c.split(">", 1)[1].split("</td")[0] for c in row.split("<td")[2:]] == [
        "3", "1", "4"]  # yes, no, scores

    accuracy = section(html, "accuracy")
    assert "Krippendorff’s alpha" in accuracy
    assert '<strong class="agreement-value">0.64</strong>' in accuracy
    assert '<td class="num">3.00</td>' in accuracy  # alpha's mean on March 1
    assert "1 doubly-reviewed item" in section(html, "tone")
    assert "Undefined: every score was the same value" in section(html, "tone")
    empty = section(html, "empty")
    assert '<strong class="agreement-value">–</strong>' in empty
    assert "No item was scored by two reviewers." in empty
    assert "No scores for this config in this range." in empty
    assert 'data-config="old"' not in html

    table = html[html.index('id="reviewer-table"'):]
    assert '<tr data-reviewer="rita"><th scope="row">rita</th><td class="num">3</td>' in table
    assert '<span class="code-chip">Thumbs 2</span><span class="code-chip">Tone 1</span>' in table
    # The existing charts are unchanged: review sections are tables.
    assert html.count('<svg class="chart"') == 4


def test_it_leaves_the_page_alone_without_score_configs(reviewer_client: Client):
    html = reviewer_client.get("/stats/", RANGE).content.decode()
    assert "Review scores" not in html
    assert "No conversations or replies in this range." in html


def test_it_escapes_hostile_names_and_survives_odd_values(
    reviewer_client: Client, alice: Any, reviewer: Any, bob: Any, caplog: Any
):
    agent = Agent.objects.create(slug="x", name="<img src=x onerror=alert(1)>", provider="demo")
    conversation = Conversation.objects.create(owner=alice, agent=agent, created_at=at(D1, 1))
    message = reply(conversation, 1, at(D1, 1))
    numeric = ScoreConfig.objects.create(name="<script>alert(1)</script>", kind="numeric")
    categorical = ScoreConfig.objects.create(name="cat", kind="categorical",
                                             options=["<b>x</b>", {"label": "dict"}])
    # Values an admin edit or an old import could leave behind: text in a numeric config,
    # a list and markup in a categorical one.
    for config, values in ((numeric, ["many", 4]), (categorical, [["a", 1], "<i>y</i>"])):
        Score.objects.create(config=config, conversation=conversation, message=message,
                             author=reviewer, value=values[0])
        Score.objects.create(config=config, conversation=conversation, message=message,
                             author=bob, value=values[1])

    response = reviewer_client.get("/stats/", RANGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "<i>y" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;i&gt;y&lt;/i&gt;" in html
    configs = by_name(stats.compute_review_stats(D1, D3))
    # The text is counted but not averaged; one number left: no pair for alpha.
    hostile = configs["<script>alert(1)</script>"]
    assert (hostile.total.count, hostile.total.mean) == (2, 4.0)
    assert hostile.agreement.reason == NO_UNITS
    assert [key for key, _label in configs["cat"].columns] == [
        "<b>x</b>", "dict", "<i>y</i>", '["a", 1]']
    # One pair, (["a", 1], <i>y</i>): p_o = 0 and p_e = 0, so kappa = 0.
    assert configs["cat"].agreement.value == 0.0
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
