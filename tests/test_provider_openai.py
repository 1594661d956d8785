"""The OpenAI Chat Completions provider against a real loopback vendor (docs/providers.md)."""

from __future__ import annotations

import asyncio
import time

import pytest

from conversations.events import (
    ErrorCode,
    ProviderEvent,
    ReasoningDelta,
    RunCompleted,
    RunFailed,
    TextDelta,
    ToolCallCompleted,
    ToolCallDelta,
    ToolCallStarted,
    Usage,
)
from conversations.providers import get_provider
from conversations.providers.base import ChatTurn, Timeouts, VendorError
from conversations.providers.openai import OpenAIProvider
from tests.fakevendor import (
    Chunk,
    FakeVendor,
    Hangup,
    Pause,
    json_script,
    openai_chunk,
    openai_tool_call,
    sse,
    sse_script,
)
from tests.providers_helpers import AgentSpec

ROUTE = "/v1/chat/completions"
TOKEN_ENV = "CHATSITE_TEST_OPENAI_TOKEN"
USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
DONE = sse("[DONE]")


AGENT = AgentSpec(
    OpenAIProvider,
    slug="gpt",
    options={"model": "gpt-test"},
    token_env=TOKEN_ENV,
    path="/v1/",
)
make_request, collect = AGENT.request, AGENT.collect


async def run(vendor: FakeVendor, *chunks: Chunk, **request: object) -> list[ProviderEvent]:
    vendor.add_route("POST", ROUTE, sse_script(*chunks))
    return await collect(make_request(vendor, **request))


async def test_it_streams_text_until_done(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse(openai_chunk("", role="assistant")),
        sse(openai_chunk("Hel")),
        Pause(0.05),
        sse(openai_chunk("lo, ")),
        sse(openai_chunk("wörld")),
        sse(openai_chunk(finish_reason="stop")),
        sse(openai_chunk(choices=[], usage=USAGE)),
        DONE,
    )

    assert events == [
        TextDelta("Hel"),
        TextDelta("lo, "),
        TextDelta("wörld"),
        Usage(12, 3, 15),
        RunCompleted("stop"),
    ]


async def test_it_sends_the_model_history_and_token(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "sk-test-123")
    history = [
        ChatTurn("user", "Hi"),
        ChatTurn("assistant", "Hello! How can I help?"),
        ChatTurn("tool", '{"ok": true}'),
        ChatTurn("assistant", ""),
    ]

    await run(
        fake_vendor,
        DONE,
        message="What's 2+2?",
        turns=history,
        system_prompt="Be brief.",
        temperature=0.2,
        max_tokens=256,
    )

    [request] = fake_vendor.requests
    assert (request.method, request.path) == ("POST", ROUTE)
    assert request.headers["authorization"] == "Bearer sk-test-123"
    assert request.headers["accept"] == "text/event-stream"
    assert request.json() == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "What's 2+2?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_tokens": 256,
    }


async def test_it_merges_parallel_tool_call_fragments_by_index(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse(
            openai_chunk(
                role="assistant",
                tool_calls=[
                    openai_tool_call(0, id="call_a", name="get_weather", arguments=""),
                ],
            )
        ),
        sse(openai_chunk(tool_calls=[openai_tool_call(0, arguments='{"city": ')])),
        sse(
            openai_chunk(
                tool_calls=[
                    openai_tool_call(1, id="call_b", name="get_time", arguments='{"tz"'),
                ]
            )
        ),
        sse(openai_chunk(tool_calls=[openai_tool_call(0, arguments='"Paris"}')])),
        sse(openai_chunk(tool_calls=[openai_tool_call(1, arguments=': "CET"}')])),
        sse(openai_chunk(finish_reason="tool_calls")),
        sse(openai_chunk(choices=[], usage=USAGE)),
        DONE,
    )

    assert events == [
        ToolCallStarted("call_a", "get_weather"),
        ToolCallDelta("call_a", '{"city": '),
        ToolCallStarted("call_b", "get_time"),
        ToolCallDelta("call_b", '{"tz"'),
        ToolCallDelta("call_a", '"Paris"}'),
        ToolCallDelta("call_b", ': "CET"}'),
        ToolCallCompleted("call_a", "get_weather", '{"city": "Paris"}'),
        ToolCallCompleted("call_b", "get_time", '{"tz": "CET"}'),
        Usage(12, 3, 15),
        RunCompleted("tool_calls"),
    ]


async def test_it_completes_tool_calls_at_done_without_a_finish_reason(
    fake_vendor: FakeVendor,
) -> None:
    # Ollama-style: the whole call in one fragment, no id, and no finish_reason chunk.
    events = await run(
        fake_vendor,
        sse(openai_chunk(tool_calls=[{"function": {"name": "lookup", "arguments": {"q": 1}}}])),
        DONE,
    )

    assert events == [
        ToolCallStarted("call_0", "lookup"),
        ToolCallDelta("call_0", '{"q": 1}'),
        ToolCallCompleted("call_0", "lookup", '{"q": 1}'),
        RunCompleted(None),
    ]


