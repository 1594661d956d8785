"""The Loop Health provider against a real loopback vendor (docs/providers/loop.md).

Bodies follow the vendor's documented shapes (docs/providers/loop.md): a
`Message` is `{id, conversation_id, role, content, tool_calls, token_usage, metadata, created_at}`
and errors are `{"error", "message"}`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conversations.events import (
    ErrorCode,
    ProviderEvent,
    RunCompleted,
    RunFailed,
    TextDelta,
    ToolCallCompleted,
    ToolCallResult,
    ToolCallStarted,
    Usage,
    VendorConversation,
    VendorExtra,
)
from conversations.providers.base import AgentConfig, RunRequest, VendorError
from conversations.providers.loop import LoopProvider
from tests.fakevendor import FakeVendor, Pause, Script, json_script
from tests.providers_helpers import AgentSpec

TOKEN_ENV = "CHATSITE_TEST_LOOP_TOKEN"
CONVERSATION = "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f"
USER_ID = "0b9d6c1e-2f3a-4b5c-8d7e-6f5a4b3c2d1e"
ASSISTANT_ID = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"
CREATE = "/v1/conversations"
SEND = f"/v1/conversations/{CONVERSATION}/messages"
USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
IDS = {
    "conversation_id": CONVERSATION,
    "user_message_id": USER_ID,
    "assistant_message_id": ASSISTANT_ID,
}


def message(
    role: str,
    content: str,
    *,
    id: str,
    tool_calls: list[Any] | None = None,
    token_usage: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "conversation_id": CONVERSATION,
        "role": role,
        "content": content,
        "tool_calls": tool_calls,
        "token_usage": token_usage,
        "metadata": metadata or {},
        "created_at": "2025-06-01T12:00:00.000Z",
    }


def reply(content: str = "Hello! How can I help?", **assistant: Any) -> dict[str, Any]:
    return {
        "message": message("user", "Hello?", id=USER_ID),
        "assistant_message": message("assistant", content, id=ASSISTANT_ID, **assistant),
    }


def created(**fields: Any) -> dict[str, Any]:
    return {
        "id": CONVERSATION,
        "user_id": "user_2x",
        "brand_id": "brand_1",
        "started_at": "2025-06-01T12:00:00.000Z",
        "last_active_at": "2025-06-01T12:00:00.000Z",
        "model": "claude-sonnet-4-6",
        "title": None,
        "context": {},
        **fields,
    }


AGENT = AgentSpec(
    LoopProvider, slug="loop", token_env=TOKEN_ENV, vendor_conversation_id=CONVERSATION
)
agent, make_request = AGENT.agent, AGENT.request
provider, collect = AGENT.make_provider, AGENT.collect


async def run(vendor: FakeVendor, answer: Any, **request: Any) -> list[ProviderEvent]:
    vendor.add_route("POST", SEND, answer if isinstance(answer, Script) else json_script(answer))
    return await collect(make_request(vendor, **request))


async def failure(vendor: FakeVendor, answer: Script, **request: Any) -> VendorError:
    with pytest.raises(VendorError) as caught:
        await run(vendor, answer, **request)
    return caught.value


# Replies -------------------------------------------------------------------------------------


async def test_it_turns_the_json_reply_into_one_delta_usage_and_completion(
    fake_vendor: FakeVendor,
) -> None:
    events = await run(fake_vendor, reply(token_usage=USAGE))

    assert events == [
        TextDelta("Hello! How can I help?"),
        Usage(12, 3, 15),
        VendorExtra("vendor_message_ids", IDS),
        RunCompleted(None),
    ]


async def test_it_creates_the_vendor_conversation_first(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "loop-token-123")
    fake_vendor.add_route("POST", CREATE, json_script(created(title="Refund"), status=201))

    events = await run(
        fake_vendor, reply(), vendor_conversation_id="", title="Refund", model="gpt-4o-mini"
    )

    assert events[0] == VendorConversation(CONVERSATION)
    assert events[1:] == [
        TextDelta("Hello! How can I help?"),
        VendorExtra("vendor_message_ids", IDS),
        RunCompleted(None),
    ]
    create, send = fake_vendor.requests
    assert (create.method, create.path) == ("POST", CREATE)
    assert create.headers["authorization"] == "Bearer loop-token-123"
    assert create.headers["content-type"] == "application/json"
    assert create.json() == {"model": "gpt-4o-mini", "title": "Refund"}
    assert (send.method, send.path) == ("POST", SEND)
    assert send.headers["authorization"] == "Bearer loop-token-123"


async def test_it_creates_without_model_or_title_when_unset(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", CREATE, json_script(created(), status=201))

    await run(fake_vendor, reply(), vendor_conversation_id="")

    assert fake_vendor.requests[0].json() == {}


async def test_it_posts_to_the_existing_conversation_without_creating(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "loop-token-123")

    events = await run(fake_vendor, reply(), message="What's my HbA1c?")

    assert VendorConversation(CONVERSATION) not in events
    [send] = fake_vendor.requests
    assert (send.method, send.path) == ("POST", SEND)
    assert send.headers["authorization"] == "Bearer loop-token-123"
    assert send.json() == {"role": "user", "content": "What's my HbA1c?", "mode": "chat-completion"}


async def test_it_accepts_a_base_url_ending_in_v1(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", SEND, json_script(reply()))
    request = RunRequest(
        agent=agent(fake_vendor, base_url=f"{fake_vendor.url}/v1/"),
        conversation_id="c1",
        message="Hi",
        vendor_conversation_id=CONVERSATION,
    )

    events = await collect(request)

    assert events[-1] == RunCompleted(None)
    assert fake_vendor.requests[0].path == SEND


async def test_it_reports_tool_calls_in_the_openai_shape_and_tolerates_others(
    fake_vendor: FakeVendor,
) -> None:
    tool_calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_lab_results", "arguments": '{"test": "hba1c"}'},
        },
        {"id": "call_b", "name": "book_visit", "input": {"day": "mardi"}, "result": {"ok": True}},
        {"function": {"name": "no_id"}},
        "opaque",
    ]

    events = await run(fake_vendor, reply("Your HbA1c is 5.4%.", tool_calls=tool_calls))

    assert events == [
        TextDelta("Your HbA1c is 5.4%."),
        VendorExtra("vendor_tool_calls", tool_calls),
        ToolCallStarted("call_a", "get_lab_results"),
        ToolCallCompleted("call_a", "get_lab_results", '{"test": "hba1c"}'),
        ToolCallStarted("call_b", "book_visit"),
        ToolCallCompleted("call_b", "book_visit", '{"day": "mardi"}'),
        ToolCallResult("call_b", {"ok": True}),
        ToolCallStarted("call_2", "no_id"),
        ToolCallCompleted("call_2", "no_id", ""),
        ToolCallStarted("call_3", ""),
        ToolCallCompleted("call_3", "", "opaque"),
        VendorExtra("vendor_message_ids", IDS),
        RunCompleted(None),
    ]


async def test_it_keeps_the_vendor_metadata_and_reads_counts_sent_as_floats(
    fake_vendor: FakeVendor,
) -> None:
    usage = {"prompt_tokens": 12.0, "completion_tokens": 3.0, "total_tokens": 15.0}

    events = await run(fake_vendor, reply("Hi", token_usage=usage, metadata={"model": "gpt-4o"}))

    assert events == [
        TextDelta("Hi"),
        Usage(12, 3, 15),
        VendorExtra("vendor_message_ids", IDS),
        VendorExtra("vendor_metadata", {"model": "gpt-4o"}),
        RunCompleted(None),
    ]


async def test_it_ends_an_append_without_reply_cleanly(fake_vendor: FakeVendor) -> None:
    answer = {"message": message("user", "Note: fasting", id=USER_ID), "assistant_message": None}

    events = await run(fake_vendor, answer, message="Note: fasting", mode="append")

    assert events == [
        VendorExtra("vendor_message_ids", {**IDS, "assistant_message_id": None}),
        RunCompleted(None),
    ]
    assert fake_vendor.requests[0].json() == {
        "role": "user",
        "content": "Note: fasting",
        "mode": "append",
    }


async def test_it_fails_a_chat_completion_that_brings_no_reply(fake_vendor: FakeVendor) -> None:
    answer = {"message": message("user", "Hello?", id=USER_ID), "assistant_message": None}

    events = await run(fake_vendor, answer)

    assert events[-1] == RunFailed(
        ErrorCode.VENDOR_ERROR, "Loop Health saved your message but sent no reply."
    )


# Errors --------------------------------------------------------------------------------------


async def test_it_reports_a_lost_conversation_on_404(fake_vendor: FakeVendor) -> None:
    body = {"error": "not_found", "message": "Conversation not found"}

    error = await failure(fake_vendor, json_script(body, status=404))

    assert error.code == ErrorCode.VENDOR_CONVERSATION_LOST
    assert error.message == (
        "Loop Health no longer has this conversation. Start a new conversation to continue."
    )
    assert len(fake_vendor.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, {"error": "unauthorized", "message": "Invalid token"}, ErrorCode.VENDOR_AUTH),
        (403, {"error": "forbidden", "message": "Brand context required"}, ErrorCode.VENDOR_AUTH),
        (500, {"error": "internal", "message": "Model failed"}, ErrorCode.VENDOR_UNAVAILABLE),
    ],
    ids=["401", "403", "500"],
)
async def test_it_maps_error_statuses_with_the_vendor_message(
    fake_vendor: FakeVendor, status: int, body: dict[str, str], code: str
) -> None:
    error = await failure(fake_vendor, json_script(body, status=status))

    assert error.code == code
    assert error.status == status
    assert body["message"] in error.message
    # Never retried: a second POST would send the user's message twice.
    assert len(fake_vendor.requests) == 1


async def test_it_names_the_token_variable_when_create_is_refused(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route(
        "POST",
        CREATE,
        json_script({"error": "forbidden", "message": "Brand context required"}, status=403),
    )

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor, vendor_conversation_id=""))

    assert caught.value.code == ErrorCode.VENDOR_AUTH
    assert TOKEN_ENV in caught.value.message
    assert "Brand context required" in caught.value.message
    assert [r.path for r in fake_vendor.requests] == [CREATE]


@pytest.mark.parametrize(
    "answer",
    [
        Script(headers={"Content-Type": "application/json"}, chunks=[b'{"message": {'],
               framing="length"),
        json_script({"message": message("user", "Hello?", id=USER_ID)}),
        json_script({"message": {}, "assistant_message": "Hi"}),
        json_script(reply(tool_calls={"id": "call_a"})),
        json_script(["not", "an", "object"]),
    ],
    ids=["not-json", "no-assistant-message", "text-assistant", "tool-calls-object", "list"],
)
async def test_it_reports_a_malformed_reply_as_a_protocol_error(
    fake_vendor: FakeVendor, answer: Script
) -> None:
    error = await failure(fake_vendor, answer)

    assert error.code == ErrorCode.VENDOR_PROTOCOL


async def test_it_reports_a_created_conversation_without_id(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", CREATE, json_script({"title": "x"}, status=201))

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor, vendor_conversation_id=""))

    assert caught.value.code == ErrorCode.VENDOR_PROTOCOL
    assert [r.path for r in fake_vendor.requests] == [CREATE]


async def test_it_stops_a_slow_reply_within_a_second_when_cancelled(
    fake_vendor: FakeVendor,
) -> None:
    body = json_script(reply()).chunks[0]
    slow = Script(
        headers={"Content-Type": "application/json"}, chunks=[Pause(10), body], framing="length"
    )
    fake_vendor.add_route("POST", SEND, slow)
    task = asyncio.create_task(collect(make_request(fake_vendor)))
    deadline = time.monotonic() + 2
    while not fake_vendor.requests and time.monotonic() < deadline:
        await asyncio.sleep(0.01)

    started = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert task.cancelled()
    assert time.monotonic() - started < 1
    assert fake_vendor.requests[0].client_closed.wait(1)


# Deleting ------------------------------------------------------------------------------------


async def test_it_deletes_the_vendor_conversation(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "loop-token-123")
    fake_vendor.add_route(
        "DELETE", f"/v1/conversations/{CONVERSATION}",
        json_script({"deleted": True, "id": CONVERSATION}),
    )

    await provider().delete_conversation(agent(fake_vendor), CONVERSATION)

    [request] = fake_vendor.requests
    assert (request.method, request.path) == ("DELETE", f"/v1/conversations/{CONVERSATION}")
    assert request.headers["authorization"] == "Bearer loop-token-123"


async def test_it_treats_a_404_on_delete_as_already_deleted(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route(
        "DELETE", f"/v1/conversations/{CONVERSATION}",
        json_script({"error": "not_found", "message": "Conversation not found"}, status=404),
    )

    await provider().delete_conversation(agent(fake_vendor), CONVERSATION)

    assert len(fake_vendor.requests) == 1


async def test_it_raises_when_delete_fails(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route(
        "DELETE", f"/v1/conversations/{CONVERSATION}",
        json_script({"error": "internal", "message": "Database unavailable"}, status=500),
    )

    with pytest.raises(VendorError) as caught:
        await provider().delete_conversation(agent(fake_vendor), CONVERSATION)

    assert caught.value.code == ErrorCode.VENDOR_UNAVAILABLE
    assert "Database unavailable" in caught.value.message


# Options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, []),
        ({"model": "claude-sonnet-4-6", "mode": "append"}, []),
        ({"model": "", "mode": ""}, []),
        ({"model": "gpt-5"}, ["option 'model' must be one of"]),
        ({"mode": "stream"}, ["option 'mode' must be one of"]),
        ({"model": 4, "mode": None}, ["option 'model' must be one of"]),
    ],
)
def test_it_validates_options(options: dict[str, Any], problems: list[str]) -> None:
    found = LoopProvider.validate_options(options)

    assert len(found) == len(problems)
    for line, start in zip(found, problems, strict=True):
        assert line.startswith(start)


def test_it_defaults_to_the_loop_health_host() -> None:
    bare = AgentConfig(slug="loop", provider="loop")

    assert LoopProvider()._root(bare) == "https://ai.platform.loop.health"
