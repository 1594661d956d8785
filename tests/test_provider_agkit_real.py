"""The AG-Kit provider against CloudBase's real agent server (`cloudbase-agent-server` 0.1.22).

A scripted agent of our own is served by the package's `AgentServiceApp` (FastAPI) with uvicorn
on a loopback port, so the request body, the AG-UI events and the error paths are the server's
own. The last user message picks the script. 0.1.22 rebuilds RUN_FINISHED without its
`outcome`, so AG-UI interrupts cannot come through it: those are tested against the fake vendor
(test_provider_agkit.py).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

pytest.importorskip("cloudbase_agent.server", reason="install cloudbase-agent-server (dev extra)")

import uvicorn  # noqa: E402 -- a dependency of cloudbase-agent-server, present only with it
from ag_ui.core import (  # noqa: E402
    BaseEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from cloudbase_agent.server import AgentServiceApp  # noqa: E402

from conversations.events import (  # noqa: E402
    ErrorCode,
    RunCompleted,
    RunFailed,
    TextDelta,
    ToolCallCompleted,
    ToolCallDelta,
    ToolCallResult,
    ToolCallStarted,
    VendorConversation,
)
from conversations.providers.agkit import AGKitProvider  # noqa: E402
from conversations.providers.base import ChatTurn, VendorError  # noqa: E402
from tests.providers_helpers import AgentSpec  # noqa: E402

CONVERSATION = "6c1e7a52-0000-4000-8000-000000000002"
NEW = VendorConversation(CONVERSATION)


class ScriptedAgent:
    """Deterministic stand-in for an LLM agent, speaking AG-UI events as CloudBase agents do."""

    async def run(self, run_input: RunAgentInput) -> AsyncIterator[BaseEvent]:
        thread_id, run_id = run_input.thread_id or "", run_input.run_id
        yield RunStartedEvent(thread_id=thread_id, run_id=run_id)
        if run_input.resume:
            answer = run_input.resume[0]
            for event in _text(f"Resumed {answer.interrupt_id}: {answer.payload['approved']}"):
                yield event
        else:
            prompt = run_input.messages[-1].content if run_input.messages else ""
            if prompt == "weather":
                yield ToolCallStartEvent(tool_call_id="tc1", tool_call_name="get_weather")
                yield ToolCallArgsEvent(tool_call_id="tc1", delta='{"city": ')
                yield ToolCallArgsEvent(tool_call_id="tc1", delta='"Paris"}')
                yield ToolCallEndEvent(tool_call_id="tc1")
                yield ToolCallResultEvent(
                    message_id="r1", tool_call_id="tc1", content="Sunny, 25°C", role="tool"
                )
                for event in _text("It is sunny in Paris."):
                    yield event
            elif prompt == "refuse":
                yield RunErrorEvent(message="The model refused", code="AGENT_REQUEST_LLM_ERROR")
                return
            elif prompt == "crash":
                raise RuntimeError("The knowledge base is offline")
            elif prompt == "echo":
                seen = "; ".join(f"{m.role}:{m.content}" for m in run_input.messages)
                tools = ",".join(tool.name for tool in run_input.tools)
                for event in _text(f"{seen} | tools={tools}"):
                    yield event
            else:
                for event in _text("Hel", "lo"):
                    yield event
        yield RunFinishedEvent(thread_id=thread_id, run_id=run_id)


def _text(*deltas: str) -> list[BaseEvent]:
    return [
        TextMessageStartEvent(message_id="m1", role="assistant"),
        *(TextMessageContentEvent(message_id="m1", delta=delta) for delta in deltas),
        TextMessageEndEvent(message_id="m1"),
    ]


@pytest.fixture(scope="module")
def cloudbase_url() -> Iterator[str]:
    app = AgentServiceApp().build(lambda: {"agent": ScriptedAgent()})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


AGENT = AgentSpec(
    AGKitProvider,
    slug="cloudbase",
    options={"agent_id": "agent-real-1"},
    conversation_id=CONVERSATION,
)
make_request, collect = AGENT.request, AGENT.collect


async def test_it_streams_text(cloudbase_url: str) -> None:
    events = await collect(make_request(cloudbase_url, "hello"))

    assert events == [NEW, TextDelta("Hel"), TextDelta("lo"), RunCompleted()]


async def test_it_relays_tool_calls_with_their_results(cloudbase_url: str) -> None:
    events = await collect(make_request(cloudbase_url, "weather"))

    assert events == [
        NEW,
        ToolCallStarted("tc1", "get_weather"),
        ToolCallDelta("tc1", '{"city": '),
        ToolCallDelta("tc1", '"Paris"}'),
        ToolCallCompleted("tc1", "get_weather", '{"city": "Paris"}'),
        ToolCallResult("tc1", "Sunny, 25°C"),
        TextDelta("It is sunny in Paris."),
        RunCompleted(),
    ]


async def test_it_sends_history_and_tools_the_server_accepts(cloudbase_url: str) -> None:
    turns = [
        ChatTurn("system", "Be brief."),
        ChatTurn("user", "Hi"),
        ChatTurn("assistant", "Hello!"),
    ]
    tools = [{"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}]

    events = await collect(make_request(cloudbase_url, "echo", turns=turns, tools=tools))

    assert events == [
        NEW,
        TextDelta("system:Be brief.; user:Hi; assistant:Hello!; user:echo | tools=get_weather"),
        RunCompleted(),
    ]


async def test_it_fails_on_a_run_error_from_the_agent(cloudbase_url: str) -> None:
    events = await collect(make_request(cloudbase_url, "refuse"))

    assert events == [
        NEW,
        RunFailed(
            ErrorCode.VENDOR_ERROR,
            "The model refused (AGENT_REQUEST_LLM_ERROR)",
            {"code": "AGENT_REQUEST_LLM_ERROR"},
        ),
    ]


async def test_it_fails_on_an_agent_that_raises(cloudbase_url: str) -> None:
    # The server sends two RUN_ERRORs (the agent's, then its own "Failed to process agent
    # request"); the first one is the user's answer.
    events = await collect(make_request(cloudbase_url, "crash"))

    assert events == [
        NEW,
        RunFailed(ErrorCode.VENDOR_ERROR, "The knowledge base is offline", {}),
    ]


async def test_it_resumes_with_the_list_the_server_accepts(cloudbase_url: str) -> None:
    resume = {
        "interrupt_id": "int-1",
        "payload": {"approved": True},
        "reason": "tool_approval",
        "vendor_data": {"dialect": "agui"},
    }

    events = await collect(make_request(cloudbase_url, '{"approved": true}', resume=resume))

    assert events == [NEW, TextDelta("Resumed int-1: True"), RunCompleted()]


async def test_it_sees_the_server_refuse_a_single_resume_object(cloudbase_url: str) -> None:
    # An interrupt recorded as AG-Kit is answered with AG-Kit's single object, which an AG-UI
    # server refuses: proof that the dialect must follow the interrupt, not a guess.
    resume = {
        "interrupt_id": "int-1",
        "payload": {"approved": True},
        "reason": "tool_approval",
        "vendor_data": {"dialect": "agkit"},
    }

    with pytest.raises(VendorError) as caught:
        await collect(make_request(cloudbase_url, "yes", resume=resume))

    assert caught.value.code == ErrorCode.VENDOR_BAD_REQUEST
    assert caught.value.status == 400
    assert "resume" in caught.value.message