@pytest.mark.parametrize("choices", [[], None], ids=["empty", "null"])
async def test_it_reads_the_usage_chunk(fake_vendor: FakeVendor, choices: object) -> None:
    events = await run(
        fake_vendor,
        sse(openai_chunk("Hi", finish_reason="stop")),
        sse(openai_chunk(choices=choices, usage=USAGE)),
        DONE,
    )

    assert events == [TextDelta("Hi"), Usage(12, 3, 15), RunCompleted("stop")]


async def test_it_keeps_reasoning_apart_from_the_answer(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse(openai_chunk(reasoning_content="Thinking…")),
        sse(openai_chunk("42", finish_reason="stop")),
        DONE,
    )

    assert events == [ReasoningDelta("Thinking…"), TextDelta("42"), RunCompleted("stop")]


async def test_it_fails_the_run_on_an_error_inside_the_stream(fake_vendor: FakeVendor) -> None:
    events = await run(
        fake_vendor,
        sse(openai_chunk("Partial ")),
        sse({"error": {"message": "The server had an error while processing", "type": "server"}}),
        sse(openai_chunk("never seen")),
    )

    assert events == [
        TextDelta("Partial "),
        RunFailed(
            ErrorCode.VENDOR_ERROR,
            "The server had an error while processing",
            {"message": "The server had an error while processing", "type": "server"},
        ),
    ]


async def test_it_fails_the_run_on_an_error_event(fake_vendor: FakeVendor) -> None:
    events = await run(fake_vendor, sse("Overloaded, try again", event="error"), DONE)

    assert events == [RunFailed(ErrorCode.VENDOR_ERROR, "Overloaded, try again")]


async def test_it_fails_the_run_on_malformed_json(fake_vendor: FakeVendor) -> None:
    events = await run(fake_vendor, sse(openai_chunk("ok")), sse('{"choices": [tru'), DONE)

    assert events == [
        TextDelta("ok"),
        RunFailed(
            ErrorCode.VENDOR_PROTOCOL,
            "The vendor sent an event that is not valid JSON: '{\"choices\": [tru'",
        ),
    ]


async def test_it_ends_without_a_terminal_event_when_done_never_comes(
    fake_vendor: FakeVendor,
) -> None:
    events = await run(
        fake_vendor,
        sse(openai_chunk("Hel")),
        sse(openai_chunk("lo", finish_reason="stop")),
        Hangup(),
    )

    assert events == [TextDelta("Hel"), TextDelta("lo")]


async def test_it_raises_vendor_auth_on_401(
    fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "sk-wrong")
    fake_vendor.add_route(
        "POST",
        ROUTE,
        json_script({"error": {"message": "Incorrect API key provided"}}, status=401),
    )

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor))

    assert caught.value.code == ErrorCode.VENDOR_AUTH
    assert TOKEN_ENV in caught.value.message
    assert "Incorrect API key provided" in caught.value.message


async def test_it_raises_vendor_unavailable_on_500_without_retrying(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.add_route("POST", ROUTE, json_script({"error": {"message": "busy"}}, status=500))

    with pytest.raises(VendorError) as caught:
        await collect(make_request(fake_vendor))

    assert caught.value.code == ErrorCode.VENDOR_UNAVAILABLE
    assert caught.value.message == "The vendor answered 500: busy"
    assert len(fake_vendor.requests) == 1


async def test_it_accepts_a_whole_completion_when_the_backend_ignores_stream(
    fake_vendor: FakeVendor,
) -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "All at once."},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    fake_vendor.add_route("POST", ROUTE, json_script(completion))

    events = await collect(make_request(fake_vendor))

    assert events == [TextDelta("All at once."), Usage(12, 3, 15), RunCompleted("stop")]


async def test_it_waits_longer_than_httpx_default_timeout(fake_vendor: FakeVendor) -> None:
    # httpx's default is 5 s per read; a 6 s silence (a long tool call) must not end the run.
    provider = get_provider("openai", Timeouts())
    fake_vendor.add_route(
        "POST",
        ROUTE,
        sse_script(sse(openai_chunk("Let me think")), Pause(6), sse(openai_chunk(".")), DONE),
    )
    started = time.monotonic()

    events = [event async for event in provider.stream(make_request(fake_vendor))]

    assert events == [TextDelta("Let me think"), TextDelta("."), RunCompleted(None)]
    assert time.monotonic() - started >= 6


async def test_it_closes_the_vendor_connection_when_cancelled(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route(
        "POST", ROUTE, sse_script(sse(openai_chunk("Hel")), Pause(10), sse(openai_chunk("lo")))
    )
    first = asyncio.Event()
    received: list[ProviderEvent] = []

    async def consume() -> None:
        async for event in OpenAIProvider().stream(make_request(fake_vendor)):
            received.append(event)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert task.cancelled()
    assert received == [TextDelta("Hel")]
    assert fake_vendor.requests[0].client_closed.wait(1)
