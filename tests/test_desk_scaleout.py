"""Presence and assignment events across two real Daphne processes on PostgreSQL + Redis
(issue 12): a colleague's socket on the other process sees both."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.cluster import recv, recv_until, seed, socket_to
from tests.fakevendor import FakeVendor
from tests.livesrv import LiveServer

pytestmark = pytest.mark.scaleout


async def test_it_carries_presence_and_events_across_processes(
    pair: list[LiveServer], migrated: LiveServer, vendor: FakeVendor,
):
    a, b = pair
    session, conversation_id = seed(migrated, vendor)  # dana's conversation
    colleague = migrated.session_for("erin")
    migrated.shell(
        "from conversations.models import Conversation, Team\n"
        "from conversations.services import teams\n"
        "from django.contrib.auth import get_user_model\n"
        "U = get_user_model()\n"
        "t, _ = Team.objects.get_or_create(slug='desk', defaults={'name': 'Desk'})\n"
        "teams.add_member(t, U.objects.get(username='dana'))\n"
        "teams.add_member(t, U.objects.get(username='erin'))\n"
        f"Conversation.objects.filter(pk={conversation_id!r}).update(team=t)\n"
    )
    on_a = await socket_to(a, session, conversation_id)
    on_b = await socket_to(b, colleague, conversation_id)
    for ws in (on_a, on_b):
        assert (await recv(ws))["type"] == "conversation.sync"

    async def present(ws: Any) -> set[str]:
        while True:
            frame = (await recv_until(ws, "presence"))[-1]
            names = {u["name"] for u in frame["users"]}
            if names == {"dana", "erin"}:
                return names

    assert await present(on_a) == await present(on_b) == {"dana", "erin"}

    # Dana (process A) assigns it to Erin over the API: Erin's socket on B gets the event.
    async with httpx.AsyncClient(base_url=a.url, cookies={"sessionid": session}) as client:
        await client.get("/")
        token = client.cookies.get("csrftoken")
        answer = await client.patch(
            f"/api/v1/conversations/{conversation_id}", json={"assignee": "erin"},
            headers={"X-CSRFToken": token or "", "Origin": a.url, "Referer": a.url + "/"})
    assert answer.status_code == 200, answer.text
    frames = await recv_until(on_b, "conversation.updated")
    event = next(f["message"] for f in frames if f["type"] == "message.created")
    assert event["role"] == "event"
    assert event["content"] == "dana assigned this conversation to erin."
    assert frames[-1]["conversation"]["assignee"]["name"] == "erin"

    # Erin leaves: Dana's presence drops her, across processes.
    await on_b.close()
    while True:
        frame = (await recv_until(on_a, "presence"))[-1]
        if [u["name"] for u in frame["users"]] == ["dana"]:
            break
    await on_a.close()
