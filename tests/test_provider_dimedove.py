"""The Dimedove provider against a real loopback vendor (docs/providers/dimedove.md).

The streams below are the documented examples byte for byte (api-reference/overview.mdx), served
the way a real server may: CRLF line ends, cut at arbitrary points across writes, heartbeat
comments in between.
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
    TitleGenerated,
    ToolCallCompleted,
    ToolCallDelta,
    ToolCallStarted,
    VendorConversation,
    VendorExtra,
)
from conversations.providers import dimedove
from conversations.providers.base import ChatTurn, VendorError
from conversations.providers.dimedove import CONVERSATION_LOST, DimedoveProvider
from tests.fakevendor import (
    Chunk,
    FakeVendor,
    Hangup,
    Pause,
    Script,
    json_script,
    sse,
    sse_script,
)
from tests.providers_helpers import FAST, AgentSpec

TOKEN_ENV = "CHATSITE_TEST_DIMEDOVE_KEY"
APP = "app_1"
CONVERSATIONS = f"/v1/apps/{APP}/conversations"
CONVERSATION = f"{CONVERSATIONS}/conv_1"
TITLES = {"en-ca": "Order status question", "fr-ca": "Question sur l'état de la commande"}

# The streaming example of api-reference/overview.mdx, verbatim.
DOCS_STREAM = """\
event: response.created
data: {"id":"resp_abc123","object":"response","status":"in_progress","conversation_id":"550e8400-e29b-41d4-a716-446655440000"}

event: response.output_text.delta
data: {"type":"response.output_text.delta","delta":"Hello","output_index":0,"content_index":0}

event: response.output_text.delta
data: {"type":"response.output_text.delta","delta":"! How can I help?","output_index":0,"content_index":0}

event: response.output_text.done
data: {"type":"response.output_text.done","text":"Hello! How can I help?","output_index":0,"content_index":0}

event: response.completed
data: {"id":"resp_abc123","status":"completed"}

"""  # noqa: E501

# The Generative UI example of the same page, verbatim.
DOCS_DATA_SPEC_STREAM = """\
event: response.created
data: {"id":"resp_def456","object":"response","status":"in_progress","conversation_id":"550e8400-e29b-41d4-a716-446655440000"}

event: response.output_text.delta
data: {"type":"response.output_text.delta","delta":"Let me help you choose a plan.","output_index":0,"content_index":0}

event: response.output_text.done
data: {"type":"response.output_text.done","text":"Let me help you choose a plan.","output_index":0,"content_index":0}

event: response.data_spec
data: {"type":"response.data_spec","data":{"type":"patch","patch":{"op":"add","path":"/root","value":"card-plan-selection"}},"output_index":0}

event: response.data_spec
data: {"type":"response.data_spec","data":{"type":"patch","patch":{"op":"add","path":"/root/children/-","value":{"type":"radio-group","name":"plan","options":["Basic","Standard","Premium"]}}},"output_index":0}

event: response.completed
data: {"id":"resp_def456","status":"completed"}

"""  # noqa: E501

CREATED = sse(
    {"id": "resp_1", "object": "response", "status": "in_progress", "conversation_id": "conv_1"},
    event="response.created",
)
COMPLETED = sse({"id": "resp_1", "status": "completed"}, event="response.completed")


def event(kind: str, /, **data: Any) -> bytes:
    """One Dimedove event: `event:` names it and the data repeats it in `type` (§A1)."""
    return sse({"type": kind, **data}, event=kind)


def cut(text: str, size: int = 23, *, crlf: bool = True) -> list[Chunk]:
    """The stream's bytes in `size`-byte writes: lines, CRLFs and UTF-8 cut anywhere."""
    raw = (text.replace("\n", "\r\n") if crlf else text).encode()
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def conversation(**fields: Any) -> dict[str, Any]:
    return {
        "id": "conv_1",
        "object": "conversation",
        "created_at": 1709712000,
        "external_user_id": None,
        "title": None,
        "generated_title": None,
        "metadata": None,
        **fields,
    }


