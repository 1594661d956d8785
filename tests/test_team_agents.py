"""Which agents a team may use (issue 12 §5), on every surface that starts a conversation: the
home page's composer (agent and team pickers), `POST /api/v1/conversations` (with `team`), the
"More options…" form and the admin; the conversation's `team` and `assignee` in its JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations import services
from conversations.models import Agent, Conversation
from tests import test_browser as base
from tests.conftest import csrf_headers, logged_in
from tests.livesrv import LiveServer, live_server
from tests.wsclient import open_socket, wait_for_no_runs

DRAFT = re.compile(r'<script id="chat-initial" type="application/json">(.*?)</script>', re.S)


@pytest.fixture
def desk(db: Any, demo_agent: Agent, django_user_model: Any) -> dict[str, Any]:
    """Support and Billing; an agent per team and the demo agent open to all. Alice is in both
    (Support first: her default), Bob in Support only, Carol in none."""
    support = services.teams.create_team("support", "Support")
    billing = services.teams.create_team("billing", "Billing")
    # No passwords: the tests log in with force_login, and hashing one costs ~0.3 s.
    users = {name: django_user_model.objects.create_user(name)
             for name in ("alice", "bob", "carol")}
    services.teams.add_member(support, users["alice"], lead=True)
    services.teams.add_member(billing, users["alice"])
    services.teams.add_member(support, users["bob"])
    helper = Agent.objects.create(slug="helper", name="Support helper", provider="demo",
                                  options={"delay": 0})
    helper.teams.set([support])
    refunds = Agent.objects.create(slug="refunds", name="Refund bot", provider="demo",
                                   options={"delay": 0})
    refunds.teams.set([billing])
    return {"support": support, "billing": billing, **users,
            "agents": {"demo": demo_agent, "helper": helper, "refunds": refunds}}


def api(user: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")  # the csrftoken cookie
    return client


def create(client: Client, **body: Any) -> Any:
    return client.post("/api/v1/conversations", json.dumps(body),
                       content_type="application/json", **csrf_headers(client))


def options(html: str, select_id: str) -> list[dict[str, str | bool]]:
    select = re.search(rf'<select id="{select_id}" name="\w+">(.*?)</select>', html, re.S)
    assert select, select_id
    found = []
    for attrs in re.findall(r"<option ([^>]*)>", select.group(1)):
        found.append({"value": re.search(r'value="([^"]*)"', attrs).group(1),
                      "selected": " selected" in f" {attrs}",
                      "disabled": " disabled" in f" {attrs}",
                      "teams": (m.group(1) if (m := re.search(r'data-teams="([^"]*)"', attrs))
                                else None)})
    return found


# The home page's composer -----------------------------------------------------------------------


def test_it_offers_only_the_agents_of_a_users_teams_on_the_composer(desk: dict[str, Any]):
    bob = logged_in(desk["bob"]).get("/").content.decode()
    assert [o["value"] for o in options(bob, "draft-agent")] == ["demo", "helper"]
    assert 'id="draft-team"' not in bob  # one team: nothing to choose
    state = json.loads(DRAFT.search(bob).group(1))
    assert [(a["slug"], a["teams"]) for a in state["draft"]["agents"]] == [
        ("demo", None), ("helper", ["support"])]
    assert state["draft"]["team"] is None

    carol = logged_in(desk["carol"]).get("/").content.decode()
    assert [o["value"] for o in options(carol, "draft-agent")] == ["demo"]
    assert 'id="draft-team"' not in carol
    assert "Refund bot" not in carol and "Support helper" not in carol


def test_it_offers_a_team_picker_to_a_user_in_two_teams(desk: dict[str, Any]):
    html = logged_in(desk["alice"]).get("/").content.decode()
    assert options(html, "draft-team") == [
        {"value": "billing", "selected": False, "disabled": False, "teams": None},
        {"value": "support", "selected": True, "disabled": False, "teams": None}]
    # Her default team is Support: Billing's agent is there for the picker, but not offered.
    assert options(html, "draft-agent") == [
        {"value": "demo", "selected": True, "disabled": False, "teams": None},
        {"value": "refunds", "selected": False, "disabled": True, "teams": "billing"},
        {"value": "helper", "selected": False, "disabled": False, "teams": "support"}]
    state = json.loads(DRAFT.search(html).group(1))
    assert state["draft"]["team"] == "support"
    assert state["conversation"]["team"] == {"slug": "support", "name": "Support"}
    assert state["conversation"]["assignee"] is None


def test_it_never_preselects_an_agent_the_default_team_may_not_use(desk: dict[str, Any]):
    # Alice's last conversation was with the Billing agent; her default team is Support.
    Conversation.objects.create(owner=desk["alice"], agent=desk["agents"]["refunds"],
                                team=desk["billing"])
    html = logged_in(desk["alice"]).get("/").content.decode()
    selected = [o["value"] for o in options(html, "draft-agent") if o["selected"]]
    assert selected == ["demo"]


# The API ----------------------------------------------------------------------------------------


def test_it_creates_a_conversation_in_the_chosen_team_with_its_agent(desk: dict[str, Any]):
    alice = api(desk["alice"])
    r = create(alice, agent="refunds", team="billing")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["team"] == {"slug": "billing", "name": "Billing"}
    assert body["assignee"] is None
    assert Conversation.objects.get(pk=body["id"]).team == desk["billing"]
    # No team given: the default one.
    r = create(alice, agent="helper")
    assert r.status_code == 201 and r.json()["team"] == {"slug": "support", "name": "Support"}
    # A user in no team: a private conversation.
    r = create(api(desk["carol"]), agent="demo")
    assert r.status_code == 201 and r.json()["team"] is None


@pytest.mark.parametrize(("user", "body", "status", "code", "message"), [
    ("bob", {"agent": "refunds"}, 403, "agent_not_allowed",
     "The agent “Refund bot” is not available to the team “Support”."),
    ("alice", {"agent": "refunds", "team": "support"}, 403, "agent_not_allowed",
     "The agent “Refund bot” is not available to the team “Support”."),
    ("carol", {"agent": "helper"}, 403, "agent_not_allowed",
     "The agent “Support helper” is not available to conversations outside a team."),
    ("carol", {"agent": "demo", "team": "support"}, 422, "invalid",
     "You are not a member of the team “support”."),
    ("bob", {"agent": "demo", "team": "billing"}, 422, "invalid",
     "You are not a member of the team “billing”."),
])
def test_it_refuses_an_agent_or_team_the_user_may_not_use(
    desk: dict[str, Any], user: str, body: dict[str, Any], status: int, code: str, message: str
):
    r = create(api(desk[user]), **body)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"] == message
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("team", [123, True, ["support"], {"slug": "support"}, 1.5])
def test_it_refuses_a_team_that_is_not_a_slug(desk: dict[str, Any], team: Any):
    r = create(api(desk["alice"]), agent="demo", team=team)
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "invalid", "message": "team must be a team's slug.",
                                 "details": {"field": "team"}}
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("team", ["x" * 5000, "../support", "support ", "SUPPORT", "support\u200b",
                                  "<script>alert(1)</script>"])
def test_it_refuses_hostile_team_slugs_clearly(desk: dict[str, Any], team: str,
                                               caplog: Any):
    r = create(api(desk["alice"]), agent="demo", team=team)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid" and error["details"] == {"field": "team"}
    assert error["message"] == f"You are not a member of the team “{team[:64]}”."
    assert not Conversation.objects.exists()
    assert not [record for record in caplog.records if record.exc_info]


def test_it_refuses_a_nul_in_the_team_before_it_reaches_the_database(desk: dict[str, Any]):
    client = api(desk["alice"])
    r = client.post("/api/v1/conversations", '{"agent": "demo", "team": "sup\\u0000port"}',
                    content_type="application/json", **csrf_headers(client))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid"
    assert not Conversation.objects.exists()


def test_it_shows_the_assignee_in_the_conversations_json(desk: dict[str, Any]):
    bob = desk["bob"]
    bob.first_name, bob.last_name = "Bob", "Martin"
    bob.save()
    conversation = Conversation.objects.create(owner=desk["alice"], agent=desk["agents"]["demo"],
                                               team=desk["support"], assignee=bob)
    data = logged_in(desk["alice"]).get(f"/api/v1/conversations/{conversation.pk}").json()
    assert data["team"] == {"slug": "support", "name": "Support"}
    assert data["assignee"] == {"id": bob.pk, "name": "Bob Martin"}


@pytest.mark.django_db(transaction=True)
async def test_it_announces_an_assigned_conversation_from_the_relay(
    alice_client: Client, alice: Any, bob: Any, demo_agent: Agent
):
    """The relay builds `conversation.updated` in async code, where the assignee may not be
    loaded: the frame goes out (never a query there), the reply runs."""
    team = await database_sync_to_async(services.teams.create_team)("support", "Support")
    for user in (alice, bob):
        await database_sync_to_async(services.teams.add_member)(team, user)
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, agent=demo_agent, team=team, assignee=bob)
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "hi", "metadata": {"plan": "gold"}})
    frames = await sock.recv_until("message.completed")
    updated = [f["conversation"] for f in frames if f["type"] == "conversation.updated"]
    assert updated and updated[0]["metadata"] == {"plan": "gold"}
    assert updated[0]["team"] == {"slug": "support", "name": "Support"}
    assert updated[0]["assignee"]["id"] == bob.pk
    assert frames[-1]["message"]["status"] == "completed"
    await wait_for_no_runs()
    await sock.close()


# The "More options…" form -----------------------------------------------------------------------


def test_it_offers_the_users_agents_and_teams_on_the_form(desk: dict[str, Any]):
    html = logged_in(desk["bob"]).get("/conversations/new?agent=refunds").content.decode()
    agents = re.search(r'<select name="agent"[^>]*>(.*?)</select>', html, re.S).group(1)
    assert re.findall(r'<option value="(\w+)"', agents) == ["demo", "helper"]
    # An agent Bob may not use in the link is not preselected.
    assert 'value="demo" selected' in agents
    teams = re.search(r'<select name="team"[^>]*>(.*?)</select>', html, re.S).group(1)
    assert re.findall(r'<option value="(\w+)"( selected)?', teams) == [("support", " selected")]

    carol = logged_in(desk["carol"]).get("/conversations/new").content.decode()
    assert 'name="team"' not in carol


def test_it_starts_a_conversation_from_the_form_in_the_chosen_team(desk: dict[str, Any]):
    alice = logged_in(desk["alice"])
    r = alice.post("/conversations/new", {"agent": "refunds", "team": "billing"})
    assert r.status_code == 302
    conversation = Conversation.objects.get()
    assert (conversation.team, conversation.agent.slug) == (desk["billing"], "refunds")
    assert r["Location"] == f"/c/{conversation.pk}/"


@pytest.mark.parametrize(("user", "form", "error"), [
    ("alice", {"agent": "refunds", "team": "support"},
     "The agent “Refund bot” is not available to the team “Support”."),
    ("bob", {"agent": "refunds", "team": "support"},
     "Select a valid choice. That choice is not one of the available choices."),
    ("bob", {"agent": "demo", "team": "billing"},
     "Select a valid choice. That choice is not one of the available choices."),
    ("alice", {"agent": "demo", "team": "x" * 3000},
     "Select a valid choice. That choice is not one of the available choices."),
    ("alice", {"agent": "demo"}, "This field is required."),
])
def test_it_refuses_the_form_for_an_agent_or_team_not_the_users(
    desk: dict[str, Any], user: str, form: dict[str, str], error: str
):
    r = logged_in(desk[user]).post("/conversations/new", form)
    assert r.status_code == 400
    assert error in r.content.decode().replace("&ldquo;", "“").replace("&rdquo;", "”")
    assert not Conversation.objects.exists()


# The admin --------------------------------------------------------------------------------------


def test_it_filters_the_admins_conversations_by_team(desk: dict[str, Any], staff: Any):
    demo = desk["agents"]["demo"]
    Conversation.objects.create(owner=desk["alice"], agent=demo, team=desk["support"],
                                title="Support one")
    Conversation.objects.create(owner=desk["alice"], agent=demo, team=desk["billing"],
                                title="Billing one")
    Conversation.objects.create(owner=desk["carol"], agent=demo, title="Private one")
    client = logged_in(staff)
    html = client.get(f"/admin/conversations/conversation/?team__id__exact={desk['billing'].pk}"
                      ).content.decode()
    assert "Billing one" in html and "Support one" not in html and "Private one" not in html
    agents = client.get(f"/admin/conversations/agent/?teams__id__exact={desk['support'].pk}"
                        ).content.decode()
    assert "Support helper" in agents and "Refund bot" not in agents


def test_it_gives_an_agent_its_teams_in_the_admin(desk: dict[str, Any], staff: Any):
    helper = desk["agents"]["helper"]
    r = logged_in(staff).post(f"/admin/conversations/agent/{helper.pk}/change/", {
        "slug": "helper", "name": "Support helper", "provider": "demo", "base_url": "",
        "token_env": "", "options": '{"delay": 0}', "is_active": "on",
        "teams": [desk["support"].pk, desk["billing"].pk]})
    assert r.status_code == 302
    assert set(helper.teams.all()) == {desk["support"], desk["billing"]}
    assert services.teams.agent_allowed(helper, desk["billing"])


# In a real browser ------------------------------------------------------------------------------

PASSWORD = "browser-pw-123"
# The real browser (Chromium) shared with test_browser.
browser = base.browser


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("teams")) as srv:
        srv.shell(
            "from django.contrib.auth.models import User\n"
            "from conversations.models import Agent\n"
            "from conversations.services import teams\n"
            f"dana = User.objects.create_user('dana', '', '{PASSWORD}')\n"
            "support = teams.create_team('support', 'Support')\n"
            "billing = teams.create_team('billing', 'Billing')\n"
            "teams.add_member(support, dana)\n"
            "teams.add_member(billing, dana)\n"
            "bot = Agent.objects.create(slug='refunds', name='Refund bot', provider='demo',"
            " options={'delay': 0, 'price_input_per_mtok': 1000, 'price_output_per_mtok': 2000})\n"
            "bot.teams.set([billing])\n"
            "print('ok')"
        )
        yield srv


@pytest.mark.browser
def test_it_follows_the_team_picker_and_creates_the_conversation_there(
    browser: Any, team_server: LiveServer
):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(team_server.url + "/accounts/login/")
        page.fill("input[name=username]", "dana")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_url(team_server.url + "/")
        assert page.input_value("#draft-team") == "support"
        refunds = page.locator('#draft-agent option[value="refunds"]')
        assert refunds.is_disabled()

        page.select_option("#draft-team", "billing")
        assert not refunds.is_disabled()
        page.select_option("#draft-agent", "refunds")
        assert page.get_attribute("#composer-input", "placeholder") == "Message Refund bot…"
        # Back to Support: the Billing agent goes, the picker falls back to one Support may use.
        page.select_option("#draft-team", "support")
        assert refunds.is_disabled()
        assert page.input_value("#draft-agent") == "demo"

        page.select_option("#draft-team", "billing")
        page.select_option("#draft-agent", "refunds")
        page.locator("#composer-input").fill("My refund, please")
        page.keyboard.press("Enter")
        page.wait_for_function("() => location.pathname.startsWith('/c/')")
        conversation = page.evaluate("() => location.pathname.split('/')[2]")
        data = page.evaluate("async (url) => (await fetch(url)).json()",
                             f"{team_server.url}/api/v1/conversations/{conversation}")
        assert data["team"] == {"slug": "billing", "name": "Billing"}
        assert data["agent"] == "refunds"

        # The reply's footer shows its tokens and cost, small (after a reload: the stored one).
        page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                               timeout=20_000)
        page.reload()
        answer = page.evaluate("async (url) => (await fetch(url)).json()",
                               f"{team_server.url}/api/v1/conversations/{conversation}"
                               )["messages"][1]
        usage = answer["token_usage"]
        assert answer["cost"] == (usage["prompt_tokens"] * 1000
                                  + usage["completion_tokens"] * 2000) / 1e6
        note = page.locator("article.message[data-role=assistant] .message-usage")
        # Two decimals at least, no trailing zeros beyond (the prices make three at most).
        whole, decimals = f"{answer['cost']:.3f}".split(".")
        shown = f"{whole}.{decimals.rstrip('0').ljust(2, '0')}"
        assert note.inner_text() == f"{usage['total_tokens']} tokens · cost {shown}"
    finally:
        context.close()
