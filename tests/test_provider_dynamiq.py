"""The Dynamiq provider against a real loopback vendor (docs/providers/dynamiq.md).

The vendor serves the bytes Dynamiq documents (docs/providers/dynamiq.md): the
documented example verbatim, and events in the same envelope split across writes, with CRLF line
ends and `: heartbeat` comments.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import pytest

from conversations.events import (
    TERMINAL_EVENTS,
    ErrorCode,
    InterruptRequested,
    ProviderEvent,
    ReasoningDelta,
    RunCompleted,
    RunFailed,
    TextDelta,
    ToolCallCompleted,
    ToolCallResult,
    ToolCallStarted,
    VendorConversation,
    VendorExtra,
)
from conversations.providers import dynamiq
from conversations.providers.base import AgentConfig, RunRequest, VendorError
from conversations.providers.dynamiq import DynamiqProvider
from tests.fakevendor import (
    Chunk,
    FakeVendor,
    Hangup,
    Pause,
    RecordedRequest,
    Script,
    json_script,
    sse,
    sse_script,
)
from tests.providers_helpers import AgentSpec

TOKEN_ENV = "CHATSITE_TEST_DYNAMIQ_TOKEN"
TOKEN = "dynamiq_acc_test_123"
CONV = "497f6eca-6276-4993-bfeb-53cbbbba6f08"
MODEL = "8e9f0a1b-2c3d-4e4f-8a5b-6c7d8e9f0a1b"
APP = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
RUN = "run-0b54a6d2-9c1f-4f7e-8a36-2f6d1d2c9b11"
CREATE = "/v1/conversations"
SEND = f"/v3/conversations/{CONV}/messages"
RUN_PATH = f"/v1/runs/{RUN}"
RUN_IDS = VendorExtra("vendor_run", {"conversation_id": CONV, "run_id": RUN})

# The response example of "Send a conversation message (SSE)", byte for byte: the JSON string
# literal copied from the page, decoded. Its last event ends with one "\n", not a blank line.
DOC_EXAMPLE = json.loads(
    r'"event: agent.response.delta\ndata: {\"id\":\"a1b2...\",\"type\":\"agent.response.delta\",'
    r"\"sequence\":4,\"timestamp\":\"2026-06-10T09:11:02Z\",\"data\":{\"object\":"
    r"\"agent.response.delta\",\"delta\":\"The customer was charged twice\"}}\n\nevent: "
    r"run.completed\ndata: {\"id\":\"b2c3...\",\"type\":\"run.completed\",\"sequence\":12,"
    r"\"timestamp\":\"2026-06-10T09:11:09Z\",\"data\":{\"object\":\"run\",\"status\":"
    r'\"completed\"}}\n"'
).encode()
DOC_EVENTS = [
    TextDelta("The customer was charged twice"),
    VendorExtra("sequence_gaps", {"expected": 5, "got": 12}),
    RunCompleted("completed"),
]
BAD_REQUEST = {
    "error": {
        "code": "bad_request",
        "message": "Bad Request",
        "details": {"input": "cannot be blank"},
    }
}


# Builders --------------------------------------------------------------------------------------


def event(kind: str, sequence: int, data: dict[str, Any], *, crlf: bool = False) -> bytes:
    envelope = {
        "id": f"evt-{sequence}",
        "type": kind,
        "sequence": sequence,
        "timestamp": "2026-06-10T09:11:02Z",
        "data": data,
    }
    return sse(envelope, event=kind, crlf=crlf)


def started(sequence: int = 1) -> bytes:
    return event("run.started", sequence, {"id": RUN, "object": "run", "status": "started"})


def delta(sequence: int, text: str) -> bytes:
    return event(
        "agent.response.delta", sequence, {"object": "agent.response.delta", "delta": text}
    )


def completed(sequence: int) -> bytes:
    return event("run.completed", sequence, {"id": RUN, "object": "run", "status": "completed"})


AGENT = AgentSpec(
    DynamiqProvider,
    slug="dyn",
    options={"model_id": MODEL},
    token_env=TOKEN_ENV,
    message="Summarize the duplicate-charge ticket and draft a reply.",
    vendor_conversation_id=CONV,
)
make_agent, make_request = AGENT.agent, AGENT.request
provider, collect = AGENT.make_provider, AGENT.collect


async def relay_like(request: RunRequest) -> list[ProviderEvent]:
    """Consume as the relay does: stop at the first terminal event, then close the stream."""
    events: list[ProviderEvent] = []
    async with contextlib.aclosing(provider().stream(request)) as stream:
        async for item in stream:
            events.append(item)
            if isinstance(item, TERMINAL_EVENTS):
                break
    return events


async def relay_like_with(vendor: FakeVendor, *chunks: Chunk) -> list[ProviderEvent]:
    vendor.add_route("POST", SEND, sse_script(*chunks))
    return await relay_like(make_request(vendor))


async def run(vendor: FakeVendor, *chunks: Chunk, **request: Any) -> list[ProviderEvent]:
    vendor.add_route("POST", SEND, sse_script(*chunks))
    return await collect(make_request(vendor, **request))


def paths(vendor: FakeVendor) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in vendor.requests]


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# The documented bytes ----------------------------------------------------------------------


async def test_it_reads_the_documented_example_verbatim(fake_vendor: FakeVendor) -> None:
    events = await run(fake_vendor, DOC_EXAMPLE)

    # The example numbers its events 4 and 12: the gap is kept for review, the reply is whole.
    assert events == DOC_EVENTS
    # No run.started, so no run id: nothing to cancel, and the run completed anyway.
    assert paths(fake_vendor) == [("POST", SEND)]


def _crlf_split_between_cr_and_lf() -> Script:
    # Each write ends with "\r" and the next starts with its "\n".
    data = DOC_EXAMPLE.replace(b"\n", b"\r\n")
    return sse_script(*re.split(rb"(?<=\r)", data), chunk_delay=0.01)


def _split_every_7_bytes() -> Script:
    return sse_script(*pieces(DOC_EXAMPLE, 7), chunk_delay=0.001)


def _heartbeats_between_events() -> Script:
    first, second = DOC_EXAMPLE.split(b"\n\n", 1)
    return sse_script(
        b": heartbeat\n\n",
        first + b"\n\n",
        Pause(0.05),
        b": heartbeat\n\n",
        b": heartbeat\r\n\r\n",
        second,
        framing="chunked",
    )


@pytest.mark.parametrize(
    "script",
    [_crlf_split_between_cr_and_lf, _split_every_7_bytes, _heartbeats_between_events],
    ids=["crlf-split-between-cr-and-lf", "split-every-7-bytes", "heartbeats"],
)
async def test_it_reads_the_example_however_it_arrives(
    fake_vendor: FakeVendor, script: Any
) -> None:
    fake_vendor.add_route("POST", SEND, script())

    assert await collect(make_request(fake_vendor)) == DOC_EVENTS


# Creating the conversation and sending -----------------------------------------------------


async def test_it_creates_the_conversation_then_sends_the_message(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    fake_vendor.add_route(
        "POST",
        CREATE,
        json_script({"data": {"id": CONV, "title": "Refund question", "app_id": None}}, 201),
    )

    events = await run(
        fake_vendor,
        started(1),
        delta(2, "Hi"),
        completed(3),
        vendor_conversation_id="",
        title="Refund question",
        message="Hello?",
    )

    assert events == [VendorConversation(CONV), RUN_IDS, TextDelta("Hi"), RunCompleted("completed")]
    create, send = fake_vendor.requests
    assert (create.method, create.path) == ("POST", CREATE)
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.headers["content-type"] == "application/json"
    assert create.json() == {"title": "Refund question", "model_id": MODEL}
    assert (send.method, send.path) == ("POST", SEND)
    assert send.headers["authorization"] == f"Bearer {TOKEN}"
    assert send.headers["accept"] == "text/event-stream"
    assert send.json() == {
        "model_id": MODEL,
        "content": [{"type": "text", "text": "Hello?"}],
        "subagents_enabled": False,
    }


async def test_it_creates_an_app_conversation_without_title_or_model(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route("POST", CREATE, json_script({"data": {"id": CONV}}))

    await run(
        fake_vendor,
        completed(1),
        vendor_conversation_id="",
        options={"app_id": APP, "subagents_enabled": True},
        message="Hi",
    )

    create, send = fake_vendor.requests
    assert "authorization" not in create.headers  # no token configured: a public app
    assert create.json() == {"app_id": APP}
    assert send.json() == {"content": [{"type": "text", "text": "Hi"}], "subagents_enabled": True}


async def test_it_fails_when_the_created_conversation_has_no_id(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", CREATE, json_script({"message": "ok"}))

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor, vendor_conversation_id=""))

    assert caught.value.code == ErrorCode.VENDOR_PROTOCOL
    assert paths(fake_vendor) == [("POST", CREATE)]


# Stream contents ----------------------------------------------------------------------------


async def test_it_keeps_reasoning_apart_from_the_answer(fake_vendor: FakeVendor) -> None:
    def reasoning(sequence: int, text: str) -> bytes:
        data = {"object": "agent.reasoning.delta", "delta": text, "iteration": 1}
        return event("agent.reasoning.delta", sequence, data)

    events = await run(
        fake_vendor,
        started(1),
        reasoning(2, "The ticket mentions "),
        reasoning(3, "two charges."),
        delta(4, "You were charged twice."),
        completed(5),
    )

    assert events == [
        RUN_IDS,
        ReasoningDelta("The ticket mentions "),
        ReasoningDelta("two charges."),
        TextDelta("You were charged twice."),
        RunCompleted("completed"),
    ]


async def test_it_reports_a_tool_call_with_its_input_and_result(fake_vendor: FakeVendor) -> None:
    tool_input = {"query": "duplicate charge", "limit": 3}
    events = await run(
        fake_vendor,
        started(1),
        event(
            "agent.tool_call.completed",
            2,
            {
                "id": "tc-1",
                "object": "agent.tool_call",
                "input": tool_input,
                "result": "Ticket 4812: charged twice on 2026-06-09",
                "iteration": 1,
                "tool": {"name": "search_tickets", "type": "function"},
            },
        ),
        delta(3, "Found it."),
        completed(4),
    )

    assert events == [
        RUN_IDS,
        ToolCallStarted("tc-1", "search_tickets"),
        ToolCallCompleted("tc-1", "search_tickets", json.dumps(tool_input)),
        ToolCallResult("tc-1", "Ticket 4812: charged twice on 2026-06-09"),
        TextDelta("Found it."),
        RunCompleted("completed"),
    ]


async def test_it_drops_duplicates_and_records_gaps(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        started(1),
        delta(2, "A"),
        delta(2, "A"),
        delta(3, "B"),
        delta(1, "stale"),
        delta(6, "C"),
        completed(7),
    )

    assert events == [
        RUN_IDS,
        TextDelta("A"),
        TextDelta("B"),
        VendorExtra("sequence_gaps", {"expected": 4, "got": 6}),
        TextDelta("C"),
        RunCompleted("completed"),
    ]


async def test_it_keeps_unknown_events_and_reads_the_envelope_type(
    fake_vendor: FakeVendor,
) -> None:
    subagent = {
        "id": "evt-2",
        "type": "agent.subagent.started",
        "sequence": 2,
        "timestamp": "2026-06-10T09:11:03Z",
        "data": {"object": "agent.subagent", "name": "billing"},
    }
    # No `event:` line: dispatched on the envelope's `type`.
    untitled = {
        "id": "evt-3",
        "type": "agent.response.delta",
        "sequence": 3,
        "data": {"delta": "X"},
    }
    events = await run(
        fake_vendor,
        started(1),
        sse(subagent, event="agent.subagent.started"),
        sse(untitled),
        sse("not json", event="custom.ping"),
        completed(4),
    )

    assert events == [
        RUN_IDS,
        VendorExtra("unknown_events", subagent),
        TextDelta("X"),
        VendorExtra("unknown_events", {"event": "custom.ping", "data": "not json"}),
        RunCompleted("completed"),
    ]


async def test_it_shows_the_run_output_when_nothing_streamed(fake_vendor: FakeVendor) -> None:
    finished = {"id": RUN, "object": "run", "status": "completed", "output": "All done."}
    events = await run(fake_vendor, started(1), event("run.completed", 2, finished))

    assert events == [RUN_IDS, TextDelta("All done."), RunCompleted("completed")]


async def test_it_fails_the_run_on_run_failed(fake_vendor: FakeVendor) -> None:
    failure = {
        "id": RUN,
        "object": "run",
        "status": "failed",
        "error": {"code": "tool_error", "message": "Tool search_tickets timed out"},
    }
    fake_vendor.add_route("POST", f"{RUN_PATH}/cancel", json_script({"message": "canceled"}))

    events = await run(
        fake_vendor, started(1), delta(2, "Partial"), event("run.failed", 3, failure), delta(4, "x")
    )

    assert events == [
        RUN_IDS,
        TextDelta("Partial"),
        RunFailed(ErrorCode.VENDOR_ERROR, "Tool search_tickets timed out", failure),
    ]
    # The run is over at Dynamiq: nothing to cancel.
    assert paths(fake_vendor) == [("POST", SEND)]


async def test_it_fails_the_run_on_run_canceled(fake_vendor: FakeVendor) -> None:
    canceled = {"id": RUN, "object": "run", "status": "canceled"}
    events = await run(fake_vendor, started(1), event("run.canceled", 2, canceled))

    assert events == [
        RUN_IDS,
        RunFailed(ErrorCode.VENDOR_ERROR, "The run was canceled at Dynamiq.", canceled),
    ]


async def test_it_fails_on_an_unreadable_known_event_and_cancels_the_run(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route("POST", f"{RUN_PATH}/cancel", json_script({"message": "canceled"}))

    events = await run(
        fake_vendor, started(1), sse('{"sequence": 2, "data": {"del', event="agent.response.delta")
    )

    assert events == [
        RUN_IDS,
        RunFailed(
            ErrorCode.VENDOR_PROTOCOL,
            "Dynamiq sent an unreadable agent.response.delta event (not a JSON object): "
            '\'{"sequence": 2, "data": {"del\'',
        ),
    ]
    assert paths(fake_vendor)[-1] == ("POST", f"{RUN_PATH}/cancel")


async def test_it_ends_without_a_terminal_event_when_the_stream_is_cut(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route("POST", f"{RUN_PATH}/cancel", json_script({"message": "canceled"}))

    # The terminal event is cut mid-line: unlike a missing final blank line, that is not read.
    events = await run(fake_vendor, started(1), delta(2, "Hel"), completed(3)[:40], Hangup())

    assert events == [RUN_IDS, TextDelta("Hel")]
    # The relay reports `vendor_truncated`; the run may still be going at Dynamiq.
    assert paths(fake_vendor) == [("POST", SEND), ("POST", f"{RUN_PATH}/cancel")]


# Interrupts and resume ----------------------------------------------------------------------


async def test_it_pauses_for_human_feedback(fake_vendor: FakeVendor) -> None:
    request_data = {"object": "agent.human_feedback", "id": "hf-1", "prompt": "Which order?"}
    fake_vendor.add_route(
        "POST",
        SEND,
        sse_script(
            started(1),
            delta(2, "Let me check."),
            event("agent.human_feedback.requested", 3, request_data),
            Pause(5),
        ),
    )

    started_at = time.monotonic()
    events = await relay_like(make_request(fake_vendor))

    assert events == [
        RUN_IDS,
        TextDelta("Let me check."),
        InterruptRequested(
            "hf-1",
            "human_feedback",
            "Which order?",
            {"run_id": RUN, "kind": "human_feedback", "after_sequence": 3},
        ),
    ]
    assert time.monotonic() - started_at < 2
    # The run waits for the answer at Dynamiq: closing our stream must not cancel it.
    assert paths(fake_vendor) == [("POST", SEND)]


async def test_it_pauses_for_an_approval(fake_vendor: FakeVendor) -> None:
    approval = {
        "id": "apr-1",
        "object": "approval_request",
        "type": "approval_request",
        "prompt": "Refund $42.10 to the customer's card?",
        "params": {"amount": 42.1, "currency": "USD"},
        "editable_params": ["amount"],
    }

    events = await relay_like_with(
        fake_vendor, started(1), event("approval_request.created", 2, approval)
    )

    assert events == [
        RUN_IDS,
        InterruptRequested(
            "apr-1",
            "approval",
            {
                "prompt": "Refund $42.10 to the customer's card?",
                "params": {"amount": 42.1, "currency": "USD"},
                "editable_params": ["amount"],
            },
            {"run_id": RUN, "kind": "approval", "after_sequence": 2},
        ),
    ]


async def test_it_refuses_an_input_request_it_could_not_answer(fake_vendor: FakeVendor) -> None:
    # No run.started and no run id anywhere: /v1/runs/{run_id}/input cannot be reached.
    envelope_data = {"object": "agent.human_feedback", "id": "hf-1", "prompt": "Which order?"}

    events = await run(fake_vendor, event("agent.human_feedback.requested", 1, envelope_data))

    assert [type(e) for e in events] == [VendorExtra, RunFailed]
    assert events[0].key == "unanswerable_requests"  # type: ignore[union-attr]
    assert events[1].code == ErrorCode.VENDOR_PROTOCOL  # type: ignore[union-attr]
    assert "which run asked" in events[1].message  # type: ignore[union-attr]


async def test_it_resumes_after_human_feedback(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    fake_vendor.add_route("POST", f"{RUN_PATH}/input", json_script({"message": "accepted"}))
    fake_vendor.add_route(
        "GET",
        f"{RUN_PATH}/stream",
        sse_script(
            delta(3, "already shown"),  # a replay overlapping what the first stream showed
            b": heartbeat\n\n",
            delta(4, "Order 4812 "),
            delta(5, "is refunded."),
            completed(6),
        ),
    )
    resume = {
        "interrupt_id": "hf-1",
        "payload": "Order 4812",
        "reason": "human_feedback",
        "vendor_data": {"run_id": RUN, "kind": "human_feedback", "after_sequence": 3},
    }

    events = await collect(make_request(fake_vendor, "Order 4812", resume=resume))

    assert events == [
        RUN_IDS,
        TextDelta("Order 4812 "),
        TextDelta("is refunded."),
        RunCompleted("completed"),
    ]
    answer, stream = fake_vendor.requests
    assert (answer.method, answer.path) == ("POST", f"{RUN_PATH}/input")
    assert answer.headers["authorization"] == f"Bearer {TOKEN}"
    assert answer.json() == {
        "type": "human_feedback",
        "data": {"request_id": "hf-1", "feedback": "Order 4812"},
    }
    assert (stream.method, stream.path) == ("GET", f"{RUN_PATH}/stream")
    assert stream.query == {"after_sequence": ["3"]}
    assert stream.headers["accept"] == "text/event-stream"
    assert stream.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("answer", "decision"),
    [
        ("yes", {"is_approved": True}),
        ("Oui.", {"is_approved": True}),
        ("No, the amount is wrong", {"is_approved": False, "feedback": "No, the amount is wrong"}),
        ({"approved": True, "data": {"amount": 40}}, {"is_approved": True, "data": {"amount": 40}}),
    ],
    ids=["yes", "oui", "feedback-rejects", "json"],
)
async def test_it_answers_an_approval_on_the_runs_host(
    fake_vendor: FakeVendor, answer: Any, decision: dict[str, Any]
) -> None:
    runs = f"/app{RUN_PATH}"
    fake_vendor.add_route("POST", f"{runs}/input", json_script({"message": "accepted"}))
    fake_vendor.add_route("GET", f"{runs}/stream", sse_script(delta(3, "Refunded."), completed(4)))
    resume = {
        "interrupt_id": "apr-1",
        "payload": answer,
        "reason": "approval",
        "vendor_data": {"run_id": RUN, "kind": "approval", "after_sequence": 2},
    }
    options = {"model_id": MODEL, "runs_base_url": f"{fake_vendor.url}/app/"}

    events = await collect(make_request(fake_vendor, "yes", resume=resume, options=options))

    assert events == [RUN_IDS, TextDelta("Refunded."), RunCompleted("completed")]
    assert paths(fake_vendor) == [("POST", f"{runs}/input"), ("GET", f"{runs}/stream")]
    # GUESS (docs/providers/dynamiq.md): the approval answer's shape is not documented.
    assert fake_vendor.requests[0].json() == {
        "type": "approval_request",
        "data": {"request_id": "apr-1", **decision},
    }


async def test_it_explains_an_unknown_run_on_resume(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route(
        "POST", f"{RUN_PATH}/input", json_script({"error": {"code": "not_found"}}, 404)
    )
    resume = {
        "interrupt_id": "hf-1",
        "payload": "x",
        "reason": "human_feedback",
        "vendor_data": {"run_id": RUN, "kind": "human_feedback", "after_sequence": 3},
    }

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor, resume=resume))

    assert caught.value.code == ErrorCode.VENDOR_NOT_FOUND
    assert "runs_base_url" in caught.value.message
    # Never retried; the cancel that follows is harmless on a run Dynamiq does not know.
    assert paths(fake_vendor) == [("POST", f"{RUN_PATH}/input"), ("POST", f"{RUN_PATH}/cancel")]


async def test_it_refuses_a_resume_without_a_run_id(fake_vendor: FakeVendor) -> None:
    resume = {"interrupt_id": "hf-1", "payload": "x", "reason": "human_feedback", "vendor_data": {}}

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor, resume=resume))

    assert caught.value.code == ErrorCode.VENDOR_PROTOCOL
    assert fake_vendor.requests == []


# Errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            400,
            BAD_REQUEST,
            ErrorCode.VENDOR_BAD_REQUEST,
            "The vendor answered 400: Bad Request (input: cannot be blank)",
        ),
        (
            401,
            {"error": {"code": "unauthorized", "message": "Unauthorized"}},
            ErrorCode.VENDOR_AUTH,
            f"The vendor refused our credentials (401): check the token in the {TOKEN_ENV} "
            "environment variable. Vendor said: Unauthorized",
        ),
        (
            404,
            {"error": {"code": "not_found", "message": "Not Found"}},
            ErrorCode.VENDOR_CONVERSATION_LOST,
            dynamiq.CONVERSATION_LOST,
        ),
    ],
    ids=["400-with-details", "401", "404-conversation-lost"],
)
async def test_it_raises_the_vendor_error_on_send(
    fake_vendor: FakeVendor, status: int, body: Any, code: str, message: str
) -> None:
    fake_vendor.add_route("POST", SEND, json_script(body, status=status))

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor))

    assert (caught.value.code, caught.value.message) == (code, message)
    assert caught.value.status == status
    assert caught.value.details.get("vendor_error") == body["error"]
    assert paths(fake_vendor) == [("POST", SEND)]  # never retried


async def test_it_raises_on_create_with_the_details(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", CREATE, json_script(BAD_REQUEST, status=400))

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor, vendor_conversation_id=""))

    assert caught.value.code == ErrorCode.VENDOR_BAD_REQUEST
    assert caught.value.message.endswith("Bad Request (input: cannot be blank)")
    assert paths(fake_vendor) == [("POST", CREATE)]


async def test_it_blames_the_url_for_a_404_on_a_conversation_it_just_created(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route("POST", CREATE, json_script({"data": {"id": CONV}}))
    fake_vendor.add_route("POST", SEND, json_script({"error": {"message": "Not Found"}}, 404))
    events: list[ProviderEvent] = []

    with pytest.raises(VendorError) as caught:
        async for item in provider().stream(make_request(fake_vendor, vendor_conversation_id="")):
            events.append(item)

    assert events == [VendorConversation(CONV)]
    assert caught.value.code == ErrorCode.VENDOR_NOT_FOUND
    assert "base URL" in caught.value.message


# Cancellation ------------------------------------------------------------------------------


async def _consume_until_text(request: RunRequest) -> tuple[asyncio.Task[None], list[Any]]:
    seen: list[Any] = []
    got_text = asyncio.Event()

    async def consume() -> None:
        async for item in provider().stream(request):
            seen.append(item)
            if isinstance(item, TextDelta):
                got_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_text.wait(), 5)
    return task, seen


async def test_it_cancels_the_vendor_run_when_the_user_stops(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    fake_vendor.add_route(
        "POST", SEND, sse_script(started(1), delta(2, "Thinking about"), Pause(10))
    )
    fake_vendor.add_route("POST", f"{RUN_PATH}/cancel", json_script({"message": "canceled"}))
    task, seen = await _consume_until_text(make_request(fake_vendor))

    stopped_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert time.monotonic() - stopped_at < 1.0
    assert seen == [RUN_IDS, TextDelta("Thinking about")]
    send, cancel = fake_vendor.requests
    assert (cancel.method, cancel.path) == ("POST", f"{RUN_PATH}/cancel")
    assert cancel.headers["authorization"] == f"Bearer {TOKEN}"
    assert send.client_closed.wait(1)


async def test_it_bounds_a_hanging_vendor_cancel(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamiq, "CANCEL_TIMEOUT", 0.2)
    fake_vendor.add_route("POST", SEND, sse_script(started(1), delta(2, "Hi"), Pause(10)))
    fake_vendor.add_route("POST", f"{RUN_PATH}/cancel", Script(chunks=[Pause(5)]))
    task, _ = await _consume_until_text(make_request(fake_vendor))

    stopped_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert time.monotonic() - stopped_at < 1.0
    assert paths(fake_vendor)[-1] == ("POST", f"{RUN_PATH}/cancel")


async def test_it_cancels_the_vendor_run_when_the_consumer_walks_away(
    fake_vendor: FakeVendor,
) -> None:
    # The relay cancelled while handling an event: it closes the stream before a terminal event.
    fake_vendor.add_route("POST", SEND, sse_script(started(1), delta(2, "Hi"), Pause(10)))
    fake_vendor.add_route("POST", f"{RUN_PATH}/cancel", json_script({"message": "canceled"}))

    async with contextlib.aclosing(provider().stream(make_request(fake_vendor))) as stream:
        async for item in stream:
            if isinstance(item, TextDelta):
                break

    assert paths(fake_vendor) == [("POST", SEND), ("POST", f"{RUN_PATH}/cancel")]


# Deleting ----------------------------------------------------------------------------------


async def test_it_deletes_the_conversation(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    fake_vendor.add_route("DELETE", f"{CREATE}/{CONV}", json_script({"message": "deleted"}))

    await provider().delete_conversation(make_agent(fake_vendor), CONV)

    [request] = fake_vendor.requests
    assert (request.method, request.path) == ("DELETE", f"{CREATE}/{CONV}")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_it_treats_an_already_deleted_conversation_as_deleted(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route(
        "DELETE", f"{CREATE}/{CONV}", json_script({"error": {"message": "Not Found"}}, 404)
    )

    await provider().delete_conversation(make_agent(fake_vendor), CONV)


async def test_it_raises_when_the_delete_fails(fake_vendor: FakeVendor) -> None:
    def refuse(request: RecordedRequest) -> Script:
        return json_script({"error": {"code": "internal", "message": "Database down"}}, 503)

    fake_vendor.add_route("DELETE", f"{CREATE}/{CONV}", refuse)

    with pytest.raises(VendorError) as caught:
        await provider().delete_conversation(make_agent(fake_vendor), CONV)

    assert caught.value.code == ErrorCode.VENDOR_UNAVAILABLE
    assert caught.value.message == "The vendor answered 503: Database down"


# Configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"model_id": MODEL}, None),
        ({"app_id": APP, "subagents_enabled": True}, None),
        ({"model_id": 12345, "runs_base_url": "https://my-app.getdynamiq.ai"}, None),
        ({}, "missing option 'model_id' or 'app_id'"),
        ({"model_id": "", "app_id": ""}, "missing option 'model_id' or 'app_id'"),
        ({"model_id": MODEL, "app_id": APP}, "exclude each other"),
        ({"app_id": ["x"]}, "option 'app_id' must be an id"),
        ({"model_id": MODEL, "subagents_enabled": "yes"}, "'subagents_enabled' must be true"),
        ({"model_id": MODEL, "runs_base_url": "my-app.example"}, "'runs_base_url' must be"),
    ],
)
def test_it_validates_options(options: dict[str, Any], problem: str | None) -> None:
    problems = DynamiqProvider.validate_options(options)

    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


async def test_it_accepts_a_base_url_ending_in_a_version(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", SEND, sse_script(completed(1)))
    request = make_request(fake_vendor)
    agent = AgentConfig(
        slug="dyn",
        provider="dynamiq",
        base_url=f"{fake_vendor.url}/v1/",
        options=request.agent.options,
    )

    events = await collect(
        RunRequest(agent=agent, conversation_id="c1", message="Hi", vendor_conversation_id=CONV)
    )

    assert events == [RUN_IDS, RunCompleted("completed")]