AGENT = AgentSpec(
    DimedoveProvider,
    slug="dove",
    options={"app_id": APP},
    token_env=TOKEN_ENV,
    message="Where is my order?",
    vendor_conversation_id="conv_1",
    title="Order help",
    metadata={"plan_type": "term_life"},
)
make_request, collect = AGENT.request, AGENT.collect


async def run(vendor: FakeVendor, script: Script, **request: Any) -> list[ProviderEvent]:
    vendor.add_route("POST", CONVERSATION, script)
    return await collect(make_request(vendor, **request))


# Streaming ----------------------------------------------------------------------------------------


async def test_it_streams_the_documented_reply(fake_vendor: FakeVendor) -> None:
    chunks = cut(DOCS_STREAM)
    # A heartbeat comment between events, as proxies and SSE servers send to stay alive (§C.4).
    chunks.insert(len(chunks) // 2, b"\r\n: keep-alive\r\n\r\n")
    events = await run(fake_vendor, sse_script(*chunks, chunk_delay=0.002))

    assert events == [
        TextDelta("Hello"),
        TextDelta("! How can I help?"),
        RunCompleted("completed"),
    ]


async def test_it_sends_the_message_and_the_latest_metadata_snapshot(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "sk_live_test_123")
    metadata = {"first_name": "John", "age": 34, "city": "Montreal"}

    await run(
        fake_vendor,
        sse_script(CREATED, COMPLETED),
        message="Hello, I need help with my order.",
        metadata=metadata,
    )

    [request] = fake_vendor.requests  # the conversation exists: nothing is created
    assert (request.method, request.path) == ("POST", CONVERSATION)
    assert request.headers["authorization"] == "Bearer sk_live_test_123"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "message": {"role": "user", "content": "Hello, I need help with my order."},
        "stream": True,
        "metadata": metadata,
    }


async def test_it_sends_an_empty_snapshot_once_metadata_is_cleared(
    fake_vendor: FakeVendor,
) -> None:
    await run(fake_vendor, sse_script(CREATED, COMPLETED), metadata={})

    assert fake_vendor.requests[0].json()["metadata"] == {}


async def test_it_creates_the_vendor_conversation_before_the_first_message(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "sk_live_test_456")
    fake_vendor.add_route(
        "POST",
        CONVERSATIONS,
        json_script(conversation(id="conv_new", external_user_id="user_abc123")),
    )
    fake_vendor.add_route(
        "POST", f"{CONVERSATIONS}/conv_new", sse_script(CREATED, *cut(DOCS_STREAM, 64))
    )

    events = await collect(
        make_request(
            fake_vendor,
            vendor_conversation_id="",
            external_user_id="user_abc123",
            title="Support inquiry",
            metadata={"first_name": "John", "plan_type": "term_life"},
        )
    )

    assert events == [
        VendorConversation("conv_new"),
        TextDelta("Hello"),
        TextDelta("! How can I help?"),
        RunCompleted("completed"),
    ]
    create, send = fake_vendor.requests
    assert (create.method, create.path) == ("POST", CONVERSATIONS)
    assert create.headers["authorization"] == "Bearer sk_live_test_456"
    assert create.headers["content-type"] == "application/json"
    assert create.json() == {
        "external_user_id": "user_abc123",
        "title": "Support inquiry",
        "metadata": {"first_name": "John", "plan_type": "term_life"},
    }
    assert (send.method, send.path) == ("POST", f"{CONVERSATIONS}/conv_new")
    assert send.json()["metadata"] == {"first_name": "John", "plan_type": "term_life"}


