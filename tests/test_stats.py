"""Reviewer statistics: exact figures from fixed fixtures, the page's permissions, the range
form, the SVG charts and a bounded number of queries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Agent, Conversation, Feedback, Message
from conversations.review import stats

pytestmark = pytest.mark.django_db

D1, D2, D3 = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)
RANGE = {"start": "2025-03-01", "end": "2025-03-03"}


def at(day: date, hour: int, ms: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC) + timedelta(milliseconds=ms)


def reply(conversation: Conversation, seq: int, created: datetime, *, status: str = "completed",
          duration_ms: int | None = None, ttft_ms: int | None = None, usage: Any = None,
          error_code: str = "", score: int | None = None) -> Message:
    message = Message.objects.create(
        conversation=conversation, seq=seq, role="assistant", content="…", status=status,
        created_at=created, error_code=error_code, ttft_ms=ttft_ms, usage=usage,
        completed_at=created + timedelta(milliseconds=duration_ms)
        if duration_ms is not None else None,
    )
    if score is not None:
        Feedback.objects.create(message=message, author=conversation.owner, score=score)
    return message


@pytest.fixture
def agents(alice: Any) -> tuple[Agent, Agent]:
    """Known traffic over 2025-03-01..03 (UTC); the expected figures are worked out in the
    tests."""
    alpha = Agent.objects.create(slug="alpha", name="Alpha", provider="demo")
    beta = Agent.objects.create(slug="beta", name="Beta", provider="demo")

    a1 = Conversation.objects.create(owner=alice, agent=alpha, created_at=at(D1, 10))
    Message.objects.create(conversation=a1, seq=1, role="user", content="q",
                           created_at=at(D1, 10))
    reply(a1, 2, at(D1, 10), duration_ms=1000, ttft_ms=100, usage={"total_tokens": 10},
          score=1)
    # No total: the two halves are added up.
    reply(a1, 3, at(D1, 11), duration_ms=3000, ttft_ms=300,
          usage={"prompt_tokens": 4, "completion_tokens": 6}, score=-1)
    # Failed replies: counted by code, never in the durations.
    reply(a1, 4, at(D1, 12), status="failed", duration_ms=5000, error_code="vendor_timeout")
    reply(a1, 5, at(D1, 13), status="failed", error_code="vendor_auth")

    b1 = Conversation.objects.create(owner=alice, agent=beta, created_at=at(D1, 9))
    reply(b1, 1, at(D1, 9), duration_ms=2000, ttft_ms=200, usage={"total_tokens": 20},
          score=1)

    a2 = Conversation.objects.create(owner=alice, agent=alpha, created_at=at(D2, 8))
    reply(a2, 1, at(D2, 8), duration_ms=4000, ttft_ms=400, usage={"total_tokens": 5})
    reply(a2, 2, at(D2, 9), status="streaming", ttft_ms=9999)  # still running: not counted
    reply(a2, 3, at(D2, 10), status="canceled", ttft_ms=50, duration_ms=60)

    # Outside the range on both sides.
    early = Conversation.objects.create(owner=alice, agent=alpha, created_at=at(D1, 0) -
                                        timedelta(seconds=1))
    reply(early, 1, at(D1, 0) - timedelta(seconds=1), duration_ms=1, ttft_ms=1)
    reply(early, 2, at(D3, 0) + timedelta(days=1), duration_ms=1, ttft_ms=1)
    return alpha, beta


def test_it_computes_nearest_rank_percentiles():
    assert stats.percentile([], 50) is None
    assert stats.percentile([7], 95) == 7
    assert stats.percentile([400, 50, 300, 100], 50) == 100
    assert stats.percentile([400, 50, 300, 100], 95) == 400
    assert stats.percentile(list(range(1, 101)), 95) == 95
    assert stats.percentile(list(range(1, 101)), 50) == 50


def test_it_computes_the_figures_per_agent_day_and_total(agents: tuple[Agent, Agent]):
    alpha, beta = agents
    result = stats.compute_stats(D1, D3)

    assert result.days == [D1, D2, D3]
    assert [a.slug for a in result.agents] == ["alpha", "beta"]

    a = result.by_agent[alpha.pk]
    assert (a.conversations, a.replies, a.failed) == (2, 6, 2)
    assert a.failure_codes == [
        ("vendor_auth", 1, pytest.approx(16.667, abs=1e-3)),
        ("vendor_timeout", 1, pytest.approx(16.667, abs=1e-3)),
    ]
    assert round(a.failure_percent, 2) == 33.33
    assert sorted(a.ttft) == [50, 100, 300, 400]
    assert (a.ttft_p50, a.ttft_p95) == (100, 400)
    assert (a.duration_p50, a.duration_p95) == (3000, 4000)
    assert a.tokens == 25
    assert (a.up, a.down, a.feedback_ratio) == (1, 1, 0.5)

    b = result.by_agent[beta.pk]
    assert (b.conversations, b.replies, b.failed, b.failure_rate) == (1, 1, 0, 0.0)
    assert (b.ttft_p50, b.ttft_p95, b.duration_p50, b.duration_p95) == (200, 200, 2000, 2000)
    assert (b.tokens, b.feedback_ratio) == (20, 1.0)

    day1 = result.by_day_agent[(D1, alpha.pk)]
    assert (day1.conversations, day1.replies, day1.failed, day1.failure_rate) == (1, 4, 2, 0.5)
    assert (day1.ttft_p50, day1.ttft_p95, day1.duration_p50, day1.duration_p95) == (
        100, 300, 1000, 3000)
    assert day1.tokens == 20
    day2 = result.by_day_agent[(D2, alpha.pk)]
    assert (day2.conversations, day2.replies, day2.failed) == (1, 2, 0)
    assert (day2.ttft_p50, day2.ttft_p95, day2.duration_p50, day2.duration_p95) == (
        50, 400, 4000, 4000)
    assert (day2.tokens, day2.feedback_ratio) == (5, None)
    assert (D3, alpha.pk) not in result.by_day_agent
    assert (D2, beta.pk) not in result.by_day_agent

    total = result.total
    assert (total.conversations, total.replies, total.failed, total.tokens) == (3, 7, 2, 45)
    assert (total.ttft_p50, total.ttft_p95) == (200, 400)
    assert (total.duration_p50, total.duration_p95) == (2000, 4000)
    assert (total.up, total.down) == (2, 1)
    assert round(total.feedback_percent, 1) == 66.7
    assert result.by_day[D1].replies == 5

    assert [(d, ag.slug) for d, ag, _b in result.day_rows()] == [
        (D2, "alpha"), (D1, "alpha"), (D1, "beta"),
    ]


def test_it_counts_days_in_the_site_time_zone(agents: tuple[Agent, Agent], settings: Any):
    # March 1 in Montreal (UTC-5) runs from 05:00 UTC March 1 to 05:00 UTC March 2: it holds
    # the replies of 09:00-13:00 UTC, not the one of 08:00 UTC March 2 (03:00 local) nor the
    # one of 23:59:59 UTC February 28.
    settings.TIME_ZONE = "America/Montreal"
    with timezone.override("America/Montreal"):
        result = stats.compute_stats(D1, D1)
    assert result.total.replies == 5
    assert result.total.conversations == 2


def test_it_runs_a_fixed_number_of_queries(agents: tuple[Agent, Agent], alice: Any):
    with CaptureQueriesContext(connection) as small:
        stats.compute_stats(D1, D3)
    alpha = agents[0]
    for i in range(20):
        conversation = Conversation.objects.create(owner=alice, agent=alpha,
                                                   created_at=at(D3, 1))
        reply(conversation, 1, at(D3, 2), duration_ms=10 * i, ttft_ms=i, score=1)
    with CaptureQueriesContext(connection) as large:
        stats.compute_stats(D1, D3)
    assert len(small) == len(large) == 3


# The page --------------------------------------------------------------------------------------


def test_it_requires_the_view_stats_permission(
    client: Client, alice_client: Client, reviewer_client: Client, staff: Any
):
    anonymous = client.get("/stats/")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    assert alice_client.get("/stats/").status_code == 403
    assert reviewer_client.get("/stats/").status_code == 200
    client.force_login(staff)
    assert client.get("/stats/").status_code == 200


def test_it_shows_the_figures_in_tables_and_charts(
    reviewer_client: Client, agents: tuple[Agent, Agent]
):
    response = reviewer_client.get("/stats/", RANGE)
    assert response.status_code == 200
    html = response.content.decode()

    assert "From 2025-03-01 to 2025-03-03: 3 conversations, 7 replies." in html
    alpha_row = html[html.index('<tr data-agent="alpha">'):]
    alpha_row = alpha_row[:alpha_row.index("</tr>")]
    cells = [c.split(">", 1)[1].split("</td")[0] for c in alpha_row.split("<td")[1:]]
    assert cells[0] == "2"  # conversations
    assert cells[1] == "6"  # replies
    assert cells[2] == "2 (33.3%)"
    assert "<code>vendor_auth</code> 1 (16.7%)" in cells[3]
    assert "<code>vendor_timeout</code> 1 (16.7%)" in cells[3]
    assert cells[4] == "100 / 400"
    assert cells[5] == "3000 / 4000"
    assert cells[6] == "25"
    assert cells[7].startswith("50% ")
    assert '<tr data-day="2025-03-02" data-agent="alpha">' in html
    assert '<tr data-day="2025-03-03"' not in html  # no activity that day

    assert html.count('<svg class="chart"') == 4
    assert "<title>Replies per day, stacked by agent</title>" in html
    assert "<title>2025-03-01 · Alpha: 4 replies</title>" in html
    assert "<title>Alpha: 2 of 6 replies failed</title>" in html
    assert "<title>Beta p95: 200 ms</title>" in html
    assert "<title>Time to first token per agent (p50, p95)</title>" in html


def test_it_escapes_agent_names_in_charts(reviewer_client: Client, alice: Any):
    agent = Agent.objects.create(slug="x", name="<script>alert(1)</script>", provider="demo")
    conversation = Conversation.objects.create(owner=alice, agent=agent, created_at=at(D1, 1))
    reply(conversation, 1, at(D1, 1), duration_ms=5, ttft_ms=5)
    html = reviewer_client.get("/stats/", RANGE).content.decode()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_it_defaults_to_the_last_30_days(reviewer_client: Client, alice: Any):
    agent = Agent.objects.create(slug="now", name="Now", provider="demo")
    now = timezone.now()
    for days_ago in (0, 29, 30):
        conversation = Conversation.objects.create(
            owner=alice, agent=agent, created_at=now - timedelta(days=days_ago))
        reply(conversation, 1, now - timedelta(days=days_ago), duration_ms=10)

    response = reviewer_client.get("/stats/")

    result = response.context["stats"]
    today = timezone.localdate()
    assert (result.start, result.end) == (today - timedelta(days=29), today)
    assert len(result.days) == 30
    assert result.total.replies == 2
    assert response.context["form"]["start"].value() == today - timedelta(days=29)


@pytest.mark.parametrize(("query", "error"), [
    ({"start": "2025-03-05", "end": "2025-03-01"},
     "The start date must be on or before the end date."),
    ({"start": "2024-01-01", "end": "2025-03-01"}, "Choose at most 366 days."),
    ({"start": "yesterday", "end": "2025-03-01"}, "Enter a valid date."),
    ({"end": "2025-03-01"}, "This field is required."),
])
def test_it_validates_the_date_range(reviewer_client: Client, query: dict[str, str],
                                     error: str):
    response = reviewer_client.get("/stats/", query)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert "stats" not in response.context or response.context["stats"] is None


def test_it_says_when_the_range_is_empty(reviewer_client: Client):
    html = reviewer_client.get("/stats/", RANGE).content.decode()
    assert "No conversations or replies in this range." in html
    assert "<svg" not in html
