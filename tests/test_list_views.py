"""The conversation list's views (Mine, Assigned to me, Unassigned, one per team) in the service,
the sidebar and `GET /api/v1/conversations`, combined with search, the customer filter and the
archive; bad values are a 422 in the API and the whole list on pages. Runs on SQLite and on the
PostgreSQL pass (search snippets there: tests/test_search_pg.py)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from conversations import services
from conversations.models import Agent, Conversation, Message, Team
from conversations.services import teams

pytestmark = pytest.mark.django_db


def no_tracebacks(caplog: Any) -> None:
    assert not [r for r in caplog.records if r.exc_info], "no traceback may be logged"
    assert "Traceback" not in caplog.text


@pytest.fixture
def desk(alice: Any, bob: Any, demo_agent: Agent) -> dict[str, Any]:
    """Alice and Bob in Support; Alice also in Billing; Carol only in Billing; Dave in no team.
    Titles say whose and where each conversation is."""
    User = get_user_model()
    carol = User.objects.create_user("carol", "carol@example.com", "pw-carol-123")
    dave = User.objects.create_user("dave", "dave@example.com", "pw-dave-123")
    support = Team.objects.create(slug="support", name="Support")
    billing = Team.objects.create(slug="billing", name="Billing")
    teams.add_member(support, alice)
    teams.add_member(billing, alice)
    teams.add_member(support, bob)
    teams.add_member(billing, carol)

    def make(title: str, owner: Any, team: Team | None, **fields: Any) -> Conversation:
        return Conversation.objects.create(owner=owner, agent=demo_agent, title=title,
                                           team=team, **fields)

    made = {
        "a-private": make("a-private", alice, None),
        "a-support": make("a-support", alice, support, external_user_id="cust-1"),
        "b-support-unassigned": make("b-support-unassigned", bob, support),
        "b-support-to-alice": make("b-support-to-alice", bob, support, assignee=alice,
                                   external_user_id="cust-1"),
        "b-support-to-bob": make("b-support-to-bob", bob, support, assignee=bob),
        "c-billing": make("c-billing", carol, billing),
        "c-billing-archived": make("c-billing-archived", carol, billing, archived=True),
        "d-private": make("d-private", dave, None),
    }
    Message.objects.create(conversation=made["b-support-unassigned"], seq=1, role="user",
                           content="my parcel never arrived")
    Message.objects.create(conversation=made["c-billing"], seq=1, role="user",
                           content="the parcel was charged twice")
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, **made}


def titles(page: Any) -> set[str]:
    return {c.title for c in page.object_list}


def listed(user: Any, **kwargs: Any) -> set[str]:
    return titles(services.list_conversations(user, **kwargs))


def test_it_lists_every_view_for_a_member_of_two_teams(desk: dict[str, Any]):
    alice = desk["alice"]
    everything = {"a-private", "a-support", "b-support-unassigned", "b-support-to-alice",
                  "b-support-to-bob", "c-billing"}
    assert listed(alice) == everything
    assert listed(alice, view="mine") == {"a-private", "a-support"}
    assert listed(alice, view="assigned") == {"b-support-to-alice"}
    # In her teams, nobody's: her private conversation is in no team, so not here.
    assert listed(alice, view="unassigned") == {"a-support", "b-support-unassigned", "c-billing"}
    assert listed(alice, view="team", team="support") == {
        "a-support", "b-support-unassigned", "b-support-to-alice", "b-support-to-bob"}
    assert listed(alice, view="team", team="billing") == {"c-billing"}
    # `team` alone means the team view; archived ones stay behind the archive tab.
    assert listed(alice, team="billing") == {"c-billing"}
    assert listed(alice, team="billing", archived=True) == {"c-billing-archived"}


def test_it_combines_views_with_search_and_the_customer(desk: dict[str, Any]):
    alice, bob = desk["alice"], desk["bob"]
    assert listed(alice, q="parcel") == {"b-support-unassigned", "c-billing"}
    assert listed(alice, q="parcel", view="team", team="billing") == {"c-billing"}
    assert listed(alice, q="parcel", view="unassigned") == {"b-support-unassigned", "c-billing"}
    assert listed(alice, q="parcel", view="mine") == set()
    assert listed(alice, external_user_id="cust-1") == {"a-support", "b-support-to-alice"}
    assert listed(alice, external_user_id="cust-1", view="assigned") == {"b-support-to-alice"}
    assert listed(alice, external_user_id="cust-1", view="mine") == {"a-support"}
    assert listed(bob, q="parcel") == {"b-support-unassigned"}  # not in Billing


def test_it_gives_a_user_in_no_team_their_own_list_and_empty_team_views(desk: dict[str, Any]):
    dave = desk["dave"]
    assert listed(dave) == listed(dave, view="mine") == {"d-private"}
    assert listed(dave, view="assigned") == set()
    assert listed(dave, view="unassigned") == set()


def test_it_refuses_bad_views_and_teams_the_user_is_not_in(desk: dict[str, Any]):
    bob = desk["bob"]
    cases = [
        ({"view": "everything"}, "view"),
        ({"view": "team"}, "team"),  # which team?
        ({"view": "mine", "team": "support"}, "team"),
        ({"view": "team", "team": "billing"}, "team"),  # exists, Bob is not in it
        ({"view": "team", "team": "no-such-team"}, "team"),
    ]
    for kwargs, field in cases:
        with pytest.raises(services.InvalidInput) as caught:
            services.list_conversations(bob, **kwargs)
        assert caught.value.status == 422 and caught.value.field == field, kwargs
    # A non-member learns nothing about whether a team exists: the same message either way.
    messages = set()
    for slug in ("billing", "no-such-team"):
        with pytest.raises(services.InvalidInput) as caught:
            services.list_conversations(bob, view="team", team=slug)
        messages.add(caught.value.message.replace(slug, "<slug>"))
    assert len(messages) == 1


# The API -----------------------------------------------------------------------------------------


def api_titles(client: Client, **params: str) -> set[str]:
    response = client.get("/api/v1/conversations", params)
    assert response.status_code == 200, response.content
    return {c["title"] for c in response.json()["data"]}


def test_it_serves_the_views_in_the_api(desk: dict[str, Any], api_client: Client):
    assert api_titles(api_client, view="assigned") == {"b-support-to-alice"}
    assert api_titles(api_client, view="team", team="billing") == {"c-billing"}
    assert api_titles(api_client, view="unassigned", q="parcel") == {
        "b-support-unassigned", "c-billing"}
    assert api_titles(api_client, view="mine", external_user_id="cust-1") == {"a-support"}
    assert api_titles(api_client, view="team", team="billing", archived="1") == {
        "c-billing-archived"}


def test_it_answers_422_to_hostile_view_parameters(
    desk: dict[str, Any], caplog: Any
):
    caplog.set_level(logging.WARNING)
    client = Client()
    client.force_login(desk["bob"])
    for params, field in [
        ({"view": "all-of-them"}, "view"),
        ({"view": "x" * 10_000}, "view"),
        ({"view": "team", "team": "billing"}, "team"),
        ({"view": "team", "team": "' OR 1=1 --"}, "team"),
        ({"view": "team", "team": "é" * 5000}, "team"),
        ({"view": "team"}, "team"),
        ({"view": "assigned", "team": "support"}, "team"),
    ]:
        response = client.get("/api/v1/conversations", params)
        assert response.status_code == 422, params
        error = response.json()["error"]
        assert error["code"] == "invalid" and error["details"] == {"field": field}, params
        assert len(error["message"]) < 200
    # NUL never reaches the service: refused before any view (RequestTextMiddleware).
    response = client.get("/api/v1/conversations", {"view": "mine\x00"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    assert client.get("/api/v1/conversations", {"view": "mine"}).status_code == 200
    no_tracebacks(caplog)


# The sidebar -------------------------------------------------------------------------------------


def sidebar(client: Client, **params: str) -> str:
    response = client.get("/", params)
    assert response.status_code == 200
    html = response.content.decode()
    return html[html.index('id="sidebar"'):html.index("</aside>")]


def sidebar_titles(html: str) -> set[str]:
    return set(re.findall(r'<span class="conversation-title">([^<]*)</span>', html))


def test_it_switches_views_in_the_sidebar_keeping_search_and_customer(
    desk: dict[str, Any], alice_client: Client
):
    html = sidebar(alice_client, q="parcel", customer="cust-9")
    switcher = html[html.index('class="sidebar-views"'):]
    switcher = switcher[:switcher.index("</nav>")]
    links = re.findall(r'<a class="sidebar-view" href="([^"]*)">([^<]*)</a>', switcher)
    assert [label for _, label in links] == [
        "Mine", "Assigned to me", "Unassigned", "Billing", "Support"]
    assert '<span class="sidebar-view is-current" aria-current="page">All</span>' in switcher
    hrefs = dict((label, href) for href, label in links)
    assert hrefs["Mine"] == "/?view=mine&amp;q=parcel&amp;customer=cust-9"
    assert hrefs["Billing"] == "/?view=team&amp;team=billing&amp;q=parcel&amp;customer=cust-9"

    html = sidebar(alice_client, view="team", team="billing")
    assert sidebar_titles(html) == {"c-billing"}
    assert '<span class="sidebar-view is-current" aria-current="page">Billing</span>' in html
    # The search form and the archive tab keep the view.
    assert '<input type="hidden" name="view" value="team">' in html
    assert '<input type="hidden" name="team" value="billing">' in html
    assert 'href="/?archived=1&amp;view=team&amp;team=billing"' in html
    assert sidebar_titles(sidebar(alice_client, view="assigned")) == {"b-support-to-alice"}


def test_it_shows_the_whole_list_for_bad_views_on_pages(desk: dict[str, Any], caplog: Any):
    caplog.set_level(logging.WARNING)
    client = Client()
    client.force_login(desk["bob"])
    everything = sidebar_titles(sidebar(client))
    assert everything == {"b-support-unassigned", "b-support-to-alice", "b-support-to-bob",
                          "a-support"}
    for params in ({"view": "nope"}, {"view": "team", "team": "billing"},
                   {"team": "<script>alert(1)</script>"}, {"view": "x" * 10_000}):
        html = sidebar(client, **params)
        assert sidebar_titles(html) == everything, params
        assert "<script>alert" not in html
    no_tracebacks(caplog)


def test_it_shows_no_switcher_to_a_user_in_no_team(desk: dict[str, Any]):
    client = Client()
    client.force_login(desk["dave"])
    html = sidebar(client)
    assert "sidebar-views" not in html and sidebar_titles(html) == {"d-private"}


def test_it_shows_a_snippet_of_the_matching_message_escaped(
    desk: dict[str, Any], alice_client: Client
):
    Message.objects.create(conversation=desk["a-private"], seq=1, role="assistant",
                           content="<b>bold</b> answer about the parcel & <i>its</i> fate")
    html = sidebar(alice_client, q="parcel")
    snippets = re.findall(r'<span class="conversation-snippet">(.*?)</span>', html)
    assert len(snippets) == 3
    [snippet] = [s for s in snippets if "bold" in s]
    assert "<mark>parcel</mark>" in snippet and "&amp;" in snippet
    # Escaped (SQLite), or dropped as tags by ts_headline (PostgreSQL): never markup.
    assert re.sub(r"</?mark>", "", snippet).count("<") == 0
    assert "<b>bold</b>" not in html and "<i>its</i>" not in html
    # No search, no snippet.
    assert "conversation-snippet" not in sidebar(alice_client)
