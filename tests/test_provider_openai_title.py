"""The OpenAI-compatible `title_model` option (issue 11 §1, docs/providers.md): one extra
non-streaming completion names an untitled conversation after its first reply, against a real
loopback vendor."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from channels.db import database_sync_to_async

from conversations.events import RunCompleted, TextDelta, TitleGenerated
from conversations.models import Conversation
from conversations.providers import openai
from conversations.providers.base import ChatTurn, VendorError
from conversations.providers.openai import OpenAIProvider, clean_title
from tests.fakevendor import FakeVendor, Pause, Script, json_script, openai_chunk, sse, sse_script
from tests.providers_helpers import AgentSpec
from tests.wsclient import open_socket, wait_for_no_runs

db = database_sync_to_async
ROUTE = "/v1/chat/completions"
TOKEN_ENV = "CHATSITE_TEST_OPENAI_TITLE_TOKEN"
TOKEN = "sk-title-secret-4242"

AGENT = AgentSpec(OpenAIProvider, slug="gpt", options={"model": "gpt-test"},
                  token_env=TOKEN_ENV, path="/v1/", message="Où est mon colis A-1042 ?")
make_request, collect = AGENT.request, AGENT.collect

REPLY = sse_script(sse(openai_chunk("Il arrive demain.")), sse(openai_chunk(finish_reason="stop")),
                   sse("[DONE]"))


def completion(content: object) -> Script:
    return json_script({
        "id": "chatcmpl-title", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
    })


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


async def test_it_asks_the_title_model_after_the_first_reply(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", ROUTE, [REPLY, completion('"Suivi du colis A-1042."')])

    events = await collect(make_request(fake_vendor, title_model="gpt-mini"))

    assert events == [
        TextDelta("Il arrive demain."),
        TitleGenerated({"und": "Suivi du colis A-1042"}),
        RunCompleted("stop"),
    ]
    reply, title = fake_vendor.requests
    assert reply.json()["model"] == "gpt-test" and reply.json()["stream"] is True
    assert (title.method, title.path) == ("POST", ROUTE)
    assert title.headers["authorization"] == f"Bearer {TOKEN}"
    assert title.json() == {
        "model": "gpt-mini",
        "messages": [
            {"role": "system", "content": openai.TITLE_PROMPT},
            {"role": "user", "content": "Où est mon colis A-1042 ?"},
        ],
        "stream": False,
    }
    assert "at most 60 characters" in openai.TITLE_PROMPT
    assert "same language as the message" in openai.TITLE_PROMPT


async def test_it_names_a_backend_that_ignored_stream_too(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", ROUTE, [completion("Tout d'un coup."), completion("Colis")])

    events = await collect(make_request(fake_vendor, title_model="gpt-mini"))

    assert events == [TextDelta("Tout d'un coup."), TitleGenerated({"und": "Colis"}),
                      RunCompleted("stop")]


@pytest.mark.parametrize("title_answer", [
    json_script({"error": {"message": "overloaded"}}, status=500),
    json_script({"error": {"message": f"Incorrect API key provided: {TOKEN}"}}, status=401),
    json_script({"choices": []}),
    completion(None),
    completion("   \n"),
    Script(status=200, headers={"Content-Type": "application/json"}, chunks=[b"<html>oops"],
           framing="length"),
])
async def test_it_completes_the_reply_when_the_title_call_fails(
    fake_vendor: FakeVendor, caplog: pytest.LogCaptureFixture, title_answer: Script
) -> None:
    fake_vendor.add_route("POST", ROUTE, [REPLY, title_answer])

    with caplog.at_level(logging.INFO, logger="conversations.providers.openai"):
        events = await collect(make_request(fake_vendor, title_model="gpt-mini"))

    assert events == [TextDelta("Il arrive demain."), RunCompleted("stop")]
    assert len(fake_vendor.requests) == 2
    [record] = [r for r in caplog.records if r.name == "conversations.providers.openai"]
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "OpenAI title for agent gpt" in record.getMessage()
    assert TOKEN not in caplog.text


async def test_it_gives_up_on_a_title_call_that_hangs(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(openai, "TITLE_SECONDS", 0.3)
    hang = Script(status=200, headers={"Content-Type": "application/json"},
                  chunks=[Pause(3.0), b"{}"], framing="length")
    fake_vendor.add_route("POST", ROUTE, [REPLY, hang])

    with caplog.at_level(logging.INFO, logger="conversations.providers.openai"):
        events = await collect(make_request(fake_vendor, title_model="gpt-mini"))

    assert events == [TextDelta("Il arrive demain."), RunCompleted("stop")]
    assert "(TimeoutError)" in caplog.text


@pytest.mark.parametrize("request_fields", [
    {},  # no title_model
    {"title_model": ""},
    {"title_model": "gpt-mini", "turns": [ChatTurn("user", "Hi"), ChatTurn("assistant", "Hey")]},
    {"title_model": "gpt-mini", "title": "Parcel"},
])
async def test_it_makes_no_title_call_unless_first_and_untitled(
    fake_vendor: FakeVendor, request_fields: dict[str, object]
) -> None:
    fake_vendor.add_route("POST", ROUTE, [REPLY, completion("Never asked")])

    events = await collect(make_request(fake_vendor, **request_fields))  # type: ignore[arg-type]

    assert events == [TextDelta("Il arrive demain."), RunCompleted("stop")]
    assert len(fake_vendor.requests) == 1


async def test_it_makes_no_title_call_for_a_failed_reply(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", ROUTE, [
        sse_script(sse({"error": {"message": "context too long"}})), completion("Never asked")])

    events = await collect(make_request(fake_vendor, title_model="gpt-mini"))

    assert [type(e).__name__ for e in events] == ["RunFailed"]
    assert len(fake_vendor.requests) == 1


@pytest.mark.parametrize("value", [42, ["gpt-mini"], {"name": "gpt-mini"}, True])
async def test_it_refuses_a_title_model_that_is_not_a_string(
    fake_vendor: FakeVendor, value: object
) -> None:
    assert OpenAIProvider.validate_options({"model": "m", "title_model": value}) == [
        f"option 'title_model' must be a model name, not {value!r}"]
    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor, title_model=value))
    assert caught.value.code == "agent_misconfigured"
    assert fake_vendor.requests == []
    assert OpenAIProvider.validate_options({"model": "m", "title_model": "gpt-mini"}) == []


@pytest.mark.parametrize(("answer", "title"), [
    ("Parcel tracking", "Parcel tracking"),
    ('"Suivi du colis."\n\nHere is why I chose it.', "Suivi du colis"),
    ("Title: **Refund request**", "Refund request"),
    ("<think>The user asks about\na parcel.</think>\n« Colis perdu »", "Colis perdu"),
    ("  \n\u201cDélai de livraison\u201d  ", "Délai de livraison"),
    ("A very long title that goes on and on about the customer's late parcel and refund",
     "A very long title that goes on and on about the customer's…"),
    ("", ""),
])
def test_it_cleans_the_models_answer(answer: str, title: str) -> None:
    assert clean_title(answer) == title
    assert len(clean_title(answer)) <= openai.TITLE_MAX_CHARS


@pytest.mark.django_db(transaction=True)
async def test_it_stores_the_title_through_the_relay(
    alice_client: Any, alice: Any, openai_agent: Any, fake_vendor: FakeVendor
) -> None:
    openai_agent.options = {"model": "gpt-test", "title_model": "gpt-mini"}
    await db(openai_agent.save)()
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", ROUTE, [REPLY, completion("Colis en retard")])
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "Où est mon colis A-1042 ?"})
    await sock.recv_until("message.completed")
    updated = await sock.recv_until("conversation.updated")
    assert updated[-1]["conversation"]["display_title"] == "Colis en retard"
    await wait_for_no_runs()
    await sock.close()
    await db(conversation.refresh_from_db)()
    # The vendor title outranks the one taken from the first message.
    assert conversation.generated_titles == {"und": "Colis en retard"}
    assert conversation.auto_title == "Où est mon colis A-1042 ?"
    assert conversation.display_title() == "Colis en retard"
    assert [r.json()["model"] for r in fake_vendor.requests] == ["gpt-test", "gpt-mini"]
