"""Regenerate, edit and branches (issue 11 §2): the message tree, its active path, the
websocket frames, the API, forks for vendors that keep their own history, the admin transcript."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.models import Agent, Conversation, Message
from conversations.services.branches import Tree
from tests.fakevendor import json_script, openai_chunk, sse, sse_script
from tests.wsclient import open_socket, wait_for_no_runs

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


def openai_reply(text: str) -> Any:
    return sse_script(sse(openai_chunk(text)), sse(openai_chunk(finish_reason="stop")),
                      sse("[DONE]"))


async def send(sock: Any, frame: dict[str, Any], *until: str) -> list[dict[str, Any]]:
    await sock.send(frame)
    return await sock.recv_until(*until) if until else []


async def exchange(sock: Any, content: str, client_id: str) -> tuple[str, str]:
    frames = await send(sock, {"type": "message.send", "content": content,
                               "client_id": client_id}, "message.completed")
    created = [f["message"] for f in frames if f["type"] == "message.created"]
    return created[0]["id"], created[1]["id"]


def history_of(request: Any) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request.json()["messages"]]


# The tree ------------------------------------------------------------------------------------


def test_it_reads_parentless_rows_as_a_line_and_an_edited_root_as_a_second_root():
    tree = Tree.build([("a", None, 1, None), ("b", None, 2, None), ("c", "a", 3, None),
                       ("d", None, 4, "a")])
    assert tree.parent == {"a": None, "b": "a", "c": "a", "d": None}
    assert tree.path("b") == ["a", "b"]
    assert tree.path(None) == ["d"]  # no leaf: the newest message
    assert tree.siblings("c") == ["b", "c"]
    assert tree.branch_points(["a", "c"]) == {"a": ["a", "d"], "c": ["b", "c"]}
    assert tree.newest_leaf("a") == "c"


# Regenerate and edit on a stateless vendor: branches in place ---------------------------------


async def test_it_regenerates_a_reply_as_a_sibling_sent_the_active_path(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any
):
    fake_vendor.add_route("POST", "/v1/chat/completions", openai_reply("First answer"))
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    _, sock = await open_socket(alice_client, conversation.id)
    question, first = await exchange(sock, "What is 2+2?", "c1")

    fake_vendor.add_route("POST", "/v1/chat/completions", openai_reply("Second answer"))
    frames = await send(sock, {"type": "message.regenerate", "message_id": first,
                               "client_id": "r1"}, "message.completed")
    created = [f["message"] for f in frames if f["type"] == "message.created"]
    # Only the new reply is announced: the question exists already.
    assert [(m["role"], m["parent_id"]) for m in created] == [("assistant", question)]
    second = created[0]["id"]
    assert frames[-1]["message"]["content"] == "Second answer"
    # The vendor got the question again, with no trace of the first answer.
    assert history_of(fake_vendor.requests[-1])[-1] == ("user", "What is 2+2?")
    assert ("assistant", "First answer") not in history_of(fake_vendor.requests[-1])

    # A repeat of the frame is acknowledged, never run twice.
    repeat = await send(sock, {"type": "message.regenerate", "message_id": first,
                               "client_id": "r1"}, "message.created")
    assert repeat[-1]["message"]["id"] == second
    await wait_for_no_runs()
    assert len(fake_vendor.requests) == 2

    # The sync carries the active path and the alternatives.
    await sock.close()
    _, sock = await open_socket(alice_client, conversation.id)
    assert [m["id"] for m in sock.sync["messages"]] == [question, second]
    assert sock.sync["branches"] == {second: [first, second]}
    await sock.close()


async def test_it_edits_a_message_and_sends_only_the_new_branch(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any
):
    fake_vendor.add_route("POST", "/v1/chat/completions", openai_reply("Answer"))
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    _, sock = await open_socket(alice_client, conversation.id)
    q1, a1 = await exchange(sock, "Hello", "c1")
    q2, a2 = await exchange(sock, "Tell me about cats", "c2")

    frames = await send(sock, {"type": "message.edit", "message_id": q2,
                               "content": "Tell me about dogs", "client_id": "e1"},
                        "message.completed")
    created = [f["message"] for f in frames if f["type"] == "message.created"]
    assert [(m["role"], m["parent_id"]) for m in created] == [
        ("user", a1), ("assistant", created[0]["id"])]
    assert created[0]["content"] == "Tell me about dogs"
    assert created[0]["extra"] == {"edited_from": q2}
    sent = history_of(fake_vendor.requests[-1])
    assert sent[-3:] == [("user", "Hello"), ("assistant", "Answer"),
                         ("user", "Tell me about dogs")]
    assert ("user", "Tell me about cats") not in sent

    # The next message continues the new branch.
    await exchange(sock, "And birds?", "c3")
    sent = history_of(fake_vendor.requests[-1])
    assert ("user", "Tell me about dogs") in sent and ("user", "Tell me about cats") not in sent

    # Editing the first message starts a second root.
    frames = await send(sock, {"type": "message.edit", "message_id": q1, "content": "Hi",
                               "client_id": "e2"}, "message.completed")
    root = next(f["message"] for f in frames if f["type"] == "message.created")
    assert root["parent_id"] is None
    assert history_of(fake_vendor.requests[-1])[-1] == ("user", "Hi")
    assert len([t for t in history_of(fake_vendor.requests[-1]) if t[0] != "system"]) == 1
    await sock.close()


async def test_it_moves_between_alternatives_on_every_socket(
    alice_client: Client, alice: Any, conversation: Conversation
):
    _, sock = await open_socket(alice_client, conversation.id)
    _, other = await open_socket(alice_client, conversation.id)
    question, first = await exchange(sock, "Hello there", "c1")
    await other.recv_until("message.completed")
    frames = await send(sock, {"type": "message.regenerate", "message_id": first,
                               "client_id": "r1"}, "message.completed")
    await other.recv_until("message.completed")
    second = frames[-1]["message"]["id"]

    await sock.send({"type": "branch.select", "message_id": first})
    for s in (sock, other):
        sync = (await s.recv_until("conversation.sync"))[-1]
        assert [m["id"] for m in sync["messages"]] == [question, first]
        assert sync["branches"][first] == [first, second]
    # The next message follows the branch now shown.
    _, reply = await exchange(sock, "Next", "c2")
    row = await db(Message.objects.select_related("parent").get)(pk=reply)
    assert str(row.parent.parent_id) == first
    await sock.close()
    await other.close()


async def test_it_refuses_bad_regenerate_and_edit_frames_and_stays_usable(
    alice_client: Client, alice: Any, bob: Any, demo_agent: Agent, conversation: Conversation
):
    demo_agent.options = {"delay": 0.01}
    await db(demo_agent.save)()
    theirs = await db(Conversation.objects.create)(owner=bob, agent=demo_agent)
    foreign = await db(Message.objects.create)(conversation=theirs, role="assistant", seq=1,
                                               content="not yours")
    _, sock = await open_socket(alice_client, conversation.id)
    question, answer = await exchange(sock, "Hello", "c1")
    before = await db(Message.objects.count)()
    bad = [
        ({"type": "message.regenerate", "message_id": question, "client_id": "x1"}, "invalid"),
        ({"type": "message.regenerate", "message_id": str(foreign.pk), "client_id": "x2"},
         "invalid"),
        ({"type": "message.regenerate", "message_id": "not-a-uuid", "client_id": "x3"},
         "invalid"),
        ({"type": "message.regenerate", "message_id": 7, "client_id": "x4"}, "invalid"),
        ({"type": "message.edit", "message_id": answer, "content": "x", "client_id": "x5"},
         "invalid"),
        ({"type": "message.edit", "message_id": question, "content": "   ", "client_id": "x6"},
         "invalid"),
        ({"type": "message.edit", "message_id": question, "content": "x" * 32_001,
          "client_id": "x7"}, "too_large"),
        ({"type": "branch.select", "message_id": str(foreign.pk)}, "invalid"),
        ({"type": "branch.select"}, "invalid"),
    ]
    for frame, code in bad:
        error = (await send(sock, frame, "error"))[-1]
        assert error["code"] == code, frame
        if "client_id" in frame:
            assert error["client_id"] == frame["client_id"]
    assert await db(Message.objects.count)() == before

    # While a reply streams, both are refused with run_active.
    await sock.send({"type": "message.send", "content": "Please write a long answer",
                     "client_id": "c2"})
    await sock.recv_until("message.delta")
    for frame in ({"type": "message.regenerate", "message_id": answer, "client_id": "y1"},
                  {"type": "message.edit", "message_id": question, "content": "again",
                   "client_id": "y2"}):
        error = (await send(sock, frame, "error"))[-1]
        assert error["code"] == "run_active"
    await sock.send({"type": "run.cancel"})
    await sock.recv_until("message.canceled")
    await sock.assert_usable()
    await sock.close()


# The API and the admin ------------------------------------------------------------------------


async def test_it_carries_the_tree_in_the_api_and_selects_a_branch(
    alice_client: Client, alice: Any, conversation: Conversation, bob: Any
):
    _, sock = await open_socket(alice_client, conversation.id)
    question, first = await exchange(sock, "Hello", "c1")
    frames = await send(sock, {"type": "message.regenerate", "message_id": first,
                               "client_id": "r1"}, "message.completed")
    second = frames[-1]["message"]["id"]

    def api() -> None:
        url = f"/api/v1/conversations/{conversation.id}"
        data = alice_client.get(url).json()
        assert [(m["id"], m["parent_id"]) for m in data["messages"]] == [
            (question, None), (first, question), (second, question)]
        assert data["active_path"] == [question, second]
        assert data["branches"][second] == [first, second]
        put = alice_client.put(f"{url}/branch", json.dumps({"message_id": first}),
                               content_type="application/json")
        assert put.status_code == 200
        assert put.json()["active_path"] == [question, first]
        assert alice_client.get(url).json()["active_path"] == [question, first]
        for body, status in (({"message_id": "nope"}, 422), ({"message_id": 3}, 422),
                             ({"leaf": first}, 422), ({"message_id": str(uuid4())}, 422)):
            bad = alice_client.put(f"{url}/branch", json.dumps(body),
                                   content_type="application/json")
            assert bad.status_code == status and bad.json()["error"]["code"] == "invalid"
        other = Client()
        other.force_login(bob)
        assert other.put(f"{url}/branch", json.dumps({"message_id": first}),
                         content_type="application/json").status_code == 404

    await db(api)()
    # Open sockets follow a branch picked through the API.
    sync = (await sock.recv_until("conversation.sync"))[-1]
    assert [m["id"] for m in sync["messages"]] == [question, first]
    await sock.close()


def test_it_shows_alternatives_in_the_admin_transcript(
    staff_client: Client, alice: Any, demo_agent: Agent
):
    conversation = Conversation.objects.create(owner=alice, agent=demo_agent)
    q = Message.objects.create(conversation=conversation, seq=1, role="user", content="Q?")
    a1 = Message.objects.create(conversation=conversation, seq=2, role="assistant",
                                parent=q, content="first reply")
    a2 = Message.objects.create(conversation=conversation, seq=3, role="assistant",
                                parent=q, content="second reply",
                                extra={"regenerated_from": str(a1.pk)})
    url = f"/admin/conversations/conversation/{conversation.pk}/change/"
    page = staff_client.get(url).content.decode()
    assert "second reply" in page and "first reply" not in page
    assert "2 / 2" in page and f"?branch={a1.pk}" in page and "Regenerated" in page
    page = staff_client.get(f"{url}?branch={a1.pk}").content.decode()
    assert "first reply" in page and "second reply" not in page and "1 / 2" in page
    # A reviewer's look at another branch does not move the user's.
    conversation.refresh_from_db()
    assert conversation.active_leaf_id is None
    assert staff_client.get(f"{url}?branch=garbage").status_code == 200
    assert a2.pk


# Forks: vendors that keep their own history --------------------------------------------------

APP = "app_1"
CONVERSATIONS = f"/v1/apps/{APP}/conversations"


def dimedove_stream(text: str, conversation_id: str) -> Any:
    return sse_script(
        sse({"id": "resp_1", "object": "response", "status": "in_progress",
             "conversation_id": conversation_id}, event="response.created"),
        sse({"type": "response.output_text.delta", "delta": text, "output_index": 0,
             "content_index": 0}, event="response.output_text.delta"),
        sse({"id": "resp_1", "status": "completed"}, event="response.completed"),
    )


def vendor_conversation(conversation_id: str) -> Any:
    return json_script({"id": conversation_id, "object": "conversation",
                        "created_at": 1709712000, "external_user_id": None, "title": None,
                        "metadata": {}})


async def test_it_forks_a_conversation_whose_vendor_keeps_the_history(
    alice_client: Client, alice: Any, dimedove_agent: Agent, fake_vendor: Any
):
    fake_vendor.add_route("POST", CONVERSATIONS, vendor_conversation("conv_1"))
    fake_vendor.add_route("POST", f"{CONVERSATIONS}/conv_1", dimedove_stream("One", "conv_1"))
    conversation = await db(Conversation.objects.create)(owner=alice, agent=dimedove_agent)
    _, sock = await open_socket(alice_client, conversation.id)
    assert sock.sync["conversation"]["capabilities"]["branches_in_place"] is False
    q1, a1 = await exchange(sock, "Where is my order?", "c1")

    fake_vendor.add_route("POST", CONVERSATIONS, vendor_conversation("conv_2"))
    fake_vendor.add_route("POST", f"{CONVERSATIONS}/conv_2", dimedove_stream("Two", "conv_2"))
    frames = await send(sock, {"type": "message.regenerate", "message_id": a1,
                               "client_id": "r1"}, "conversation.forked")
    fork_id = frames[-1]["conversation"]["id"]
    assert frames[-1]["conversation"]["forked_from"] == str(conversation.id)
    assert frames[-1]["client_id"] == "r1"
    await wait_for_no_runs()

    def check() -> None:
        fork = Conversation.objects.get(pk=fork_id)
        assert fork.forked_from_id == conversation.id
        assert fork.vendor_conversation_id == "conv_2"  # a fresh vendor conversation
        rows = list(fork.messages.order_by("seq").values_list("role", "content", "status"))
        assert rows == [("user", "Where is my order?", "completed"),
                        ("assistant", "Two", "completed")]
        # The fork's page links back to the original.
        page = alice_client.get(f"/c/{fork_id}/").content.decode()
        assert f'href="/c/{conversation.id}/"' in page
        # The original is untouched.
        assert list(conversation.messages.order_by("seq").values_list("content", flat=True)) \
            == ["Where is my order?", "One"]

    await db(check)()
    # The repeat of the frame points at the same fork, without a second run.
    frames = await send(sock, {"type": "message.regenerate", "message_id": a1,
                               "client_id": "r1"}, "conversation.forked")
    assert frames[-1]["conversation"]["id"] == fork_id
    creations = [r for r in fake_vendor.requests if r.path == CONVERSATIONS]
    assert len(creations) == 2
    await sock.close()
