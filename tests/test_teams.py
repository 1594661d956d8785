"""Teams that share conversations, assignment and handoff, internal notes, presence (issue 12
§1-3): the one access rule on every surface, the events in the transcript and on every socket."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from conversations import services
from conversations.models import Agent, Conversation, Message, Team, TeamMembership
from tests.conftest import logged_in
from tests.fakevendor import openai_chunk, sse, sse_script
from tests.wsclient import open_socket, wait_for_no_runs

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


@pytest.fixture
def carol(db: Any) -> Any:
    return get_user_model().objects.create_user("carol", "carol@example.com", "pw-carol-123",
                                                first_name="Carol")


@pytest.fixture
def support(alice: Any, bob: Any) -> Team:
    """Alice (lead) and Bob in Support; Carol (another fixture) in no team."""
    team = services.teams.create_team("support", "Support")
    services.teams.add_member(team, alice, lead=True)
    services.teams.add_member(team, bob)
    return team


@pytest.fixture
def billing(carol: Any) -> Team:
    team = services.teams.create_team("billing", "Billing")
    services.teams.add_member(team, carol)
    return team


@pytest.fixture
def shared(alice: Any, support: Team, demo_agent: Agent) -> Conversation:
    return services.create_conversation(alice, agent=demo_agent, title="Shared refund")


# The command line -----------------------------------------------------------------------------


def test_it_manages_teams_from_the_command_line(alice: Any, bob: Any):
    out = io.StringIO()
    call_command("teams", "add", "support", "--name", "Support", stdout=out)
    call_command("teams", "members", "support", "--add", "alice", "--lead", stdout=out)
    call_command("teams", "members", "support", "--add", "bob", stdout=out)
    call_command("teams", "list", stdout=out)
    assert "support\tSupport\talice (lead), bob" in out.getvalue()
    call_command("teams", "members", "support", "--remove", "bob", stdout=out)
    assert not TeamMembership.objects.filter(user=bob).exists()
    for args, message in (
        (["add", "support", "--name", "Again"], "already exists"),
        (["add", "bad slug!", "--name", "X"], "slug"),
        (["members", "nope", "--add", "alice"], "no team"),
        (["members", "support", "--add", "nobody"], "no user"),
        (["members", "support", "--remove", "bob"], "not a member"),
    ):
        with pytest.raises(CommandError, match=message):
            call_command("teams", *args, stdout=io.StringIO())


def test_it_gives_the_first_team_as_the_default_and_moves_it_on_removal(alice: Any):
    first = services.teams.create_team("first", "First")
    second = services.teams.create_team("second", "Second")
    services.teams.add_member(first, alice)
    services.teams.add_member(second, alice)
    assert services.teams.default_team(alice) == first
    services.teams.set_default_team(alice, second)
    assert services.teams.default_team(alice) == second
    services.teams.remove_member(second, alice)
    assert services.teams.default_team(alice) == first


# One access rule on every surface ------------------------------------------------------------


def test_it_shares_a_team_conversation_with_members_only(
    shared: Conversation, bob: Any, carol: Any, billing: Team
):
    assert shared.team.slug == "support"
    member, outsider = logged_in(bob), logged_in(carol)
    page = f"/c/{shared.pk}/"
    api = f"/api/v1/conversations/{shared.pk}"
    assert member.get(page).status_code == 200
    assert member.get(api).json()["title"] == "Shared refund"
    assert [c["id"] for c in member.get("/api/v1/conversations").json()["data"]] == [str(shared.pk)]
    assert outsider.get(page).status_code == 404
    assert outsider.get(api).status_code == 404
    assert outsider.get("/api/v1/conversations").json()["data"] == []
    patched = outsider.patch(api, json.dumps({"title": "mine now"}),
                             content_type="application/json")
    assert patched.status_code == 404
    assert outsider.post(f"/c/{shared.pk}/delete").status_code == 404
    shared.refresh_from_db()
    assert shared.title == "Shared refund"


async def test_it_lets_members_continue_on_the_websocket_and_refuses_others(
    shared: Conversation, bob: Any, carol: Any, billing: Team
):
    connected, sock = await open_socket(await db(logged_in)(bob), shared.id)
    assert connected
    frames = await sock.send({"type": "message.send", "content": "Taking over", "client_id": "b1"})
    frames = await sock.recv_until("message.completed")
    user_message = next(f["message"] for f in frames if f["type"] == "message.created")
    assert user_message["author"] == {"id": bob.pk, "name": "bob"}
    await sock.close()
    connected, _ = await open_socket(await db(logged_in)(carol), shared.id)
    assert connected is False


def test_it_keeps_a_user_in_no_team_private(carol: Any, alice: Any, demo_agent: Agent):
    private = services.create_conversation(carol, agent=demo_agent)
    assert private.team is None
    assert logged_in(alice).get(f"/c/{private.pk}/").status_code == 404


def test_it_offers_a_team_agent_to_that_team_only(
    shared: Conversation, alice: Any, carol: Any, billing: Team, support: Team
):
    billing_agent = Agent.objects.create(slug="bill", name="Billing bot", provider="demo",
                                         options={"delay": 0})
    billing_agent.teams.add(billing)
    assert billing_agent in services.teams.agents_for(carol)
    assert billing_agent not in services.teams.agents_for(alice)
    with pytest.raises(services.InvalidInput) as refused:
        services.create_conversation(alice, agent="bill")
    assert refused.value.code == "agent_not_allowed"
    # An agent taken away from the team: new sends are refused, nothing is stored.
    shared.agent = billing_agent
    shared.save()
    before = Message.objects.count()
    with pytest.raises(services.InvalidInput) as refused:
        services.accept_user_message(shared.pk, alice, content="hello")
    assert refused.value.code == "agent_not_allowed"
    assert Message.objects.count() == before


# Internal notes ------------------------------------------------------------------------------


async def test_it_posts_notes_to_every_socket_and_never_to_the_vendor(
    alice: Any, bob: Any, support: Team, openai_agent: Agent, fake_vendor: Any
):
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("Sure.")), sse(openai_chunk(finish_reason="stop")), sse("[DONE]")))
    conversation = await db(services.create_conversation)(alice, agent=openai_agent)
    _, mine = await open_socket(await db(logged_in)(alice), conversation.id)
    _, theirs = await open_socket(await db(logged_in)(bob), conversation.id)
    await mine.send({"type": "message.send", "content": "Customer wants a refund",
                     "client_id": "m1"})
    await mine.recv_until("message.completed")
    await theirs.recv_until("message.completed")

    await mine.send({"type": "note.add", "content": "SECRET-NOTE: refund approved by Dana",
                     "client_id": "n1"})
    for sock in (mine, theirs):
        note = (await sock.recv_until("message.created"))[-1]["message"]
        assert note["role"] == "note" and note["author"]["id"] == alice.pk
        assert note["content"] == "SECRET-NOTE: refund approved by Dana"
    # A repeat is acknowledged, not stored twice.
    await mine.send({"type": "note.add", "content": "SECRET-NOTE: refund approved by Dana",
                     "client_id": "n1"})
    assert (await mine.recv_until("message.created"))[-1]["message"]["id"] == note["id"]
    assert await db(Message.objects.filter(role="note").count)() == 1
    # A note starts no run; the next message's history leaves it out.
    await mine.send({"type": "message.send", "content": "Please confirm", "client_id": "m2"})
    await mine.recv_until("message.completed")
    await wait_for_no_runs()
    assert len(fake_vendor.requests) == 2
    assert all(b"SECRET-NOTE" not in r.body for r in fake_vendor.requests)
    # Bad notes get a clear error and the socket stays usable.
    for frame, code in (({"type": "note.add", "content": "  "}, "invalid"),
                        ({"type": "note.add", "content": 5}, "invalid"),
                        ({"type": "note.add", "content": "x" * 32_001}, "too_large")):
        await mine.send(frame)
        assert (await mine.recv_until("error"))[-1]["code"] == code
    await mine.assert_usable()
    for sock in (mine, theirs):
        await sock.close()


@pytest.mark.parametrize("kind", ["openai", "dimedove", "agkit", "loop", "dynamiq", "demo"])
def test_it_never_puts_notes_or_events_in_a_vendor_history(
    kind: str, alice: Any, support: Team, bob: Any
):
    agent = Agent.objects.create(slug=f"a-{kind}", name=kind, provider=kind,
                                 base_url="http://127.0.0.1:9", options={
                                     "model": "m", "app_id": "a", "agent_id": "x",
                                     "model_id": "m", "delay": 0})
    conversation = services.create_conversation(alice, agent=agent)
    for role, content in (("user", "hello"), ("assistant", "hi there"),
                          ("note", "SECRET-NOTE internal"), ("event", "Alice took this")):
        Message.objects.create(conversation=conversation, role=role, content=content,
                               seq=Message.objects.filter(conversation=conversation).count() + 1)
    services.assign(conversation.pk, alice, bob)
    accepted = services.accept_user_message(conversation.pk, alice, content="next question")
    roles = [(t.role, t.content) for t in accepted.request.history]
    assert roles == [("user", "hello"), ("assistant", "hi there")]
    body = json.dumps(_request_body(kind, accepted.request))
    assert "SECRET-NOTE" not in body and "took this" not in body and "assigned" not in body


def _request_body(kind: str, request: Any) -> Any:
    """The JSON each provider would send (its own builder, as its tests use it)."""
    from conversations.providers import agkit, openai

    if kind == "openai":
        return openai.OpenAIProvider.request_body(request)
    if kind == "agkit":
        return agkit.AGKitProvider.request_body(request)
    # Dimedove, Dynamiq and Loop keep the history themselves and are sent the new message
    # only; the demo answers from the history it is given.
    return {"message": request.message, "history": [t.content for t in request.history]}


# Assignment and handoff -------------------------------------------------------------------------


async def test_it_assigns_and_transfers_with_events_on_every_socket(
    shared: Conversation, alice: Any, bob: Any, carol: Any, billing: Team
):
    alice_client, bob_client = await db(logged_in)(alice), await db(logged_in)(bob)
    _, watching = await open_socket(bob_client, shared.id)
    url = f"/api/v1/conversations/{shared.pk}"

    def patch(client: Client, body: dict[str, Any]) -> Any:
        return client.patch(url, json.dumps(body), content_type="application/json")

    taken = await db(patch)(bob_client, {"assignee": bob.pk})
    assert taken.status_code == 200 and taken.json()["assignee"]["id"] == bob.pk
    frames = await watching.recv_until("conversation.updated")
    event = next(f["message"] for f in frames if f["type"] == "message.created")
    assert event["role"] == "event" and event["content"] == "bob took this conversation."
    assert event["extra"]["event"] == "taken"

    assigned = await db(patch)(bob_client, {"assignee": "alice"})
    assert assigned.json()["assignee"]["id"] == alice.pk
    frames = await watching.recv_until("conversation.updated")
    assert frames[-2]["message"]["content"] == "bob assigned this conversation to alice."

    # Refused: someone outside the team, unknown users and teams, bad types; nothing written.
    events = await db(Message.objects.filter(role="event").count)()
    for body, code in (({"assignee": carol.pk}, 422), ({"assignee": "ghost"}, 422),
                       ({"assignee": True}, 422), ({"team": "nope"}, 422),
                       ({"team": 7}, 422), ({"note": "orphan"}, 422),
                       ({"team": "billing", "note": "x" * 501}, 413)):
        refused = await db(patch)(alice_client, body)
        assert refused.status_code == code, body
        assert refused.json()["error"]["code"] in ("invalid", "too_large")
    assert await db(Message.objects.filter(role="event").count)() == events

    # Transfer to Billing with a note: Support's members lose the conversation, live.
    moved = await db(patch)(bob_client, {"team": "billing", "note": "refund over limit"})
    assert moved.json() == {"id": str(shared.pk), "transferred": True}
    closed = await watching.comm.receive_output(timeout=5)
    while closed["type"] == "websocket.send":
        closed = await watching.comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4404}
    assert (await db(bob_client.get)(url)).status_code == 404
    # The owner keeps it; Billing's Carol has it now, with the event in the transcript.
    carol_client = await db(logged_in)(carol)
    data = (await db(carol_client.get)(url)).json()
    assert data["team"] == {"slug": "billing", "name": "Billing"} and data["assignee"] is None
    assert data["messages"][-1]["content"] == (
        "bob transferred this conversation to Billing: “refund over limit”")
    assert (await db(alice_client.get)(url)).status_code == 200


def test_it_assigns_and_transfers_in_bulk_from_the_admin(
    staff_client: Client, shared: Conversation, bob: Any, billing: Team
):
    changelist = "/admin/conversations/conversation/"
    form = staff_client.post(changelist, {"action": "handoff", "_selected_action": [shared.pk]})
    assert form.status_code == 200 and b"Assign or transfer" in form.content
    done = staff_client.post(changelist, {
        "action": "handoff", "_selected_action": [shared.pk], "apply": "1",
        "team": "", "note": "", "assignee": bob.pk}, follow=True)
    assert b"1 (re)assigned" in done.content
    shared.refresh_from_db()
    assert shared.assignee == bob
    staff_client.post(changelist, {
        "action": "handoff", "_selected_action": [shared.pk], "apply": "1",
        "team": billing.pk, "note": "night shift", "assignee": ""})
    shared.refresh_from_db()
    assert shared.team == billing and shared.assignee is None
    assert list(shared.messages.filter(role="event").values_list("extra__event", flat=True)) \
        == ["assigned", "transferred"]


# Presence -------------------------------------------------------------------------------------


async def settled_presence(sock: Any, expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The socket's presence once it shows `expected` (joins and leaves cross the channel
    layer, so they may land after a pong), or the last one seen after 5 s."""
    for _ in range(50):
        await sock.assert_usable()
        if sock.presence == expected:
            break
        await asyncio.sleep(0.1)
    return sock.presence


