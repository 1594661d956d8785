"""The AG-Kit / CloudBase provider against a real loopback vendor (docs/providers/agkit.md).

AG-Kit streams are written as docs.ag-kit.dev shows them (`data: {...}` lines, `data: [DONE]`);
AG-UI streams as cloudbase-agent-server writes them (`data: {json}` per event, no [DONE]).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from conversations.events import (
    ErrorCode,
    InterruptRequested,
    ProviderEvent,
    ReasoningDelta,
    RunCompleted,
    RunFailed,
    TextDelta,
    ToolCallCompleted,
    ToolCallDelta,
    ToolCallResult,
    ToolCallStarted,
    Usage,
    VendorConversation,
    VendorExtra,
)
from conversations.providers.agkit import AGKitProvider
from conversations.providers.base import ChatTurn, VendorError
from tests.fakevendor import Chunk, FakeVendor, Hangup, Pause, json_script, sse, sse_script
from tests.providers_helpers import AgentSpec

AGENT_ID = "agent-test-1"
ROUTE = f"/v1/aibot/bots/{AGENT_ID}/send-message"
TOKEN_ENV = "CHATSITE_TEST_CLOUDBASE_TOKEN"
CONVERSATION = "3f0c1d9e-0000-4000-8000-000000000001"
DONE = sse("[DONE]")
NEW = VendorConversation(CONVERSATION)
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


AGENT = AgentSpec(
    AGKitProvider,
    slug="cloudbase",
    options={"agent_id": AGENT_ID},
    token_env=TOKEN_ENV,
    path="/",
    conversation_id=CONVERSATION,
)
make_request, collect = AGENT.request, AGENT.collect


async def run(vendor: FakeVendor, *chunks: Chunk, **request: Any) -> list[ProviderEvent]:
    vendor.add_route("POST", ROUTE, sse_script(*chunks))
    return await collect(make_request(vendor, **request))


def agui(kind: str, **fields: Any) -> bytes:
    return sse({"type": kind, **fields})


# AG-Kit dialect ---------------------------------------------------------------------------------


async def test_it_streams_text_until_done(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse({"type": "text", "content": "Hel"}),
        Pause(0.05),
        sse({"type": "text", "content": "lo, wörld"}),
        DONE,
    )

    assert events == [NEW, TextDelta("Hel"), TextDelta("lo, wörld"), RunCompleted()]


async def test_it_reads_events_split_across_writes_with_crlf(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route(
        "POST",
        ROUTE,
        sse_script(
            b'data: {"type": "text", "con',
            b'tent": "Hello"}\r',
            b"\n\r\n",
            sse({"type": "text", "content": "!"}, crlf=True),
            b"data: [DO",
            b"NE]\r\n\r\n",
            chunk_delay=0.02,
        ),
    )

    events = await collect(make_request(fake_vendor))

    assert events == [NEW, TextDelta("Hello"), TextDelta("!"), RunCompleted()]


async def test_it_sends_the_agent_path_token_and_full_history(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "cloudbase-token-123")
    history = [
        ChatTurn("user", "Hi"),
        ChatTurn("assistant", "Hello! How can I help?"),
        ChatTurn("tool", '{"ok": true}'),
        ChatTurn("assistant", ""),
    ]

    await run(
        fake_vendor,
        DONE,
        message="Weather in Paris?",
        turns=history,
        tools=[WEATHER_TOOL, {"name": "now"}],
    )

    [request] = fake_vendor.requests
    assert (request.method, request.path) == ("POST", ROUTE)
    assert request.headers["authorization"] == "Bearer cloudbase-token-123"
    assert request.headers["accept"] == "text/event-stream"
    body = request.json()
    run_id = body.pop("runId")
    assert uuid.UUID(run_id)
    assert body == {
        "messages": [
            {"id": f"{CONVERSATION}-0", "role": "user", "content": "Hi"},
            {"id": f"{CONVERSATION}-1", "role": "assistant", "content": "Hello! How can I help?"},
            {"id": f"{CONVERSATION}-4", "role": "user", "content": "Weather in Paris?"},
        ],
        "conversationId": CONVERSATION,
        "tools": [
            WEATHER_TOOL,
            {"name": "now", "description": "", "parameters": {"type": "object", "properties": {}}},
        ],
        "threadId": CONVERSATION,
        "context": [],
        "state": {},
        "forwardedProps": {},
    }


async def test_it_sends_only_the_new_message_to_an_agkit_agent(fake_vendor: FakeVendor) -> None:
    # AG-Kit keeps the history by conversationId: "messages" carries only the delta.
    await run(
        fake_vendor,
        DONE,
        message="And tomorrow?",
        turns=[ChatTurn("user", "Weather?"), ChatTurn("assistant", "Sunny.")],
        vendor_conversation_id="conversation-xxx",
        protocol="agkit",
    )

    assert fake_vendor.requests[0].json() == {
        "messages": [{"id": f"{CONVERSATION}-2", "role": "user", "content": "And tomorrow?"}],
        "conversationId": "conversation-xxx",
        "tools": [],
    }


async def test_it_honours_the_history_option(fake_vendor: FakeVendor) -> None:
    await run(fake_vendor, DONE, turns=[ChatTurn("user", "Hi")], protocol="agkit", history="full")

    assert [m["content"] for m in fake_vendor.requests[0].json()["messages"]] == ["Hi", "Hello?"]


async def test_it_keeps_a_stored_vendor_conversation(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse({"type": "text", "content": "Hi"}),
        DONE,
        vendor_conversation_id="conversation-xxx",
    )

    assert events == [TextDelta("Hi"), RunCompleted()]
    body = fake_vendor.requests[0].json()
    assert (body["conversationId"], body["threadId"]) == ("conversation-xxx", "conversation-xxx")


async def test_it_relays_tool_calls_with_their_results(fake_vendor: FakeVendor) -> None:
    # The exact sequence of the send-message reference page.
    events = await run(
        fake_vendor,
        sse({"type": "tool-call-start", "toolCallId": "call_123", "toolCallName": "search"}),
        sse({"type": "tool-call-args", "toolCallId": "call_123", "delta": '{"query": '}),
        sse({"type": "tool-call-args", "toolCallId": "call_123", "delta": '"weather"}'}),
        sse({"type": "tool-call-end", "toolCallId": "call_123"}),
        sse({"type": "tool-result", "result": "Sunny, 25°C", "toolCallId": "call_123"}),
        sse({"type": "text", "content": "It is sunny."}),
        DONE,
    )

    assert events == [
        NEW,
        ToolCallStarted("call_123", "search"),
        ToolCallDelta("call_123", '{"query": '),
        ToolCallDelta("call_123", '"weather"}'),
        ToolCallCompleted("call_123", "search", '{"query": "weather"}'),
        ToolCallResult("call_123", "Sunny, 25°C"),
        TextDelta("It is sunny."),
        RunCompleted(),
    ]


async def test_it_completes_a_tool_call_left_open_at_done(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse({"type": "tool-call-start", "toolCallId": "c1", "toolCallName": "lookup"}),
        sse({"type": "tool-call-args", "toolCallId": "c1", "delta": "{}"}),
        DONE,
    )

    assert events[-2:] == [ToolCallCompleted("c1", "lookup", "{}"), RunCompleted()]


async def test_it_pauses_on_an_interrupt(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse({"type": "text", "content": "I need approval."}),
        sse(
            {
                "type": "interrupt",
                "id": "interrupt_abc123",
                "reason": "tool_approval",
                "payload": {"tool": "delete_user", "args": {"id": 7}},
            }
        ),
        Pause(10),  # the provider stops at the interrupt: nothing after it is awaited
        DONE,
    )

    assert events == [
        NEW,
        TextDelta("I need approval."),
        InterruptRequested(
            "interrupt_abc123",
            "tool_approval",
            {"tool": "delete_user", "args": {"id": 7}},
            {"dialect": "agkit"},
        ),
    ]
    assert fake_vendor.requests[0].client_closed.wait(1)


async def test_it_answers_an_agkit_interrupt_with_one_resume_object(
    fake_vendor: FakeVendor,
) -> None:
    resume = {
        "interrupt_id": "interrupt_abc123",
        "payload": {"approved": True},
        "reason": "tool_approval",
        "vendor_data": {"dialect": "agkit"},
    }

    events = await run(
        fake_vendor,
        sse({"type": "text", "content": "Deleted."}),
        DONE,
        message='{"approved": true}',
        turns=[ChatTurn("user", "Delete user 7"), ChatTurn("assistant", "I need approval.")],
        vendor_conversation_id="conversation-xxx",
        resume=resume,
    )

    assert events == [TextDelta("Deleted."), RunCompleted()]
    body = fake_vendor.requests[0].json()
    # The payload is a JSON string, as AG-Kit's ResumeMessage types it and its client sends it;
    # the answer is not repeated as a user message, and AG-Kit keeps the history itself.
    assert body["resume"] == {"interruptId": "interrupt_abc123", "payload": '{"approved": true}'}
    assert body["messages"] == []
    assert body["conversationId"] == "conversation-xxx"


async def test_it_fails_on_an_agent_error_inside_a_200_stream(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse({"type": "text", "content": "Partial "}),
        sse({"code": "AGENT_REQUEST_LLM_ERROR", "message": "The model did not answer"}),
        sse({"type": "text", "content": "never seen"}),
        DONE,
    )

    assert events == [
        NEW,
        TextDelta("Partial "),
        RunFailed(
            ErrorCode.VENDOR_ERROR,
            "The model did not answer (AGENT_REQUEST_LLM_ERROR)",
            {"code": "AGENT_REQUEST_LLM_ERROR"},
        ),
    ]


async def test_it_fails_on_an_agent_error_json_body_with_200(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route(
        "POST",
        ROUTE,
        json_script(
            {"code": "AGENT_GET_INFO_ERROR", "message": "Agent not published", "requestId": "r9"}
        ),
    )

    events = await collect(make_request(fake_vendor))

    assert events == [
        NEW,
        RunFailed(
            ErrorCode.VENDOR_ERROR,
            "Agent not published (AGENT_GET_INFO_ERROR)",
            {"code": "AGENT_GET_INFO_ERROR", "request_id": "r9"},
        ),
    ]


async def test_it_fails_on_an_agkit_error_event(fake_vendor: FakeVendor) -> None:
    events = await run(fake_vendor, sse({"type": "error", "error": "Tool crashed"}), DONE)

    assert events == [NEW, RunFailed(ErrorCode.VENDOR_ERROR, "Tool crashed", {})]


async def test_it_fails_on_an_sse_error_event(fake_vendor: FakeVendor) -> None:
    events = await run(fake_vendor, sse("Gateway overloaded", event="error"), DONE)

    assert events == [NEW, RunFailed(ErrorCode.VENDOR_ERROR, "Gateway overloaded", {})]


async def test_it_fails_on_an_event_that_is_not_an_object(fake_vendor: FakeVendor) -> None:
    events = await run(fake_vendor, sse("[1, 2]"), DONE)

    assert events == [
        NEW,
        RunFailed(
            ErrorCode.VENDOR_PROTOCOL,
            "The vendor sent an event that is not a JSON object: '[1, 2]'",
        ),
    ]


async def test_it_fails_on_malformed_json(fake_vendor: FakeVendor) -> None:
    events = await run(fake_vendor, sse('{"type": "te'), DONE)

    assert events == [
        NEW,
        RunFailed(
            ErrorCode.VENDOR_PROTOCOL,
            'The vendor sent an event that is not valid JSON: \'{"type": "te\'',
        ),
    ]


async def test_it_raises_on_a_4xx_json_error_body(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_vendor.add_route(
        "POST",
        ROUTE,
        [
            json_script(
                {
                    "error": {"code": "INVALID_REQUEST", "message": "Invalid field 'resume'"},
                    "requestId": "r1",
                },
                status=400,
            ),
            json_script({"code": "INVALID_ENV_ID", "message": "Invalid token"}, status=401),
        ],
    )

    with pytest.raises(VendorError) as bad:
        await collect(make_request(fake_vendor))
    with pytest.raises(VendorError) as auth:
        await collect(make_request(fake_vendor))

    assert bad.value.code == ErrorCode.VENDOR_BAD_REQUEST
    assert bad.value.message == "The vendor answered 400: Invalid field 'resume'"
    assert auth.value.code == ErrorCode.VENDOR_AUTH
    assert TOKEN_ENV in auth.value.message
    assert "Invalid token" in auth.value.message
    assert len(fake_vendor.requests) == 2  # one request per run: nothing retried


async def test_it_ends_without_a_terminal_event_when_done_never_comes(
    fake_vendor: FakeVendor,
) -> None:
    events = await run(
        fake_vendor,
        sse({"type": "text", "content": "Hel"}),
        sse({"type": "text", "content": "lo"}),
        Hangup(),
    )

    assert events == [NEW, TextDelta("Hel"), TextDelta("lo")]


async def test_it_stops_within_a_second_when_cancelled(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route(
        "POST",
        ROUTE,
        sse_script(sse({"type": "text", "content": "Thinking"}), Pause(10), DONE),
    )
    received: list[ProviderEvent] = []
    first_text = asyncio.Event()

    async def consume() -> None:
        async for event in AGKitProvider().stream(make_request(fake_vendor)):
            received.append(event)
            if isinstance(event, TextDelta):
                first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 2)
    started = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert task.cancelled()
    assert received == [NEW, TextDelta("Thinking")]
    assert fake_vendor.requests[0].client_closed.wait(1)
    assert time.monotonic() - started < 1


# AG-UI dialect ----------------------------------------------------------------------------------


async def test_it_streams_agui_text_reasoning_and_usage(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        agui("RUN_STARTED", threadId=CONVERSATION, runId="run-1"),
        agui("STEP_STARTED", stepName="chat"),
        agui("THINKING_START"),
        agui("THINKING_TEXT_MESSAGE_CONTENT", delta="Let me think."),
        agui("THINKING_END"),
        agui("TEXT_MESSAGE_START", messageId="m1", role="assistant"),
        agui("TEXT_MESSAGE_CONTENT", messageId="m1", delta="Bon"),
        agui("TEXT_MESSAGE_CONTENT", messageId="m1", delta="jour"),
        agui("TEXT_MESSAGE_END", messageId="m1"),
        agui("TEXT_MESSAGE_CHUNK", messageId="m2", delta="!"),
        agui("STATE_SNAPSHOT", snapshot={"step": 2}),
        agui("MESSAGES_SNAPSHOT", messages=[{"id": "m1", "role": "assistant"}]),
        agui("STEP_FINISHED", stepName="chat"),
        agui(
            "RUN_FINISHED",
            threadId=CONVERSATION,
            runId="run-1",
            usage=[
                {"model": "a", "inputTokens": 10, "outputTokens": 3, "totalTokens": 13},
                {"model": "b", "inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
            ],
        ),
        Pause(10),  # RUN_FINISHED is terminal: there is no [DONE] to wait for
    )

    assert events == [
        NEW,
        ReasoningDelta("Let me think."),
        TextDelta("Bon"),
        TextDelta("jour"),
        TextDelta("!"),
        VendorExtra("unknown_events", {"type": "STATE_SNAPSHOT", "snapshot": {"step": 2}}),
        Usage(15, 5, 20),
        RunCompleted(),
    ]


async def test_it_relays_agui_tool_calls_with_their_results(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        agui("RUN_STARTED", threadId=CONVERSATION, runId="run-1"),
        agui("TOOL_CALL_START", toolCallId="tc1", toolCallName="get_weather"),
        agui("TOOL_CALL_ARGS", toolCallId="tc1", delta='{"city": '),
        agui("TOOL_CALL_ARGS", toolCallId="tc1", delta='"Paris"}'),
        agui("TOOL_CALL_END", toolCallId="tc1"),
        agui("TOOL_CALL_RESULT", messageId="r1", toolCallId="tc1", content="Sunny", role="tool"),
        agui("TOOL_CALL_CHUNK", toolCallId="tc2", toolCallName="now", delta='{"tz"'),
        agui("TOOL_CALL_CHUNK", delta=': "CET"}'),
        agui("RUN_FINISHED", threadId=CONVERSATION, runId="run-1"),
    )

    assert events == [
        NEW,
        ToolCallStarted("tc1", "get_weather"),
        ToolCallDelta("tc1", '{"city": '),
        ToolCallDelta("tc1", '"Paris"}'),
        ToolCallCompleted("tc1", "get_weather", '{"city": "Paris"}'),
        ToolCallResult("tc1", "Sunny"),
        ToolCallStarted("tc2", "now"),
        ToolCallDelta("tc2", '{"tz"'),
        ToolCallDelta("tc2", ': "CET"}'),
        ToolCallCompleted("tc2", "now", '{"tz": "CET"}'),
        RunCompleted(),
    ]


async def test_it_fails_on_agui_run_error(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        agui("RUN_STARTED", threadId=CONVERSATION, runId="run-1"),
        agui("TEXT_MESSAGE_CONTENT", messageId="m1", delta="Start"),
        agui(
            "RUN_ERROR",
            threadId=CONVERSATION,
            runId="run-1",
            message="Quota exhausted",
            code="QUOTA_ERROR",
        ),
        agui("RUN_ERROR", message="Failed to process agent request", code="INTERNAL_ERROR"),
    )

    assert events == [
        NEW,
        TextDelta("Start"),
        RunFailed(ErrorCode.VENDOR_ERROR, "Quota exhausted (QUOTA_ERROR)", {"code": "QUOTA_ERROR"}),
    ]


async def test_it_fails_on_a_cloudbase_error_object_in_the_stream(
    fake_vendor: FakeVendor,
) -> None:
    events = await run(
        fake_vendor,
        agui("RUN_STARTED", threadId=CONVERSATION, runId="run-1"),
        sse({"error": {"code": "INTERNAL_ERROR", "message": "Agent crashed"}, "requestId": "r2"}),
    )

    assert events == [
        NEW,
        RunFailed(
            ErrorCode.VENDOR_ERROR,
            "Agent crashed (INTERNAL_ERROR)",
            {"code": "INTERNAL_ERROR", "request_id": "r2"},
        ),
    ]


async def test_it_pauses_on_an_agui_interrupt_outcome(fake_vendor: FakeVendor) -> None:
    interrupt = {
        "id": "int-1",
        "reason": "tool_approval",
        "message": "May I delete user 7?",
        "toolCallId": "tc9",
    }

    events = await run(
        fake_vendor,
        agui("RUN_STARTED", threadId=CONVERSATION, runId="run-1"),
        agui("TOOL_CALL_START", toolCallId="tc9", toolCallName="delete_user"),
        agui("TOOL_CALL_ARGS", toolCallId="tc9", delta='{"id": 7}'),
        agui(
            "RUN_FINISHED",
            threadId=CONVERSATION,
            runId="run-1",
            outcome={"type": "interrupt", "interrupts": [interrupt]},
        ),
    )

    assert events == [
        NEW,
        ToolCallStarted("tc9", "delete_user"),
        ToolCallDelta("tc9", '{"id": 7}'),
        ToolCallCompleted("tc9", "delete_user", '{"id": 7}'),
        InterruptRequested(
            "int-1",
            "tool_approval",
            {"message": "May I delete user 7?", "toolCallId": "tc9"},
            {"dialect": "agui"},
        ),
    ]


async def test_it_answers_an_agui_interrupt_with_a_resume_list(fake_vendor: FakeVendor) -> None:
    resume = {
        "interrupt_id": "int-1",
        "payload": {"approved": True},
        "reason": "tool_approval",
        "vendor_data": {"dialect": "agui"},
    }
    history = [ChatTurn("user", "Delete user 7"), ChatTurn("assistant", "Checking.")]

    events = await run(
        fake_vendor,
        agui("RUN_STARTED", threadId=CONVERSATION, runId="run-2"),
        agui("TEXT_MESSAGE_CONTENT", messageId="m3", delta="Deleted."),
        agui("RUN_FINISHED", threadId=CONVERSATION, runId="run-2"),
        message='{"approved": true}',
        turns=history,
        vendor_conversation_id=CONVERSATION,
        resume=resume,
    )

    assert events == [TextDelta("Deleted."), RunCompleted()]
    body = fake_vendor.requests[0].json()
    assert body["resume"] == [
        {"interruptId": "int-1", "status": "resolved", "payload": {"approved": True}}
    ]
    # The whole thread, without the answer as a new user turn: it travels in `resume`.
    assert body["messages"] == [
        {"id": f"{CONVERSATION}-0", "role": "user", "content": "Delete user 7"},
        {"id": f"{CONVERSATION}-1", "role": "assistant", "content": "Checking."},
    ]
    assert body["threadId"] == CONVERSATION


async def test_it_asks_one_of_several_interrupts_and_cancels_the_others(
    fake_vendor: FakeVendor,
) -> None:
    second = {"id": "int-2", "reason": "input", "message": "Which account?"}
    fake_vendor.add_route(
        "POST",
        ROUTE,
        [
            sse_script(
                agui(
                    "RUN_FINISHED",
                    threadId=CONVERSATION,
                    runId="run-1",
                    outcome={
                        "type": "interrupt",
                        "interrupts": [{"id": "int-1", "reason": "confirm"}, second],
                    },
                )
            ),
            sse_script(agui("RUN_FINISHED", threadId=CONVERSATION, runId="run-2")),
        ],
    )

    events = await collect(make_request(fake_vendor))
    interrupt = events[-1]
    assert isinstance(interrupt, InterruptRequested)
    assert events[1:] == [
        VendorExtra("other_interrupts", [second]),
        InterruptRequested(
            "int-1", "confirm", None, {"dialect": "agui", "other_interrupt_ids": ["int-2"]}
        ),
    ]
    resume = {
        "interrupt_id": interrupt.interrupt_id,
        "payload": "yes",
        "reason": interrupt.reason,
        "vendor_data": interrupt.vendor_data,
    }

    assert await collect(make_request(fake_vendor, resume=resume)) == [NEW, RunCompleted()]
    assert fake_vendor.requests[1].json()["resume"] == [
        {"interruptId": "int-1", "status": "resolved", "payload": "yes"},
        {"interruptId": "int-2", "status": "cancelled"},
    ]


async def test_it_stores_the_thread_an_agui_agent_names(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        agui("RUN_STARTED", threadId="vendor-thread-9", runId="run-1"),
        agui("RUN_FINISHED", threadId="vendor-thread-9", runId="run-1"),
    )

    assert events == [NEW, VendorConversation("vendor-thread-9"), RunCompleted()]


# The protocol option ----------------------------------------------------------------------------


async def test_it_reports_a_stream_in_the_other_dialect_than_the_option_forces(
    fake_vendor: FakeVendor,
) -> None:
    agkit_stream = await run(
        fake_vendor, sse({"type": "text", "content": "Hi"}), DONE, protocol="agui"
    )
    agui_stream = await run(
        fake_vendor,
        agui("RUN_STARTED", threadId=CONVERSATION, runId="r"),
        agui("RUN_FINISHED", threadId=CONVERSATION, runId="r"),
        protocol="agkit",
    )

    assert agkit_stream == [
        NEW,
        RunFailed(
            ErrorCode.VENDOR_PROTOCOL,
            "The agent answers in the AG-Kit format but its 'protocol' option says 'agui': "
            "set it to 'agkit' or 'auto'.",
        ),
    ]
    assert isinstance(agui_stream[-1], RunFailed)
    assert "answers in the AG-UI format" in agui_stream[-1].message


async def test_it_keeps_the_first_dialect_it_detects(fake_vendor: FakeVendor) -> None:
    # Once AG-Kit is detected, an upper-case event is unknown, not AG-UI.
    events = await run(
        fake_vendor,
        sse({"type": "text", "content": "Hi"}),
        agui("TEXT_MESSAGE_CONTENT", messageId="m1", delta="ignored"),
        DONE,
    )

    assert events == [
        NEW,
        TextDelta("Hi"),
        VendorExtra(
            "unknown_events",
            {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "ignored"},
        ),
        RunCompleted(),
    ]


async def test_it_answers_in_the_dialect_the_interrupt_was_raised_in(
    fake_vendor: FakeVendor,
) -> None:
    resume = {"interrupt_id": "i1", "payload": "ok", "reason": "", "vendor_data": {}}

    await run(fake_vendor, DONE, resume=resume, protocol="agkit")
    await run(
        fake_vendor, DONE, resume={**resume, "vendor_data": {"dialect": "agkit"}}, protocol="agui"
    )
    await run(fake_vendor, DONE, resume=resume)

    bodies = [request.json() for request in fake_vendor.requests]
    assert bodies[0]["resume"] == {"interruptId": "i1", "payload": '"ok"'}
    assert "threadId" not in bodies[0]
    assert bodies[1]["resume"] == {"interruptId": "i1", "payload": '"ok"'}
    # Without a recorded dialect, `auto` answers as AG-UI, CloudBase's current format.
    assert bodies[2]["resume"] == [{"interruptId": "i1", "status": "resolved", "payload": "ok"}]


def test_it_validates_options() -> None:
    good = {"agent_id": "agent-1", "protocol": "agui", "history": "delta", "tools": [WEATHER_TOOL]}

    assert AGKitProvider.validate_options(good) == []
    assert AGKitProvider.validate_options({"agent_id": 42}) == []
    assert AGKitProvider.validate_options({"agent_id": True}) == [
        "option 'agent_id' must be a string"
    ]
    assert AGKitProvider.validate_options(
        {"protocol": "ag-ui", "history": "all", "tools": [{"description": 1}, "x"]}
    ) == [
        "missing option 'agent_id' (the CloudBase agent id, as in /v1/aibot/bots/{agent_id}/)",
        "option 'protocol' must be one of auto, agkit, agui (got 'ag-ui')",
        "option 'history' must be one of full, delta (got 'all')",
        "option 'tools' item 0 needs a 'name'",
        "option 'tools' item 0: 'description' must be a string",
        "option 'tools' item 1 must be an object {name, description, parameters}",
    ]
    assert AGKitProvider.validate_options({"agent_id": "a", "tools": {"name": "x"}}) == [
        "option 'tools' must be a JSON list of {name, description, parameters}"
    ]
    assert AGKitProvider.validate_options(
        {"agent_id": "a", "tools": [{"name": "x", "parameters": json.dumps({})}]}
    ) == ["option 'tools' item 0: 'parameters' must be a JSON Schema object"]