async def test_it_leaves_empty_fields_out_of_the_created_conversation(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route("POST", CONVERSATIONS, json_script(conversation()))
    fake_vendor.add_route("POST", CONVERSATION, sse_script(CREATED, COMPLETED))

    await collect(
        make_request(
            fake_vendor, vendor_conversation_id="", title="", metadata={}, fetch_title=False
        )
    )

    assert fake_vendor.requests[0].json() == {}


async def test_it_streams_tool_calls_from_function_call_events(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse_script(
            CREATED,
            event("response.function_call.start", name="lookup_policy", call_id="call_a",
                  output_index=0),
            event("response.function_call_arguments.delta", delta='{"query":',
                  call_id="call_a", output_index=0),
            event("response.function_call_arguments.delta", delta='"coverage details"}',
                  call_id="call_a", output_index=0),
            event("response.function_call_arguments.done", name="lookup_policy",
                  arguments='{"query":"coverage details"}', call_id="call_a", output_index=0),
            # A client tool: "The `arguments` field is always `null`" (custom-tools.mdx).
            event("response.function_call.start", name="open_quote_form", call_id="call_b",
                  output_index=1),
            event("response.function_call_arguments.done", name="open_quote_form",
                  arguments=None, call_id="call_b", output_index=1),
            event("response.output_text.delta", delta="Here you go.", output_index=2,
                  content_index=0),
            COMPLETED,
        ),
    )

    assert events == [
        ToolCallStarted("call_a", "lookup_policy"),
        ToolCallDelta("call_a", '{"query":'),
        ToolCallDelta("call_a", '"coverage details"}'),
        ToolCallCompleted("call_a", "lookup_policy", '{"query":"coverage details"}'),
        ToolCallStarted("call_b", "open_quote_form"),
        ToolCallCompleted("call_b", "open_quote_form", ""),
        TextDelta("Here you go."),
        RunCompleted("completed"),
    ]


async def test_it_reads_tool_calls_from_output_item_done(fake_vendor: FakeVendor) -> None:
    # custom-tools.mdx: "function_call items are delivered via the response.output_item.done
    # event", with the item exactly as its examples show it.
    events = await run(
        fake_vendor,
        sse_script(
            CREATED,
            event("response.output_item.done", output_index=0, item={
                "type": "function_call", "name": "check_inventory",
                "arguments": '{"product_id": "sku_123"}', "call_id": "call_abc456"}),
            event("response.output_item.done", output_index=1, item={
                "type": "function_call", "name": "open_quote_form", "arguments": None,
                "call_id": "call_def789"}),
            COMPLETED,
        ),
    )

    assert events == [
        ToolCallStarted("call_abc456", "check_inventory"),
        ToolCallCompleted("call_abc456", "check_inventory", '{"product_id": "sku_123"}'),
        ToolCallStarted("call_def789", "open_quote_form"),
        ToolCallCompleted("call_def789", "open_quote_form", ""),
        RunCompleted("completed"),
    ]


async def test_it_completes_each_tool_call_once_when_both_shapes_arrive(
    fake_vendor: FakeVendor,
) -> None:
    item_a = {"type": "function_call", "name": "lookup_policy", "arguments": '{"q":1}',
              "call_id": "call_a"}
    item_b = {"type": "function_call", "name": "transfer_to_agent", "arguments": None,
              "call_id": "call_b"}
    events = await run(
        fake_vendor,
        sse_script(
            CREATED,
            event("response.function_call.start", name="lookup_policy", call_id="call_a",
                  output_index=0),
            event("response.function_call_arguments.delta", delta='{"q":1}', call_id="call_a",
                  output_index=0),
            event("response.function_call_arguments.done", name="lookup_policy",
                  arguments='{"q":1}', call_id="call_a", output_index=0),
            event("response.output_item.done", output_index=0, item=item_a),
            # Started by one shape, finished by the other.
            event("response.function_call.start", name="transfer_to_agent", call_id="call_b",
                  output_index=1),
            event("response.output_item.done", output_index=1, item=item_b),
            event("response.function_call_arguments.done", name="transfer_to_agent",
                  arguments=None, call_id="call_b", output_index=1),
            COMPLETED,
        ),
    )

    completed = [e for e in events if isinstance(e, ToolCallCompleted)]
    started = [e for e in events if isinstance(e, ToolCallStarted)]
    assert completed == [
        ToolCallCompleted("call_a", "lookup_policy", '{"q":1}'),
        ToolCallCompleted("call_b", "transfer_to_agent", ""),
    ]
    assert [e.call_id for e in started] == ["call_a", "call_b"]
    assert events[-1] == RunCompleted("completed")


async def test_it_completes_a_started_tool_call_when_the_reply_ends(
    fake_vendor: FakeVendor,
) -> None:
    events = await run(
        fake_vendor,
        sse_script(
            event("response.function_call.start", name="book", call_id="call_x",
                  output_index=0),
            event("response.function_call_arguments.delta", delta='{"day":"Mon"}',
                  call_id="call_x", output_index=0),
            COMPLETED,
        ),
    )

    assert events[-2:] == [
        ToolCallCompleted("call_x", "book", '{"day":"Mon"}'),
        RunCompleted("completed"),
    ]


async def test_it_keeps_the_data_spec_patches(fake_vendor: FakeVendor) -> None:
    events = await run(fake_vendor, sse_script(*cut(DOCS_DATA_SPEC_STREAM, 41)))

    assert events == [
        TextDelta("Let me help you choose a plan."),
        VendorExtra("data_spec", {"type": "patch", "patch": {
            "op": "add", "path": "/root", "value": "card-plan-selection"}}),
        VendorExtra("data_spec", {"type": "patch", "patch": {
            "op": "add", "path": "/root/children/-",
            "value": {"type": "radio-group", "name": "plan",
                      "options": ["Basic", "Standard", "Premium"]}}}),
        RunCompleted("completed"),
    ]


async def test_it_keeps_unknown_events_and_reads_unnamed_ones_by_type(
    fake_vendor: FakeVendor,
) -> None:
    events = await run(
        fake_vendor,
        sse_script(
            CREATED,
            sse({"id": "resp_1", "status": "in_progress"}, event="response.in_progress"),
            sse("not json at all", event="response.mystery"),
            # No `event:` line: dispatched on `type` instead.
            sse({"type": "response.output_text.delta", "delta": "Hi", "output_index": 0,
                 "content_index": 0}),
            event("response.output_item.done", output_index=0,
                  item={"type": "message", "role": "assistant",
                        "content": [{"type": "text", "text": "Hi"}]}),
            COMPLETED,
            sse("[DONE]"),
        ),
    )

    assert events == [
        VendorExtra("unknown_events", {"event": "response.in_progress",
                                       "data": {"id": "resp_1", "status": "in_progress"}}),
        VendorExtra("unknown_events", {"event": "response.mystery", "data": "not json at all"}),
        TextDelta("Hi"),
        RunCompleted("completed"),
    ]


async def test_it_uses_the_done_text_only_for_what_the_deltas_lacked(
    fake_vendor: FakeVendor,
) -> None:
    events = await run(
        fake_vendor,
        sse_script(
            event("response.output_text.delta", delta="Hello", output_index=0, content_index=0),
            event("response.output_text.done", text="Hello there.", output_index=0,
                  content_index=0),
            # A text part with no deltas at all.
            event("response.output_text.done", text="Anything else?", output_index=1,
                  content_index=0),
            event("response.output_text.delta", delta="abc", output_index=2, content_index=0),
            event("response.output_text.done", text="xyz", output_index=2, content_index=0),
            COMPLETED,
        ),
    )

    assert events == [
        TextDelta("Hello"),
        TextDelta(" there."),
        TextDelta("Anything else?"),
        TextDelta("abc"),
        VendorExtra("text_mismatch", {"output_index": 2, "content_index": 0, "text": "xyz"}),
        RunCompleted("completed"),
    ]


async def test_it_fails_the_run_with_the_vendor_message_on_response_failed(
    fake_vendor: FakeVendor,
) -> None:
    error = {"message": "The agent could not complete the response", "type": "internal_error"}
    events = await run(
        fake_vendor,
        sse_script(
            CREATED,
            event("response.output_text.delta", delta="Partial", output_index=0,
                  content_index=0),
            sse({"id": "resp_1", "status": "failed", "error": error}, event="response.failed"),
            event("response.output_text.delta", delta="never seen", output_index=0,
                  content_index=0),
        ),
    )

    assert events == [
        TextDelta("Partial"),
        RunFailed(ErrorCode.VENDOR_ERROR, "The agent could not complete the response", error),
    ]


async def test_it_fails_the_run_on_a_failure_without_an_error_object(
    fake_vendor: FakeVendor,
) -> None:
    events = await run(
        fake_vendor, sse_script(sse({"id": "resp_1", "status": "failed"}, event="response.failed"))
    )

    assert events == [RunFailed(ErrorCode.VENDOR_ERROR, "Dimedove reported that the reply failed.")]


async def test_it_fails_the_run_on_a_malformed_known_event(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor, sse_script(sse('{"delta": "Hel', event="response.output_text.delta"))
    )

    assert events == [
        RunFailed(
            ErrorCode.VENDOR_PROTOCOL,
            "Dimedove sent a response.output_text.delta event that is not a JSON object: "
            "'{\"delta\": \"Hel'",
        )
    ]


@pytest.mark.parametrize(
    "ending",
    [
        [Hangup()],
        # The terminal event cut before its blank line is discarded, as the SSE spec says (§C.9).
        [b'event: response.completed\r\ndata: {"id":"resp_1","status":"completed"}\r\n'],
    ],
    ids=["hangup", "unterminated-completed"],
)
async def test_it_ends_without_a_terminal_event_when_the_stream_is_cut(
    fake_vendor: FakeVendor, ending: list[Chunk]
) -> None:
    events = await run(
        fake_vendor,
        sse_script(
            CREATED,
            event("response.output_text.delta", delta="Hel", output_index=0, content_index=0),
            *ending,
        ),
    )

    assert events == [TextDelta("Hel")]


async def test_it_closes_the_vendor_connection_when_cancelled(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route(
        "POST",
        CONVERSATION,
        sse_script(
            CREATED,
            event("response.output_text.delta", delta="Hel", output_index=0, content_index=0),
            Pause(10),
            event("response.output_text.delta", delta="lo", output_index=0, content_index=0),
            COMPLETED,
        ),
    )
    first = asyncio.Event()
    received: list[ProviderEvent] = []

    async def consume() -> None:
        async for e in DimedoveProvider(FAST).stream(make_request(fake_vendor)):
            received.append(e)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    started = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert time.monotonic() - started < 1
    assert task.cancelled()
    assert received == [TextDelta("Hel")]
    assert fake_vendor.requests[0].client_closed.wait(1)


async def test_it_accepts_a_json_answer_to_a_streamed_send(fake_vendor: FakeVendor) -> None:
    # An app may answer JSON whatever "stream" says (the docs disagree on its default).
    reply = {"id": "resp_1", "object": "response", "created_at": 1709712000,
             "conversation_id": "conv_1", "status": "completed",
             "output": [{"type": "message", "role": "assistant",
                         "content": [{"type": "text", "text": "All at once."}]}]}

    events = await run(fake_vendor, json_script(reply))

    assert events == [TextDelta("All at once."), RunCompleted("completed")]


# Non-streaming ------------------------------------------------------------------------------------


async def test_it_reads_the_json_reply_when_streaming_is_off(fake_vendor: FakeVendor) -> None:
    reply = {
        "id": "resp_def456",
        "object": "response",
        "created_at": 1709712000,
        "conversation_id": "conv_1",
        "output": [
            {"type": "message", "role": "assistant",
             "content": [{"type": "text", "text": "Hello! "},
                         {"type": "text", "text": "How can I help?"}]},
            {"type": "function_call", "name": "lookup_policy",
             "arguments": "{\"query\":\"coverage details\"}", "call_id": "call_abc123"},
            {"type": "function_call", "name": "open_quote_form", "arguments": None,
             "call_id": "call_def789"},
            {"type": "data_spec", "data": {"type": "patch", "patch": {
                "op": "add", "path": "/root", "value": "card-plan-selection"}}},
        ],
        "status": "completed",
    }

    events = await run(fake_vendor, json_script(reply), stream=False)

    assert events == [
        TextDelta("Hello! How can I help?"),
        ToolCallStarted("call_abc123", "lookup_policy"),
        ToolCallCompleted("call_abc123", "lookup_policy", '{"query":"coverage details"}'),
        ToolCallStarted("call_def789", "open_quote_form"),
        ToolCallCompleted("call_def789", "open_quote_form", ""),
        VendorExtra("data_spec", {"type": "patch", "patch": {
            "op": "add", "path": "/root", "value": "card-plan-selection"}}),
        RunCompleted("completed"),
    ]
    [request] = fake_vendor.requests
    assert request.json()["stream"] is False
    assert request.headers["accept"] == "application/json"


async def test_it_fails_the_run_when_the_json_reply_failed(fake_vendor: FakeVendor) -> None:
    reply = {"id": "resp_1", "object": "response", "created_at": 1709712000,
             "conversation_id": "conv_1", "output": [], "status": "failed"}

    events = await run(fake_vendor, json_script(reply), stream=False)

    assert events == [RunFailed(ErrorCode.VENDOR_ERROR, "Dimedove reported that the reply failed.")]


# HTTP errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "code"),
    [
        (401, "invalid_api_key", ErrorCode.VENDOR_AUTH),
        (429, "rate_limit_exceeded", ErrorCode.VENDOR_RATE_LIMITED),
        (404, "not_found", ErrorCode.VENDOR_CONVERSATION_LOST),
    ],
)
@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
async def test_it_maps_error_statuses_of_the_send(
    fake_vendor: FakeVendor, status: int, error_type: str, code: str, stream: bool
) -> None:
    body = {"error": {"message": f"Vendor says {error_type}", "type": error_type, "param": None,
                      "code": None}}
    fake_vendor.add_route("POST", CONVERSATION, json_script(body, status=status))

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor, stream=stream))

    assert caught.value.code == code
    assert caught.value.status == status
    if status == 404:
        assert caught.value.message == CONVERSATION_LOST
    else:
        assert f"Vendor says {error_type}" in caught.value.message
    assert len(fake_vendor.requests) == 1  # never retried