async def test_it_shows_who_else_has_the_conversation_open(
    shared: Conversation, alice: Any, bob: Any
):
    me, them = {"id": alice.pk, "name": "alice"}, {"id": bob.pk, "name": "bob"}
    _, first = await open_socket(await db(logged_in)(alice), shared.id)
    assert await settled_presence(first, [me]) == [me]
    _, second = await open_socket(await db(logged_in)(bob), shared.id)
    assert await settled_presence(second, [me, them]) == [me, them]
    assert await settled_presence(first, [me, them]) == [me, them]
    await second.close()
    assert await settled_presence(first, [me]) == [me]
    await first.close()


def test_it_changes_the_default_team_on_the_settings_page(alice: Any, support: Team,
                                                         billing: Team, carol: Any):
    services.teams.add_member(billing, alice)
    client = logged_in(alice)
    page = client.get("/settings/").content.decode()
    assert 'value="support" checked' in page and 'href="/teams/support/"' in page
    done = client.post("/settings/", {"default_team": "billing"}, follow=True)
    assert "New conversations now go to Billing." in done.content.decode()
    assert services.teams.default_team(alice) == billing
    # A team one is not in, or nothing: refused, nothing changed.
    for value in ("nope", ""):
        refused = client.post("/settings/", {"default_team": value})
        assert refused.status_code == 422
        assert "Choose one of your teams." in refused.content.decode()
    assert services.teams.default_team(alice) == billing
    assert "You are in no team" in logged_in(
        get_user_model().objects.create_user("dave", "", "pw-dave-123")).get(
        "/settings/").content.decode()
