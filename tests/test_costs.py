"""What replies cost and team budgets (issue 12 §5): the cost rule, the price options' checks in
`agents add` and the admin, the cost on the chat/API/admin transcripts and /stats/, the monthly
consumption and `check_budget`'s refusal, and the team page's rights."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import services
from conversations.models import Agent, Conversation, Message, Team
from conversations.services import costs
from tests.conftest import logged_in
from tests.fakevendor import openai_chunk, sse, sse_script
from tests.wsclient import open_socket, wait_for_no_runs

PRICES = {"price_input_per_mtok": 3, "price_output_per_mtok": 15}
USAGE = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500}
# 1200 × 3 / 10⁶ + 300 × 15 / 10⁶
USAGE_COST = Decimal("0.0081")


def reply(conversation: Conversation, seq: int, usage: Any, *,
          created: datetime | None = None) -> Message:
    return Message.objects.create(
        conversation=conversation, seq=seq, role="assistant", content="…", usage=usage,
        created_at=created or timezone.now())


@pytest.fixture
def priced(db: Any) -> Agent:
    return Agent.objects.create(slug="priced", name="Priced", provider="demo",
                                options={"delay": 0, **PRICES})


@pytest.fixture
def team(alice: Any, bob: Any) -> Team:
    """Support: alice leads it, bob is a member."""
    team = services.teams.create_team("support", "Support")
    services.teams.add_member(team, alice, lead=True)
    services.teams.add_member(team, bob)
    return team


# The rule -----------------------------------------------------------------------------------


def test_it_prices_a_reply_from_its_input_and_output_tokens():
    prices = costs.agent_prices(PRICES)
    assert prices == costs.Prices(Decimal(3), Decimal(15))
    assert costs.reply_cost(USAGE, prices) == USAGE_COST
    # A missing half counts 0; a price option left out is 0.
    assert costs.reply_cost({"prompt_tokens": 1_000_000, "completion_tokens": None}, prices) \
        == Decimal(3)
    assert costs.reply_cost({"completion_tokens": 2}, costs.agent_prices(
        {"price_output_per_mtok": 0.5})) == Decimal("0.000001")
    # Fractional prices stay exact (Decimal from the option's text, not its binary float).
    assert costs.reply_cost({"prompt_tokens": 10}, costs.agent_prices(
        {"price_input_per_mtok": 0.1})) == Decimal("0.000001")


@pytest.mark.parametrize("usage", [None, {}, {"total_tokens": 99}, "12", [1, 2],
                                   {"prompt_tokens": None, "completion_tokens": None},
                                   {"prompt_tokens": "12", "completion_tokens": True}])
def test_it_gives_no_cost_without_input_or_output_counts(usage: Any):
    assert costs.reply_cost(usage, costs.agent_prices(PRICES)) is None


@pytest.mark.parametrize("options", [{}, {"model": "m"}, None, "x",
                                     {"price_input_per_mtok": -1},
                                     {"price_input_per_mtok": "3"}])
def test_it_gives_no_cost_without_valid_prices(options: Any):
    assert costs.agent_prices(options) is None
    assert costs.reply_cost(USAGE, costs.agent_prices(options)) is None


def test_it_formats_costs_for_people():
    assert costs.format_cost(Decimal("0.008100")) == "0.0081"
    assert costs.format_cost(Decimal("2.5")) == "2.50"
    assert costs.format_cost(Decimal("1234.000001")) == "1,234.000001"
    assert costs.format_cost(None) == "–"


# The price options' checks ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["-1", '"3"', "true", "NaN", "Infinity", "1e9", "[3]"])
def test_it_refuses_bad_prices_in_agents_add(value: str):
    with pytest.raises(CommandError) as refused:
        call_command("agents", "add", "bot", "--provider", "demo",
                     "--option", f"price_input_per_mtok={value}", stdout=StringIO())
    assert "'price_input_per_mtok' must be a number from 0 to 1,000,000" in str(refused.value)
    assert not Agent.objects.filter(slug="bot").exists()


@pytest.mark.django_db
def test_it_stores_good_prices_from_agents_add():
    call_command("agents", "add", "bot", "--provider", "openai", "--base-url",
                 "http://127.0.0.1:9/v1", "--option", "model=m", "--option",
                 "price_input_per_mtok=2.5", "--option", "price_output_per_mtok=0",
                 stdout=StringIO())
    assert Agent.objects.get(slug="bot").options == {
        "model": "m", "price_input_per_mtok": 2.5, "price_output_per_mtok": 0}


@pytest.mark.parametrize("kind", ["demo", "openai", "dimedove", "dynamiq", "loop", "agkit"])
def test_it_checks_prices_for_every_provider_kind(kind: str):
    problems = services.agent_options_problems(kind, {"price_output_per_mtok": -0.5})
    assert "option 'price_output_per_mtok' must be a number from 0 to 1,000,000 (a price per " \
        "million tokens)" in problems


def test_it_refuses_bad_prices_in_the_admin_agent_form(staff: Any, team: Team):
    client = logged_in(staff)
    form = {"slug": "bot", "name": "Bot", "provider": "demo", "base_url": "", "token_env": "",
            "is_active": "on", "teams": [team.pk]}
    for options in ('{"price_input_per_mtok": -3}', '{"price_output_per_mtok": NaN}',
                    '{"price_output_per_mtok": "cheap"}'):
        r = client.post("/admin/conversations/agent/add/", {**form, "options": options})
        assert r.status_code == 200
        assert "must be a number from 0 to 1,000,000" in r.content.decode()
        assert not Agent.objects.filter(slug="bot").exists()
    r = client.post("/admin/conversations/agent/add/",
                    {**form, "options": '{"price_input_per_mtok": 1.25}'})
    assert r.status_code == 302
    agent = Agent.objects.get(slug="bot")
    assert agent.options == {"price_input_per_mtok": 1.25}
    assert list(agent.teams.all()) == [team]


# The cost on transcripts ------------------------------------------------------------------------


def test_it_shows_a_replys_cost_on_the_chat_page_and_api(alice_client: Client, alice: Any,
                                                          priced: Agent):
    conversation = Conversation.objects.create(owner=alice, agent=priced)
    Message.objects.create(conversation=conversation, seq=1, role="user", content="hi")
    answer = reply(conversation, 2, USAGE)
    unpriced = reply(conversation, 3, {"total_tokens": 7})

    data = alice_client.get(f"/api/v1/conversations/{conversation.id}").json()
    by_id = {m["id"]: m for m in data["messages"]}
    assert by_id[str(answer.pk)]["cost"] == 0.0081
    assert by_id[str(answer.pk)]["token_usage"] == USAGE
    assert by_id[str(unpriced.pk)]["cost"] is None
    assert [m["cost"] for m in data["messages"] if m["role"] == "user"] == [None]

    html = alice_client.get(f"/c/{conversation.id}/").content.decode()
    state = json.loads(re.search(r'<script id="chat-initial" type="application/json">(.*?)'
                                 r"</script>", html, re.S).group(1))
    assert [m["cost"] for m in state["messages"]] == [None, 0.0081, None]


def test_it_shows_a_replys_cost_on_the_admin_transcript(staff: Any, alice: Any, priced: Agent):
    conversation = Conversation.objects.create(owner=alice, agent=priced)
    reply(conversation, 1, USAGE)
    html = logged_in(staff).get(
        f"/admin/conversations/conversation/{conversation.pk}/change/").content.decode()
    assert '<span class="turn-cost">Cost: 0.0081</span>' in html


@pytest.mark.django_db(transaction=True)
async def test_it_prices_a_real_vendor_reply(alice_client: Client, alice: Any,
                                             openai_agent: Agent, fake_vendor: Any):
    """Usage as a vendor reports it, stored by the relay, priced on the API."""
    openai_agent.options = {**openai_agent.options, **PRICES}
    await database_sync_to_async(openai_agent.save)()
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("Hello")), sse(openai_chunk(finish_reason="stop")),
        sse(openai_chunk(choices=[], usage=USAGE)), sse("[DONE]")))
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "Hi"})
    frames = await sock.recv_until("message.completed")
    assert frames[-1]["message"]["token_usage"] == USAGE
    await wait_for_no_runs()
    await sock.close()
    data = await database_sync_to_async(alice_client.get)(
        f"/api/v1/conversations/{conversation.id}")
    assert [m["cost"] for m in data.json()["messages"]] == [None, 0.0081]


# /stats/ ----------------------------------------------------------------------------------------


def test_it_sums_costs_per_team_and_agent_on_stats(reviewer_client: Client, alice: Any,
                                                    team: Team, priced: Agent, demo_agent: Agent):
    in_team = Conversation.objects.create(owner=alice, agent=priced, team=team)
    reply(in_team, 1, USAGE)
    reply(in_team, 2, {"prompt_tokens": 1_000_000, "completion_tokens": 0, "total_tokens": None})
    private = Conversation.objects.create(owner=alice, agent=priced)
    reply(private, 1, USAGE)
    unpriced = Conversation.objects.create(owner=alice, agent=demo_agent, team=team)
    reply(unpriced, 1, {"total_tokens": 40})

    html = reviewer_client.get("/stats/").content.decode()

    def last_cell(table: str, attribute: str) -> str:
        body = html.split(f'id="{table}"')[1].split("</table>")[0]
        row = body.split(attribute)[1].split("</tr>")[0]
        return row.rsplit("<td", 1)[1].split(">", 1)[1].split("</td")[0]

    assert last_cell("agent-table", 'data-agent="priced"') == "3.0162"  # 3 + 2 × 0.0081
    assert last_cell("agent-table", 'data-agent="demo"') == "–"
    assert last_cell("agent-table", 'data-agent=""') == "3.0162"
    assert last_cell("team-table", f'data-team="{team.pk}"') == "3.0081"
    assert last_cell("team-table", 'data-team=""') == "0.0081"
    assert ">No team</th>" in html


# Budgets ----------------------------------------------------------------------------------------


def test_it_sums_this_utc_months_replies_of_the_team(alice: Any, team: Team, priced: Agent,
                                                     demo_agent: Agent):
    now = datetime(2026, 3, 15, 12, tzinfo=UTC)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    mine = Conversation.objects.create(owner=alice, agent=priced, team=team)
    Message.objects.create(conversation=mine, seq=1, role="user", content="q", created_at=now,
                           usage={"prompt_tokens": 999})  # not a reply
    reply(mine, 2, USAGE, created=start)
    reply(mine, 3, {"prompt_tokens": 100, "completion_tokens": None, "total_tokens": None},
          created=now)
    reply(mine, 4, USAGE, created=start - timedelta(microseconds=1))  # February
    reply(mine, 5, USAGE, created=datetime(2026, 4, 1, tzinfo=UTC))  # April
    reply(mine, 6, None, created=now)  # failed before any usage
    other = Conversation.objects.create(owner=alice, agent=priced)
    reply(other, 1, USAGE, created=now)  # outside the team
    free = Conversation.objects.create(owner=alice, agent=demo_agent, team=team)
    reply(free, 1, {"total_tokens": 50}, created=now)

    used = costs.team_consumption(team, now)
    assert (used.start, used.resets_at) == (start, datetime(2026, 4, 1, tzinfo=UTC))
    assert used.tokens == 1500 + 100 + 50
    assert used.cost == Decimal("0.0081") + Decimal("0.0003")
    assert [(a.slug, a.replies, a.tokens, a.cost) for a in used.by_agent] == [
        ("demo", 1, 50, None), ("priced", 3, 1600, Decimal("0.0084"))]
    # December rolls over to January.
    assert costs.month_bounds(datetime(2026, 12, 31, 23, tzinfo=UTC))[1] == \
        datetime(2027, 1, 1, tzinfo=UTC)


def test_it_refuses_new_runs_once_a_budget_is_reached(alice: Any, team: Team, priced: Agent):
    now = datetime(2026, 11, 20, tzinfo=UTC)
    conversation = Conversation.objects.create(owner=alice, agent=priced, team=team)
    reply(conversation, 1, USAGE, created=now)

    team.monthly_token_budget = 1501
    team.save()
    costs.check_budget(team, now)  # 1,500 used: one token left
    team.monthly_token_budget = 1500
    team.save()
    with pytest.raises(services.InvalidInput) as refused:
        costs.check_budget(team, now)
    assert refused.value.code == "quota_exceeded"
    assert refused.value.status == 429
    assert refused.value.message == (
        "The team “Support” has used its monthly budget of 1,500 tokens; new messages are "
        "refused until it resets on Dec. 1, 2026 (UTC).")

    team.monthly_token_budget = None
    team.monthly_cost_budget = Decimal("0.01")
    team.save()
    costs.check_budget(team, now)
    reply(conversation, 2, USAGE, created=now)  # 0.0162 in all
    with pytest.raises(services.InvalidInput) as refused:
        services.check_budget(team, now)
    assert refused.value.code == "quota_exceeded"
    assert "monthly cost budget of 0.01" in refused.value.message
    # A new month starts from nothing.
    costs.check_budget(team, datetime(2026, 12, 1, tzinfo=UTC))


def test_it_checks_a_budget_with_one_query_and_none_without_one(alice: Any, team: Team,
                                                                priced: Agent):
    for _ in range(5):
        conversation = Conversation.objects.create(owner=alice, agent=priced, team=team)
        reply(conversation, 1, USAGE)
    with CaptureQueriesContext(connection) as unlimited:
        costs.check_budget(team)
        costs.check_budget(None)
    assert len(unlimited) == 0
    team.monthly_token_budget = 10**9
    team.monthly_cost_budget = Decimal("1000")
    with CaptureQueriesContext(connection) as limited:
        costs.check_budget(team)
    assert len(limited) == 1


def test_it_refuses_everything_with_a_budget_of_zero(team: Team):
    team.monthly_cost_budget = Decimal(0)
    with pytest.raises(services.InvalidInput) as refused:
        costs.check_budget(team)
    assert refused.value.code == "quota_exceeded"


# The team page ----------------------------------------------------------------------------------


def test_it_shows_the_team_page_to_its_leads_and_staff_only(
    client: Client, alice: Any, bob: Any, staff: Any, team: Team, django_user_model: Any
):
    outsider = django_user_model.objects.create_user("olga", password="pw-olga-123")
    other = services.teams.create_team("billing", "Billing")
    services.teams.add_member(other, outsider, lead=True)

    assert logged_in(alice).get("/teams/support/").status_code == 200
    assert logged_in(staff).get("/teams/support/").status_code == 200
    assert logged_in(bob).get("/teams/support/").status_code == 404  # a member, not a lead
    assert logged_in(outsider).get("/teams/support/").status_code == 404  # another team's lead
    assert logged_in(outsider).get("/teams/nope/").status_code == 404
    assert logged_in(staff).get("/teams/nope/").status_code == 404
    anonymous = client.get("/teams/support/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    # Not a slug at all: no page.
    assert logged_in(alice).get("/teams/%00/").status_code == 404


def test_it_shows_members_and_this_months_consumption(alice: Any, bob: Any, team: Team,
                                                      priced: Agent):
    bob.first_name, bob.last_name = "Bob", "Martin"
    bob.save()
    conversation = Conversation.objects.create(owner=alice, agent=priced, team=team)
    reply(conversation, 1, USAGE)
    team.monthly_token_budget = 3000
    team.monthly_cost_budget = Decimal("0.01")
    team.save()

    html = logged_in(alice).get("/teams/support/").content.decode()
    members = html.split('id="team-members"')[1].split("</table>")[0]
    assert '<tr data-username="alice"><td>alice</td><td>alice</td><td>Lead</td></tr>' in members
    assert '<tr data-username="bob"><td>Bob Martin</td><td>bob</td><td>Member</td></tr>' \
        in members
    tokens = html.split('id="team-tokens">')[1].split("</dd>")[0]
    assert "1500 of 3000 (50%)" in tokens
    cost = html.split('id="team-cost">')[1].split("</dd>")[0]
    assert "0.0081 of 0.01 (81%)" in cost
    assert 'id="budget-reached"' not in html
    agents = html.split('id="team-agents"')[1].split("</table>")[0]
    assert ('<tr data-agent="priced"><th scope="row">Priced</th><td class="num">1</td>'
            '<td class="num">1500</td><td class="num">0.0081</td></tr>') in agents
    assert 'href="/teams/support/replies/"' in html

    team.monthly_token_budget = 1500
    team.save()
    html = logged_in(alice).get("/teams/support/").content.decode()
    assert "1500 of 1500 (100%)" in html
    assert "The monthly token budget is used up" in html.split('id="budget-reached"')[1]