async def test_it_reports_an_unknown_app_when_creating_the_conversation(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route(
        "POST",
        CONVERSATIONS,
        json_script({"error": {"message": "App not found", "type": "not_found"}}, status=404),
    )

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor, vendor_conversation_id=""))

    assert caught.value.code == ErrorCode.VENDOR_NOT_FOUND
    assert "'app_1'" in caught.value.message and "App not found" in caught.value.message
    assert len(fake_vendor.requests) == 1


# Titles -------------------------------------------------------------------------------------------


async def test_it_yields_the_generated_title_of_a_created_conversation(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route("POST", CONVERSATIONS, json_script(conversation(generated_title=TITLES)))
    fake_vendor.add_route("POST", CONVERSATION, sse_script(CREATED, COMPLETED))

    events = await collect(make_request(fake_vendor, vendor_conversation_id="", title=""))

    assert events == [
        VendorConversation("conv_1"), TitleGenerated(TITLES), RunCompleted("completed")
    ]
    assert [r.method for r in fake_vendor.requests] == ["POST", "POST"]  # no read-back


async def test_it_reads_the_generated_title_back_after_the_first_exchange(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "sk_live_test_789")
    fake_vendor.add_route(
        "GET",
        CONVERSATION,
        json_script({**conversation(generated_title={**TITLES, "es": ""}), "items": []}),
    )

    events = await run(fake_vendor, sse_script(*cut(DOCS_STREAM)), title="")

    assert events[-2:] == [TitleGenerated(TITLES), RunCompleted("completed")]
    send, read = fake_vendor.requests
    assert (read.method, read.path) == ("GET", CONVERSATION)
    assert read.headers["authorization"] == "Bearer sk_live_test_789"


@pytest.mark.parametrize(
    "request_fields",
    [
        {"title": "My own title"},
        {"title": "", "turns": [ChatTurn("user", "a"), ChatTurn("assistant", "b")] * 2},
        {"title": "", "fetch_title": False},
    ],
    ids=["own-title", "later-exchange", "option-off"],
)
async def test_it_does_not_read_the_title_back_when_it_cannot_help(
    fake_vendor: FakeVendor, request_fields: dict[str, Any]
) -> None:
    events = await run(fake_vendor, sse_script(CREATED, COMPLETED), **request_fields)

    assert events == [RunCompleted("completed")]
    assert [r.method for r in fake_vendor.requests] == ["POST"]


@pytest.mark.parametrize(
    "answer",
    [
        json_script({"error": {"message": "busy", "type": "internal_error"}}, status=500),
        json_script(conversation()),  # not generated yet
        Script(status=200, headers={"Content-Type": "application/json"}, chunks=[Pause(2)]),
    ],
    ids=["error", "no-title-yet", "slow"],
)
async def test_it_completes_the_reply_whatever_the_title_read_gives(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch, answer: Script
) -> None:
    monkeypatch.setattr(dimedove, "TITLE_FETCH_SECONDS", 0.3)
    fake_vendor.add_route("GET", CONVERSATION, answer)

    events = await run(fake_vendor, sse_script(CREATED, COMPLETED), title="")

    assert events == [RunCompleted("completed")]


async def test_it_takes_a_title_found_on_the_reply_itself(fake_vendor: FakeVendor) -> None:
    # Not documented on responses; when present it spares the read-back.
    events = await run(
        fake_vendor,
        sse_script(
            CREATED,
            sse({"id": "resp_1", "status": "completed", "generated_title": TITLES},
                event="response.completed"),
        ),
        title="",
    )

    assert events == [TitleGenerated(TITLES), RunCompleted("completed")]
    assert len(fake_vendor.requests) == 1


# Delete, options ----------------------------------------------------------------------------------


async def test_it_deletes_the_vendor_conversation(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "sk_live_test_del")
    fake_vendor.add_route(
        "DELETE", CONVERSATION,
        json_script({"id": "conv_1", "object": "conversation", "deleted": True}),
    )
    agent = make_request(fake_vendor).agent

    assert await DimedoveProvider(FAST).delete_conversation(agent, "conv_1") is None

    [request] = fake_vendor.requests
    assert (request.method, request.path) == ("DELETE", CONVERSATION)
    assert request.headers["authorization"] == "Bearer sk_live_test_del"


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, ErrorCode.VENDOR_UNAVAILABLE), (403, ErrorCode.VENDOR_AUTH),
     (404, ErrorCode.VENDOR_NOT_FOUND)],
)
async def test_it_raises_when_the_vendor_delete_fails(
    fake_vendor: FakeVendor, status: int, code: str
) -> None:
    fake_vendor.add_route(
        "DELETE", CONVERSATION,
        json_script({"error": {"message": "nope", "type": "x"}}, status=status),
    )

    with pytest.raises(VendorError) as caught:
        await DimedoveProvider(FAST).delete_conversation(make_request(fake_vendor).agent, "conv_1")

    assert caught.value.code == code
    if status == 404:
        assert "nothing was deleted" in caught.value.message


async def test_it_accepts_the_versioned_base_url(fake_vendor: FakeVendor) -> None:
    # The OpenAPI server URL is https://api.dimedove.com/v1; the paths carry the version too.
    events = await run(
        fake_vendor, sse_script(CREATED, COMPLETED), base_url=f"{fake_vendor.url}/v1/"
    )

    assert events == [RunCompleted("completed")]
    assert fake_vendor.requests[0].path == CONVERSATION


def test_it_defaults_to_the_dimedove_host() -> None:
    assert DimedoveProvider.default_base_url == "https://api.dimedove.com"
    assert DimedoveProvider.kind == "dimedove"


def test_it_reports_bad_options() -> None:
    assert DimedoveProvider.validate_options({"app_id": "app_1"}) == []
    assert DimedoveProvider.validate_options({"app_id": "a", "stream": "false"}) == []
    assert DimedoveProvider.validate_options({}) == [
        f"missing option 'app_id' ({DimedoveProvider.required_options['app_id']})"
    ]
    assert DimedoveProvider.validate_options({"app_id": "a", "stream": "sometimes"}) == [
        "option 'stream' must be true or false, not 'sometimes'"
    ]
