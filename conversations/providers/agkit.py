"""AG-Kit / Tencent CloudBase agents: `POST {base}/v1/aibot/bots/{agent_id}/send-message`.

One path, two wire formats (docs/providers/agkit.md), both SSE `data:` only, dispatched on the
payload's `type`:

- the AG-Kit send-message format (docs.ag-kit.dev): lower-case `text`, `tool-call-start|args|end`,
  `tool-result`, `interrupt`, `error`; the stream ends with `data: [DONE]`;
- AG-UI, spoken by CloudBase's current server (`cloudbase-agent-server`): upper-case `RUN_STARTED`,
  `TEXT_MESSAGE_*`, `TOOL_CALL_*`, `RUN_FINISHED` (terminal, may carry an interrupt outcome),
  `RUN_ERROR`, ...; no `[DONE]`.

The `protocol` option picks one; `auto` (the default) lets the first typed event decide. Errors
are read in either dialect: `RUN_ERROR`, `{"type": "error", "error"}`, CloudBase's `AGENT_*`
codes (`{"code", "message"}`, which may arrive inside a 200) and `{"error": {code, message}}`.

History: AG-Kit keeps it server-side by `conversationId` and wants only the new ("delta")
messages; AG-UI's `RunAgentInput.messages` is the whole conversation. The `history` option picks
one; by default AG-Kit gets the delta and AG-UI (and `auto`, since current CloudBase agents speak
AG-UI) the full history. The conversation id is the stored vendor id, else chatsite's own UUID,
sent as both `conversationId` (AG-Kit) and `threadId` (AG-UI) and stored on first use.

No delete endpoint is documented for either format, so `delete_conversation` stays the base
class's no-op.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

from conversations.events import (
    TERMINAL_EVENTS,
    ErrorCode,
    InterruptRequested,
    ProviderEvent,
    ReasoningDelta,
    RunCompleted,
    RunFailed,
    TextDelta,
    ToolCallResult,
    VendorConversation,
    VendorExtra,
)
from conversations.providers.base import (
    AgentConfig,
    Capabilities,
    Provider,
    RunRequest,
    VendorError,
)
from conversations.providers.sse import (
    build_client,
    is_done,
    json_or_text,
    open_sse,
    parse_json,
    vendor_error_message,
)
from conversations.providers.toolcalls import ToolCalls
from conversations.providers.usage import parse_usage

AUTO = "auto"
AGKIT = "agkit"
AGUI = "agui"
PROTOCOLS = (AUTO, AGKIT, AGUI)
DIALECT_NAMES = {AGKIT: "AG-Kit", AGUI: "AG-UI"}

FULL = "full"
DELTA = "delta"
HISTORY_MODES = (FULL, DELTA)

HISTORY_ROLES = frozenset({"user", "assistant", "system"})
# A tool declared without a schema: AG-Kit's `Tool.parameters` is a required field.
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

AGKIT_EVENTS = frozenset(
    {"text", "tool-call-start", "tool-call-args", "tool-call-end", "tool-result", "interrupt"}
)
# AG-UI events with nothing to show: boundaries of messages, steps and reasoning blocks, and
# opaque encrypted reasoning. MESSAGES_SNAPSHOT repeats the whole conversation, which chatsite
# already stores; keeping it with every reply would grow each conversation quadratically.
AGUI_SILENT = frozenset(
    {
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_END",
        "THINKING_START",
        "THINKING_END",
        "THINKING_TEXT_MESSAGE_START",
        "THINKING_TEXT_MESSAGE_END",
        "REASONING_START",
        "REASONING_END",
        "REASONING_MESSAGE_START",
        "REASONING_MESSAGE_END",
        "REASONING_ENCRYPTED_VALUE",
        "STEP_STARTED",
        "STEP_FINISHED",
        "MESSAGES_SNAPSHOT",
    }
)
AGUI_REASONING = frozenset(
    {"THINKING_TEXT_MESSAGE_CONTENT", "REASONING_MESSAGE_CONTENT", "REASONING_MESSAGE_CHUNK"}
)


class AGKitProvider(Provider):
    kind = "agkit"
    # The vendor keeps state by conversation id, so no branch in place; a fork's fresh thread is
    # primed with the path when the agent is sent full history (AG-UI).
    capabilities = Capabilities(branches_in_place=False)

    @classmethod
    def capabilities_for(cls, agent: AgentConfig) -> Capabilities:
        options = agent.options
        history = options.get("history") or (DELTA if _protocol(options) == AGKIT else FULL)
        return Capabilities(branches_in_place=False, fork_primes_history=history == FULL)
    required_options = {"agent_id": "the CloudBase agent id, as in /v1/aibot/bots/{agent_id}/"}
    base_url_hint = " (e.g. https://your-env-id.api.tcloudbasegateway.com)."

    async def stream(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        agent = request.agent
        base_url = self.check_agent(agent)
        agent_id = quote(str(agent.options["agent_id"]), safe="")
        conversation_id = request.vendor_conversation_id or request.conversation_id
        async with (
            build_client(self.timeouts) as client,
            open_sse(
                client,
                "POST",
                f"{base_url}/v1/aibot/bots/{agent_id}/send-message",
                agent=agent,
                json=self.request_body(request),
                headers=self.auth_headers(agent),
                # CloudBase may answer 200 with a JSON error body (§A4: "errors in the response
                # body even when the status code is 200").
                allow_json=True,
            ) as stream,
        ):
            if not request.vendor_conversation_id:
                yield VendorConversation(conversation_id)
            if stream.json_body is not None:
                yield _failure_from_body(stream.json_body)
                return
            reader = _Reader(_protocol(agent.options), conversation_id)
            async for sse in stream.events():
                if is_done(sse):
                    for event in reader.finish_calls():
                        yield event
                    yield RunCompleted()
                    return
                if sse.event == "error":
                    yield _vendor_failure(json_or_text(sse.data))
                    return
                try:
                    payload = parse_json(sse)
                except VendorError as exc:
                    yield RunFailed(exc.code, exc.message)
                    return
                for event in reader.feed(payload):
                    yield event
                    if isinstance(event, TERMINAL_EVENTS):
                        return
        # Neither [DONE] nor a terminal event: the relay reports the reply as truncated.

    @staticmethod
    def request_body(request: RunRequest) -> dict[str, Any]:
        options = request.agent.options
        protocol = _protocol(options)
        conversation_id = request.vendor_conversation_id or request.conversation_id
        resume = request.resume
        # An interrupt is answered in the dialect it was raised in (its `vendor_data`); the
        # option, then AG-UI (CloudBase's current format), cover an interrupt without that record.
        known = protocol if protocol != AUTO else _resume_dialect(resume)
        history = options.get("history") or (DELTA if known == AGKIT else FULL)
        body: dict[str, Any] = {
            "messages": _messages(request, include_history=history == FULL),
            "conversationId": conversation_id,
            "tools": _tools(options.get("tools")),
        }
        if protocol != AGKIT:
            # AG-UI's RunAgentInput; an AG-Kit server's Pydantic input ignores these keys.
            body.update(
                threadId=conversation_id,
                runId=str(uuid.uuid4()),
                context=[],
                state={},
                forwardedProps={},
            )
        if resume is not None:
            body["resume"] = _resume_body(resume, _resume_dialect(resume) or known or AGUI)
        return body

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> list[str]:
        problems = super().validate_options(options)
        agent_id = options.get("agent_id")
        if agent_id not in (None, "") and (
            isinstance(agent_id, bool) or not isinstance(agent_id, str | int)
        ):
            problems.append("option 'agent_id' must be a string")
        if options.get("protocol") not in (None, "", *PROTOCOLS):
            problems.append(
                f"option 'protocol' must be one of {', '.join(PROTOCOLS)} "
                f"(got {options['protocol']!r})"
            )
        if options.get("history") not in (None, "", *HISTORY_MODES):
            problems.append(
                f"option 'history' must be one of {', '.join(HISTORY_MODES)} "
                f"(got {options['history']!r})"
            )
        problems.extend(_tool_problems(options.get("tools")))
        return problems


def _protocol(options: dict[str, Any]) -> str:
    return options.get("protocol") or AUTO


def _resume_dialect(resume: dict[str, Any] | None) -> str | None:
    vendor_data = (resume or {}).get("vendor_data") or {}
    dialect = vendor_data.get("dialect") if isinstance(vendor_data, dict) else None
    return dialect if dialect in (AGKIT, AGUI) else None


def _messages(request: RunRequest, *, include_history: bool) -> list[dict[str, Any]]:
    """Chat turns as both formats accept them: AG-UI needs an `id` on every message and AG-Kit on
    assistant messages. Ids are derived from the turn's position, so a turn keeps its id from one
    run to the next and servers that merge by id see each turn once."""
    messages = []
    if include_history:
        for index, turn in enumerate(request.history):
            # Tool turns need call ids this history does not keep; empty turns mean nothing.
            if turn.role in HISTORY_ROLES and turn.content:
                messages.append(
                    {"id": _message_id(request, index), "role": turn.role, "content": turn.content}
                )
    if request.resume is None:
        # An answer to an interrupt travels in `resume` only: sent as a new user turn too, the
        # agent would read it twice, once as the answer and once as a fresh question.
        messages.append(
            {
                "id": _message_id(request, len(request.history)),
                "role": "user",
                "content": request.message,
            }
        )
    return messages


def _message_id(request: RunRequest, index: int) -> str:
    return f"{request.conversation_id}-{index}"


def _tools(raw: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": tool["name"],
            "description": tool.get("description") or "",
            "parameters": tool.get("parameters") or EMPTY_SCHEMA,
        }
        for tool in raw or ()
    ]


def _tool_problems(tools: Any) -> list[str]:
    if tools in (None, ""):
        return []
    if not isinstance(tools, list):
        return ["option 'tools' must be a JSON list of {name, description, parameters}"]
    problems = []
    for index, tool in enumerate(tools):
        where = f"option 'tools' item {index}"
        if not isinstance(tool, dict):
            problems.append(f"{where} must be an object {{name, description, parameters}}")
            continue
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            problems.append(f"{where} needs a 'name'")
        if not isinstance(tool.get("description", ""), str):
            problems.append(f"{where}: 'description' must be a string")
        if not isinstance(tool.get("parameters", {}), dict):
            problems.append(f"{where}: 'parameters' must be a JSON Schema object")
    return problems


def _resume_body(resume: dict[str, Any], dialect: str) -> Any:
    interrupt_id = str(resume.get("interrupt_id") or "")
    payload = resume.get("payload")
    if dialect == AGKIT:
        # AG-Kit's `ResumeMessage.payload` is typed `str` (docs.ag-kit.dev, Python server) and
        # the official web client sends `JSON.stringify(payload)`; an object would be refused.
        return {"interruptId": interrupt_id, "payload": json.dumps(payload, ensure_ascii=False)}
    # AG-UI's `resume` is a list with one entry per open interrupt; a single object is refused.
    entries: list[dict[str, Any]] = [
        {"interruptId": interrupt_id, "status": "resolved", "payload": payload}
    ]
    vendor_data = resume.get("vendor_data") or {}
    entries.extend(
        {"interruptId": other, "status": "cancelled"}
        for other in vendor_data.get("other_interrupt_ids") or ()
    )
    return entries


def _dialect_of(kind: str) -> str | None:
    if kind in AGKIT_EVENTS:
        return AGKIT
    # AG-UI event types are UPPER_SNAKE; AG-Kit's are lower-case with dashes.
    if kind.isupper():
        return AGUI
    return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class _Reader:
    """Turns decoded events of either dialect into provider events, tracking tool calls."""

    def __init__(self, protocol: str, conversation_id: str) -> None:
        self.forced = protocol if protocol != AUTO else None
        self.dialect = self.forced
        self.decided = False
        self.thread_id = conversation_id
        # Keyed by `toolCallId`. Arguments may come before the name (TOOL_CALL_CHUNK): the name
        # is announced again when it arrives; fragments after the end are still relayed.
        self.calls = ToolCalls(renames=True, sealed=False)
        self.chunk_call_id = ""

    def feed(self, payload: Any) -> Iterator[ProviderEvent]:
        if not isinstance(payload, dict):
            yield RunFailed(
                ErrorCode.VENDOR_PROTOCOL,
                "The vendor sent an event that is not a JSON object: "
                f"{json.dumps(payload)[:100]!r}",
            )
            return
        kind = payload.get("type")
        # Errors are read whatever the dialect: cloudbase-agent-server's error helpers write
        # RUN_ERROR beside AG-Kit's event names (its `errors/event_types.py`), and CloudBase's
        # AGENT_* and gateway errors carry no `type` at all.
        if kind in ("RUN_ERROR", "error") or (kind is None and _is_error(payload)):
            yield _vendor_failure(payload)
            return
        if not isinstance(kind, str):
            yield VendorExtra("unknown_events", payload)
            return
        dialect = _dialect_of(kind)
        if not self.decided and dialect is not None:
            self.decided = True
            if self.forced is not None and dialect != self.forced:
                yield RunFailed(
                    ErrorCode.VENDOR_PROTOCOL,
                    f"The agent answers in the {DIALECT_NAMES[dialect]} format but its "
                    f"'protocol' option says {self.forced!r}: set it to {dialect!r} or 'auto'.",
                )
                return
            self.dialect = dialect
        if self.dialect == AGKIT:
            yield from self._agkit(kind, payload)
        elif self.dialect == AGUI:
            yield from self._agui(kind, payload)
        else:
            yield VendorExtra("unknown_events", payload)

    def finish_calls(self) -> Iterator[ProviderEvent]:
        """Complete calls the vendor never ended, so no tool card stays spinning."""
        yield from self.calls.finish()

    # AG-Kit send-message events -----------------------------------------------------------------

    def _agkit(self, kind: str, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        call_id = _text(payload.get("toolCallId"))
        if kind == "text":
            content = payload.get("content")
            if isinstance(content, str) and content:
                yield TextDelta(content)
        elif kind == "tool-call-start":
            yield from self.calls.start(call_id, _text(payload.get("toolCallName")))
        elif kind == "tool-call-args":
            yield from self._args(call_id, payload.get("delta"))
        elif kind == "tool-call-end":
            yield from self.calls.complete(call_id)
        elif kind == "tool-result":
            yield from self._result(call_id, payload.get("result"))
        elif kind == "interrupt":
            yield from self.finish_calls()
            yield InterruptRequested(
                _text(payload.get("id")),
                _text(payload.get("reason")),
                payload.get("payload"),
                vendor_data={"dialect": AGKIT},
            )
        else:
            yield VendorExtra("unknown_events", payload)

    # AG-UI events -------------------------------------------------------------------------------

    def _agui(self, kind: str, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        call_id = _text(payload.get("toolCallId"))
        if kind in AGUI_SILENT:
            return
        if kind == "RUN_STARTED":
            thread_id = payload.get("threadId")
            if isinstance(thread_id, str) and thread_id and thread_id != self.thread_id:
                # An adapter that keeps its own conversations names the real one here; later
                # runs must address it.
                self.thread_id = thread_id
                yield VendorConversation(thread_id)
        elif kind in ("TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CHUNK"):
            delta = payload.get("delta")
            if isinstance(delta, str) and delta:
                yield TextDelta(delta)
        elif kind in AGUI_REASONING:
            delta = payload.get("delta")
            if isinstance(delta, str) and delta:
                yield ReasoningDelta(delta)
        elif kind == "TOOL_CALL_START":
            yield from self.calls.start(call_id, _text(payload.get("toolCallName")))
        elif kind == "TOOL_CALL_ARGS":
            yield from self._args(call_id, payload.get("delta"))
        elif kind == "TOOL_CALL_END":
            yield from self.calls.complete(call_id)
        elif kind == "TOOL_CALL_CHUNK":
            # Chunks after the first may leave out the id: they continue the last call.
            call_id = call_id or self.chunk_call_id
            self.chunk_call_id = call_id
            yield from self.calls.start(call_id, _text(payload.get("toolCallName")))
            yield from self._args(call_id, payload.get("delta"))
        elif kind == "TOOL_CALL_RESULT":
            yield from self._result(call_id, payload.get("content"))
        elif kind == "RUN_FINISHED":
            yield from self._run_finished(payload)
        else:
            yield VendorExtra("unknown_events", payload)

    def _run_finished(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        # A list, one entry per (provider, model): summed. Any other shape is not AG-UI's.
        raw_usage = payload.get("usage")
        usage = parse_usage(raw_usage) if isinstance(raw_usage, list) else None
        if usage is not None:
            yield usage
        if payload.get("result") is not None:
            yield VendorExtra("run_result", payload["result"])
        yield from self.finish_calls()
        outcome = payload.get("outcome")
        interrupts = (
            [item for item in outcome.get("interrupts") or () if isinstance(item, dict)]
            if isinstance(outcome, dict) and outcome.get("type") == "interrupt"
            else []
        )
        if not interrupts:
            yield RunCompleted()
            return
        first, *others = interrupts
        vendor_data: dict[str, Any] = {"dialect": AGUI}
        if others:
            # chatsite asks one question at a time: the others are kept for review and
            # answered "cancelled" on resume (AG-UI wants every open interrupt addressed).
            vendor_data["other_interrupt_ids"] = [_text(item.get("id")) for item in others]
            yield VendorExtra("other_interrupts", others)
        details = {key: value for key, value in first.items() if key not in ("id", "reason")}
        yield InterruptRequested(
            _text(first.get("id")),
            _text(first.get("reason")),
            details or None,
            vendor_data=vendor_data,
        )

    # Tool calls, shared by both dialects --------------------------------------------------------

    def _args(self, call_id: str, delta: Any) -> Iterator[ProviderEvent]:
        if delta in (None, ""):
            return
        yield from self.calls.add(call_id, delta if isinstance(delta, str) else json.dumps(delta))

    def _result(self, call_id: str, result: Any) -> Iterator[ProviderEvent]:
        yield from self.calls.complete(call_id)
        yield ToolCallResult(call_id, result)


def _is_error(payload: dict[str, Any]) -> bool:
    code = payload.get("code")
    return bool(payload.get("error")) or (isinstance(code, str) and bool(code))


def _vendor_failure(payload: Any) -> RunFailed:
    code: Any = None
    request_id: Any = None
    if isinstance(payload, dict):
        error = payload.get("error")
        code = (error.get("code") if isinstance(error, dict) else None) or payload.get("code")
        request_id = payload.get("requestId")
    message = vendor_error_message(payload) or "The agent reported an error."
    code = _text(code)
    if code and code not in message:
        message = f"{message} ({code})"
    details = {key: value for key, value in (("code", code), ("request_id", request_id)) if value}
    return RunFailed(ErrorCode.VENDOR_ERROR, message, details)


def _failure_from_body(body: Any) -> RunFailed:
    """A 200 JSON answer instead of a stream: CloudBase's way of reporting some errors."""
    if isinstance(body, dict) and _is_error(body):
        return _vendor_failure(body)
    return RunFailed(
        ErrorCode.VENDOR_PROTOCOL,
        "The vendor answered with JSON instead of an event stream: "
        + (vendor_error_message(body) or "(empty)"),
    )
