"""The demo agent: markdown reply, tool call, failure on request, prompt cancellation."""

from __future__ import annotations

import asyncio
import json
import time

from conversations.events import (
    ErrorCode,
    ProviderEvent,
    RunCompleted,
    RunFailed,
    TextDelta,
    ToolCallCompleted,
    ToolCallDelta,
    ToolCallResult,
    ToolCallStarted,
    Usage,
)
from conversations.providers import get_provider
from conversations.providers.base import AgentConfig, ChatTurn, RunRequest, Timeouts
from conversations.providers.demo import DemoProvider
from tests.providers_helpers import AgentSpec

AGENT = AgentSpec(DemoProvider, slug="demo", name="Demo")


async def run(message: str, history: list[ChatTurn] | None = None) -> list[ProviderEvent]:
    provider = DemoProvider()
    provider.delay = 0
    return [event async for event in provider.stream(AGENT.request(None, message, turns=history))]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def test_it_streams_a_markdown_reply_quoting_the_message() -> None:
    events = await run("How do\nI start?", [ChatTurn("user", "hi"), ChatTurn("assistant", "yo")])

    text = text_of(events)
    deltas = [event for event in events if isinstance(event, TextDelta)]
    assert text.startswith("## Demo reply\n")
    assert "> How do\n> I start?\n" in text
    assert "\n- **Stop** the reply while it streams\n" in text
    assert "| Feature | What to look for |\n|---|---|\n" in text
    assert "```python\ndef greet(name: str) -> str:\n" in text
    assert "2 earlier messages" in text
    assert 150 <= len(deltas) <= 250
    assert max(len(delta.text) for delta in deltas) <= 8
    assert events[-2:] == [
        Usage(4 + 2, len(text.split()), 6 + len(text.split())),
        RunCompleted("stop"),
    ]


async def test_it_registers_under_the_demo_kind() -> None:
    assert isinstance(get_provider("demo", Timeouts()), DemoProvider)


async def test_it_calls_a_tool_before_the_text_when_asked() -> None:
    events = await run("Use the TOOL to find my order")

    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    started, *arg_deltas, completed, result = events[:first_text]
    assert isinstance(started, ToolCallStarted)
    assert started.name == "lookup_order"
    call_id = started.call_id
    assert len(arg_deltas) >= 3
    assert all(isinstance(e, ToolCallDelta) and e.call_id == call_id for e in arg_deltas)
    arguments = "".join(e.delta for e in arg_deltas if isinstance(e, ToolCallDelta))
    assert json.loads(arguments) == {"order_id": "A-1042", "fields": ["status", "carrier", "eta"]}
    assert completed == ToolCallCompleted(call_id, "lookup_order", arguments)
    assert result == ToolCallResult(
        call_id, {"order_id": "A-1042", "status": "shipped", "carrier": "Purolator", "eta_days": 2}
    )
    assert text_of(events).startswith("I looked up order **A-1042**")
    assert events[-1] == RunCompleted("stop")


async def test_it_skips_the_tool_call_when_not_asked() -> None:
    events = await run("Just talk")

    assert not any(isinstance(e, ToolCallStarted | ToolCallResult) for e in events)


async def test_it_fails_on_request() -> None:
    events = await run("please fail-demo now")

    assert text_of(events) == "Starting the demo reply, then failing on purpose"
    assert events[-1] == RunFailed(ErrorCode.VENDOR_ERROR, "The demo agent was asked to fail.")
    assert not any(isinstance(e, RunCompleted) for e in events)


async def test_it_does_not_fail_on_a_longer_word() -> None:
    events = await run("fail-demonstration")

    assert events[-1] == RunCompleted("stop")


async def test_it_paces_deltas_and_stops_at_once_when_cancelled() -> None:
    provider = DemoProvider()
    received: list[ProviderEvent] = []

    async def consume() -> None:
        async for event in provider.stream(AGENT.request(None, "Hello")):
            received.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    cancelled_at = time.monotonic()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    stopped_after = time.monotonic() - cancelled_at
    count_at_cancel = len(received)
    await asyncio.sleep(0.1)

    assert task.cancelled()
    assert stopped_after < 0.1
    assert 4 <= count_at_cancel <= 14  # ~40 deltas/s for 0.3 s
    assert len(received) == count_at_cancel
    assert not any(isinstance(e, RunCompleted | RunFailed) for e in received)


async def test_it_asks_for_approval_and_continues_after_the_answer():
    from conversations.events import InterruptRequested

    agent = AgentConfig(slug="demo", provider="demo", options={"delay": 0})
    provider = DemoProvider()
    events = [e async for e in provider.stream(RunRequest(agent, "c", "needs approval please"))]
    interrupt = events[-1]
    assert isinstance(interrupt, InterruptRequested)
    assert interrupt.reason == "approval"
    assert interrupt.payload["options"] == ["approve", "reject"]
    resume = {"interrupt_id": interrupt.interrupt_id, "payload": "approve", "reason": "approval",
              "vendor_data": {}}
    after = [e async for e in DemoProvider().stream(
        RunRequest(agent, "c", "approve", resume=resume))]
    text = "".join(e.text for e in after if isinstance(e, TextDelta))
    assert "You answered: *approve*" in text and "49.99 CAD** is on its way" in text
    assert isinstance(after[-1], RunCompleted)
