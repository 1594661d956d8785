"""Dynamiq conversations, streamed (docs/providers/dynamiq.md).

Dynamiq keeps the conversation: we create it once (`POST /v1/conversations`), then each user
message is `POST /v3/conversations/{id}/messages`, answered with Server-Sent Events. Every event is
`event: <type>` plus an envelope `{id, type, sequence, timestamp, data}`; a run ends with
`run.completed`, `run.failed` or `run.canceled`. Human-in-the-loop requests pause the run; the
answer goes to the Runs API (`POST /v1/runs/{run_id}/input`, on the app's own hostname) and the
continuation is read from `GET /v1/runs/{run_id}/stream?after_sequence=N`.

Guesses (the docs leave them open; each is listed in docs/providers/dynamiq.md):
- the run id is `data.id` of the `run.*` events (`run.started` shows `{id, object: "run"}`), or a
  `run_id` in the envelope or in `data` when Dynamiq sends one;
- the human-feedback/approval request id is `data.request_id`, else `data.id`;
- the approval answer is `{"type": "approval_request", "data": {"request_id", "is_approved",
  "feedback"?, "data"?}}` (field names of the open-source SDK's `ApprovalInputData`);
- the sequence numbers of the conversation stream and of the run stream are the same counter, so
  the last one seen is the `after_sequence` to resume from;
- a terminal event whose blank line is missing at the very end of the body (as in the documented
  example) is still read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from httpx_sse import ServerSentEvent

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
    IMAGE_TYPES,
    TEXT_TYPES,
    AgentConfig,
    Capabilities,
    FilePart,
    Provider,
    RunRequest,
    Timeouts,
    VendorError,
    error_for_status,
)
from conversations.providers.sse import (
    SSEStream,
    build_client,
    delete_json,
    open_sse,
    parse_json,
    read_capped,
    request_json,
    vendor_error_message,
)
from conversations.providers.toolcalls import arguments_text, whole_call

logger = logging.getLogger(__name__)

# The vendor-side cancel runs while the user waits for "Stop" to take effect (and while the relay
# shuts a run down): 2 s bounds that wait; the run is abandoned on our side either way.
CANCEL_TIMEOUT = 2.0

# Longest rendering of an error body's `details` appended to the message shown to the user: enough
# for a few field errors, short enough not to flood the chat.
MAX_DETAILS_CHARS = 200

HUMAN_FEEDBACK = "human_feedback"
APPROVAL = "approval"
# `type` of the input that answers an approval. GUESS: the input body is documented for human
# feedback only; `approval_request` is the type Dynamiq gives the request itself in
# `GET /v1/runs/{id}` (`input_requests[].type`), as `human_feedback` is for feedback.
APPROVAL_INPUT_TYPE = "approval_request"

# Answers that approve a request; anything else rejects it and is sent as the feedback. Dynamiq's
# SDK says "Send nothing for approval; provide feedback to cancel", and chatsite's answer box sends
# text, so the usual words for "yes" in both of chatsite's languages approve.
APPROVE_WORDS = frozenset(
    {
        "",
        "y",
        "yes",
        "ok",
        "okay",
        "approve",
        "approved",
        "accept",
        "accepted",
        "confirm",
        "go ahead",
        "oui",
        "o",
        "d'accord",
        "approuver",
        "approuve",
        "approuvé",
        "accepter",
        "accepté",
        "confirmer",
    }
)

INTERRUPT_EVENTS = {
    "agent.human_feedback.requested": HUMAN_FEEDBACK,
    "approval_request.created": APPROVAL,
}
# Bookkeeping fields of an input request: everything else in its `data` is for the user.
INTERRUPT_BOOKKEEPING = frozenset({"object", "id", "request_id", "run_id", "iteration", "type"})
PROMPT_KEYS = ("prompt", "question", "message", "text")

# Types this provider understands: such an event that is not a JSON object fails the run (its
# content would be lost silently); any other malformed event is only kept for review.
KNOWN_TYPES = frozenset(
    {
        "run.started",
        "run.completed",
        "run.failed",
        "run.canceled",
        "agent.response.delta",
        "agent.reasoning.delta",
        "agent.tool_call.completed",
        "error",
        *INTERRUPT_EVENTS,
    }
)

CONVERSATION_LOST = "Dynamiq no longer has this conversation. Start a new conversation to continue."

# Cancel requests still running after their generator has gone: asyncio keeps only weak
# references to tasks, so a shielded task nobody awaits any more must be held here.
_background: set[asyncio.Task[None]] = set()


class DynamiqProvider(Provider):
    kind = "dynamiq"
    # Dynamiq keeps the history itself; files go through its files API (any allowed type).
    capabilities = Capabilities(
        branches_in_place=False, attachments=IMAGE_TYPES | TEXT_TYPES | {"application/pdf"})
    required_options: dict[str, str] = {}
    # No default: the host serving /v1/conversations and /v3/conversations is not documented
    # (the reference shows https://example.com), so every agent names it.
    default_base_url = ""
    base_url_hint = (
        ": give the Dynamiq host root serving /v1/conversations (Dynamiq does not document a "
        "single host for it)."
    )

    async def stream(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        agent = request.agent
        self.check_agent(agent)
        run = _Run()
        try:
            # aclosing: the HTTP stream is closed before the vendor-side cancel below is sent.
            async with aclosing(self._events(request, run)) as events:
                async for event in events:
                    yield event
        finally:
            # We stop without Dynamiq having ended (or paused) the run: the user pressed Stop
            # (CancelledError), the consumer went away (GeneratorExit), the stream broke or was
            # truncated, or it was unreadable. Chatsite marks the reply failed or canceled, so a
            # run still going at Dynamiq would only spend tokens on an answer nobody sees and
            # write it into the vendor conversation the next message builds on.
            if run.run_id and not run.settled:
                await _cancel_run(agent, _runs_root(agent), run.run_id)

    async def delete_conversation(self, agent: AgentConfig, vendor_conversation_id: str) -> None:
        if not vendor_conversation_id:
            return
        self.require_base_url(agent)
        async with _client(self.timeouts, agent) as client:
            await delete_json(
                client,
                _conversation_url(_root(agent), vendor_conversation_id),
                agent=agent,
                headers=self.auth_headers(agent),
            )

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> list[str]:
        problems = super().validate_options(options)
        targets = [name for name in ("model_id", "app_id") if options.get(name) not in (None, "")]
        if not targets:
            problems.append(
                "missing option 'model_id' or 'app_id' (exactly one: the Dynamiq model or app "
                "the conversations run on)"
            )
        elif len(targets) == 2:
            problems.append("options 'model_id' and 'app_id' exclude each other: set only one")
        for name in targets:
            value = options[name]
            # `agents add` parses option values as JSON, so an all-digit id arrives as a number.
            if isinstance(value, bool) or not isinstance(value, str | int):
                problems.append(f"option {name!r} must be an id (got {value!r})")
        subagents = options.get("subagents_enabled")
        if subagents is not None and not isinstance(subagents, bool):
            problems.append(f"option 'subagents_enabled' must be true or false (got {subagents!r})")
        runs_url = options.get("runs_base_url")
        if runs_url not in (None, "") and not _is_http_url(runs_url):
            problems.append(
                f"option 'runs_base_url' must be an http(s) URL, the app's own hostname "
                f"(got {runs_url!r})"
            )
        return problems

    # The run ---------------------------------------------------------------------------------

    async def _events(self, request: RunRequest, run: _Run) -> AsyncIterator[ProviderEvent]:
        agent = request.agent
        headers = self.auth_headers(agent)
        async with _client(self.timeouts, agent) as client, AsyncExitStack() as stack:
            if request.resume is not None:
                stream = await self._resume(client, stack, request, run)
                yield VendorExtra("vendor_run", _run_ids(request.vendor_conversation_id, run))
            else:
                conversation_id = request.vendor_conversation_id
                created = not conversation_id
                if created:
                    conversation_id = await self._create_conversation(client, request)
                    # Yielded before the message is sent, so the relay stores the id even if the
                    # send then fails or is cancelled: the next message reuses the conversation.
                    yield VendorConversation(conversation_id)
                run.conversation_id = conversation_id
                files = [await self._upload(client, agent, part) for part in request.attachments]
                try:
                    stream = await stack.enter_async_context(
                        open_sse(
                            client,
                            "POST",
                            f"{_conversation_url(_root(agent), conversation_id, 'v3')}/messages",
                            agent=agent,
                            json=_message_body(request, files),
                            headers=headers,
                        )
                    )
                except VendorError as exc:
                    if exc.status != 404:
                        raise
                    raise _send_not_found(exc, created) from exc
            # Dynamiq's documented example ends its last event with one line break, not the
            # blank line SSE needs to dispatch it (§C.9); a body that stops right after a
            # complete line gets that blank line, so such a final event is read. A body cut
            # mid-line is still dropped, as the spec says.
            reader = SSEStream(_blank_line_at_end(stream.chunks))
            async for sse in reader.events():
                for event in run.feed(sse):
                    yield event
                    if isinstance(event, TERMINAL_EVENTS):
                        return
        # No terminal event: the relay reports the reply as truncated.

    async def _upload(self, client: httpx.AsyncClient, agent: AgentConfig,
                      part: FilePart) -> dict[str, str]:
        """`POST /v1/files` on the Runs API host (multipart, one `file` part; answered with
        `{data: {id, name, size, mime_type}}`): the `file` content part's `{id, name}`."""
        response = await client.post(
            f"{_runs_root(agent)}/v1/files",
            files={"file": (part.name, part.data, part.content_type)},
            headers={"Accept": "application/json", **self.auth_headers(agent)},
        )
        try:
            body: Any = json.loads(response.content)
        except ValueError:
            body = None
        data = body.get("data") if isinstance(body, dict) else None
        file_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(file_id, str) or not file_id:
            raise VendorError(
                ErrorCode.VENDOR_PROTOCOL,
                f"Dynamiq gave no id for the uploaded file {part.name}.",
                details={"body": body if body is not None else response.text[:200]},
            )
        name = data.get("name") if isinstance(data.get("name"), str) else ""
        return {"id": file_id, "name": name or part.name}

    async def _create_conversation(self, client: httpx.AsyncClient, request: RunRequest) -> str:
        agent = request.agent
        body: dict[str, Any] = {}
        if request.title:
            body["title"] = request.title
        for name in ("model_id", "app_id"):
            if agent.options.get(name) not in (None, ""):
                body[name] = str(agent.options[name])
        created = await request_json(
            client,
            "POST",
            f"{_root(agent)}/v1/conversations",
            agent=agent,
            json=body,
            headers=self.auth_headers(agent),
        )
        data = created.get("data") if isinstance(created, dict) else None
        conversation_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(conversation_id, str) and conversation_id:
            return conversation_id
        raise VendorError(
            ErrorCode.VENDOR_PROTOCOL,
            "Dynamiq created no conversation id: " + (vendor_error_message(created) or "empty."),
            details={"body": created},
        )

    async def _resume(
        self,
        client: httpx.AsyncClient,
        stack: AsyncExitStack,
        request: RunRequest,
        run: _Run,
    ) -> SSEStream:
        """Deliver the user's answer, then open the run's own stream after the last event seen."""
        agent = request.agent
        resume = request.resume or {}
        vendor_data = resume.get("vendor_data") or {}
        run_id = vendor_data.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise VendorError(
                ErrorCode.VENDOR_PROTOCOL,
                "This answer cannot be delivered: Dynamiq never said which run asked for it.",
                details={"vendor_data": vendor_data},
            )
        run.run_id = run_id
        run.conversation_id = request.vendor_conversation_id
        after = vendor_data.get("after_sequence")
        # `after_sequence` must be >= 1; without one the run stream replays from its start and
        # nothing can be recognised as already shown.
        if isinstance(after, int) and not isinstance(after, bool) and after >= 1:
            run.last_sequence = after
        else:
            after = None
        kind = vendor_data.get("kind") or resume.get("reason") or HUMAN_FEEDBACK
        runs_url = f"{_runs_root(agent)}/v1/runs/{quote(run_id, safe='')}"
        headers = self.auth_headers(agent)
        try:
            await request_json(
                client,
                "POST",
                f"{runs_url}/input",
                agent=agent,
                json=_input_body(kind, str(resume.get("interrupt_id", "")), resume.get("payload")),
                headers=headers,
            )
            return await stack.enter_async_context(
                open_sse(
                    client,
                    "GET",
                    f"{runs_url}/stream",
                    agent=agent,
                    headers=headers,
                    params={"after_sequence": after} if after else None,
                )
            )
        except VendorError as exc:
            if exc.status != 404:
                raise
            raise VendorError(
                ErrorCode.VENDOR_NOT_FOUND,
                f"Dynamiq's Runs API does not know run {run_id} ({exc.message}). Check the "
                "agent's runs_base_url option: the Runs API lives on the app's own hostname.",
                status=404,
                details=exc.details,
            ) from exc


@dataclass
class _Run:
    """What one stream taught us about the Dynamiq run, and the envelope-to-event translation."""

    conversation_id: str = ""
    run_id: str = ""
    last_sequence: int | None = None
    # Dynamiq ended the run (completed, failed, canceled) or paused it for the user's input:
    # nothing is left to cancel.
    settled: bool = False
    text_seen: bool = False

    def feed(self, sse: ServerSentEvent) -> Iterator[ProviderEvent]:
        name = sse.event if sse.event and sse.event != "message" else ""
        try:
            envelope = parse_json(sse)
        except VendorError:
            envelope = None
        if not isinstance(envelope, dict):
            if name == "error":
                yield RunFailed(
                    ErrorCode.VENDOR_ERROR,
                    vendor_error_message(sse.data) or "Dynamiq reported an error.",
                )
            elif name in KNOWN_TYPES:
                yield RunFailed(
                    ErrorCode.VENDOR_PROTOCOL,
                    f"Dynamiq sent an unreadable {name} event (not a JSON object): "
                    f"{sse.data[:100]!r}",
                )
            else:
                yield VendorExtra("unknown_events", {"event": name or None, "data": sse.data})
            return
        # The SSE event name is what Dynamiq documents to dispatch on; the envelope's `type` is
        # the fallback for an event without one.
        kind = name or str(envelope.get("type") or "")
        sequence = envelope.get("sequence")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            if self.last_sequence is not None:
                if sequence <= self.last_sequence:
                    # Already handled: a replay overlapping what we read (resume), or a repeat.
                    return
                if sequence > self.last_sequence + 1:
                    # Kept for review, not fatal: the counter may number events this stream does
                    # not carry (Dynamiq's own example jumps from 4 to 12), and what was shown
                    # cannot be taken back, so failing would only throw a good reply away.
                    yield VendorExtra(
                        "sequence_gaps", {"expected": self.last_sequence + 1, "got": sequence}
                    )
            self.last_sequence = sequence
        data = envelope.get("data")
        data = data if isinstance(data, dict) else {}
        if not self.run_id:
            self.run_id = _run_id(kind, envelope, data)
            if self.run_id:
                yield VendorExtra("vendor_run", _run_ids(self.conversation_id, self))
        yield from self._dispatch(kind, envelope, data)

    def _dispatch(
        self, kind: str, envelope: dict[str, Any], data: dict[str, Any]
    ) -> Iterator[ProviderEvent]:
        if kind == "agent.response.delta":
            delta = data.get("delta")
            if isinstance(delta, str) and delta:
                self.text_seen = True
                yield TextDelta(delta)
        elif kind == "agent.reasoning.delta":
            delta = data.get("delta")
            if isinstance(delta, str) and delta:
                yield ReasoningDelta(delta)
        elif kind == "agent.tool_call.completed":
            yield from _tool_call(envelope, data)
        elif kind in INTERRUPT_EVENTS:
            yield from self._interrupt(INTERRUPT_EVENTS[kind], envelope, data)
        elif kind == "run.started":
            return
        elif kind == "run.completed":
            self.settled = True
            output = data.get("output")
            if isinstance(output, str):
                # Only when nothing streamed: otherwise it repeats the deltas already shown.
                if output and not self.text_seen:
                    yield TextDelta(output)
            elif output not in (None, {}, []):
                yield VendorExtra("run_output", output)
            status = data.get("status")
            yield RunCompleted(status if isinstance(status, str) and status else "completed")
        elif kind == "run.failed":
            self.settled = True
            yield RunFailed(
                ErrorCode.VENDOR_ERROR,
                _failure_message(data) or "The run failed at Dynamiq.",
                details=data,
            )
        elif kind == "run.canceled":
            self.settled = True
            # Not our user's Stop: that path cancels this generator and never reads on. Someone
            # or something canceled the run at Dynamiq (console, API, a limit), so to this user
            # the reply failed at the vendor; ErrorCode has no "canceled by the vendor" code.
            yield RunFailed(
                ErrorCode.VENDOR_ERROR, "The run was canceled at Dynamiq.", details=data
            )
        elif kind == "error":
            # GUESS: not documented for Dynamiq streams, but an `error` event is how SSE APIs
            # usually fail mid-stream; passing it as unknown would end in a misleading
            # "truncated". The run is not known to be over, so it is not marked settled.
            yield RunFailed(
                ErrorCode.VENDOR_ERROR,
                _failure_message(data)
                or _failure_message(envelope)
                or "Dynamiq reported an error.",
                details=envelope,
            )
        else:
            yield VendorExtra("unknown_events", envelope)

    def _interrupt(
        self, reason: str, envelope: dict[str, Any], data: dict[str, Any]
    ) -> Iterator[ProviderEvent]:
        request_id = data.get("request_id") or data.get("id")
        if not (isinstance(request_id, str) and request_id and self.run_id):
            # The answer goes to /v1/runs/{run_id}/input with the request id: without both it
            # cannot be delivered, and asking the user a question that cannot be answered is
            # worse than saying so now. The request is kept for review.
            missing = "which run asked" if request_id else "the request's id"
            yield VendorExtra("unanswerable_requests", envelope)
            yield RunFailed(
                ErrorCode.VENDOR_PROTOCOL,
                f"Dynamiq asked for your input but did not say {missing}, so no answer could "
                "reach it.",
                details=envelope,
            )
            return
        self.settled = True
        yield InterruptRequested(
            interrupt_id=request_id,
            reason=reason,
            payload=_interrupt_payload(data),
            vendor_data={
                "run_id": self.run_id,
                "kind": reason,
                "after_sequence": self.last_sequence or 0,
            },
        )


def _run_id(kind: str, envelope: dict[str, Any], data: dict[str, Any]) -> str:
    """The run this stream belongs to, from the strongest evidence an event carries."""
    candidates = [envelope.get("run_id"), data.get("run_id")]
    # `run.started` is `{id, object: "run", status}` (listRunEvents example): there `data.id` is
    # the run's id. For other types `data.id` names the delta, tool call or request instead.
    if kind.startswith("run.") and data.get("object") == "run":
        candidates.append(data.get("id"))
    return next((c for c in candidates if isinstance(c, str) and c), "")


def _run_ids(conversation_id: str, run: _Run) -> dict[str, str]:
    # Kept with the reply so a reviewer can find the exchange in Dynamiq's console and logs.
    return {"conversation_id": conversation_id, "run_id": run.run_id}


def _tool_call(envelope: dict[str, Any], data: dict[str, Any]) -> Iterator[ProviderEvent]:
    # Dynamiq reports a tool call once, when it has finished: input and result together.
    call_id = data.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = f"dynamiq-tool-{envelope.get('sequence', '')}"
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    name = tool.get("name") or data.get("name") or ""
    name = name if isinstance(name, str) else str(name)
    yield from whole_call(call_id, name, arguments_text(data.get("input")))
    if "result" in data:
        yield ToolCallResult(call_id, data["result"])


def _interrupt_payload(data: dict[str, Any]) -> Any:
    """What the user needs to answer: the prompt, and the params of an approval."""
    payload = {k: v for k, v in data.items() if k not in INTERRUPT_BOOKKEEPING}
    if len(payload) == 1:
        [(key, value)] = payload.items()
        if key in PROMPT_KEYS and isinstance(value, str):
            # A bare question reads better than a one-key JSON object in the answer card.
            return value
    return payload


def _failure_message(data: Any) -> str:
    if not isinstance(data, dict):
        return vendor_error_message(data) if data else ""
    for key in ("error", "message", "detail"):
        if data.get(key):
            return vendor_error_message(data[key])
    return ""


def _message_body(request: RunRequest, files: list[dict[str, str]] | None = None
                  ) -> dict[str, Any]:
    options = request.agent.options
    body: dict[str, Any] = {}
    if options.get("model_id") not in (None, ""):
        body["model_id"] = str(options["model_id"])
    # Dynamiq keeps the conversation's history itself: only the new message is sent, with a
    # `file` part per uploaded file (`_upload`); a message of files alone has no text part.
    content: list[dict[str, Any]] = []
    if request.message or not files:
        content.append({"type": "text", "text": request.message})
    content.extend({"type": "file", "file": file} for file in files or ())
    body["content"] = content
    body["subagents_enabled"] = bool(options.get("subagents_enabled", False))
    return body


def _input_body(kind: str, request_id: str, answer: Any) -> dict[str, Any]:
    if kind != APPROVAL:
        # Documented (sendRunInput): the user's answer is the feedback, as given.
        return {"type": HUMAN_FEEDBACK, "data": {"request_id": request_id, "feedback": answer}}
    return {
        "type": APPROVAL_INPUT_TYPE,
        "data": {"request_id": request_id, **_approval_decision(answer)},
    }


def _approval_decision(answer: Any) -> dict[str, Any]:
    """GUESS (see APPROVAL_INPUT_TYPE): the SDK's ApprovalInputData is {feedback, data,
    is_approved}; text approves when it is a "yes" word, and otherwise rejects with itself as
    the feedback. A JSON object answer may give those fields itself (`approved` accepted too)."""
    if isinstance(answer, bool):
        return {"is_approved": answer}
    if isinstance(answer, dict):
        decision: dict[str, Any] = {}
        approved = answer.get("is_approved", answer.get("approved"))
        if isinstance(approved, bool):
            decision["is_approved"] = approved
        if isinstance(answer.get("feedback"), str):
            decision["feedback"] = answer["feedback"]
        params = answer.get("data", answer.get("params"))
        if isinstance(params, dict):
            decision["data"] = params
        if decision:
            return decision
        answer = json.dumps(answer, ensure_ascii=False)
    text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
    if text.strip().rstrip(".!").strip().lower() in APPROVE_WORDS:
        return {"is_approved": True}
    return {"is_approved": False, "feedback": text}


def _send_not_found(exc: VendorError, created: bool) -> VendorError:
    if created:
        # The conversation was created a moment ago, so a 404 points at the URL, not at a lost
        # conversation: "start a new conversation" would only fail the same way.
        return VendorError(
            ErrorCode.VENDOR_NOT_FOUND,
            f"Dynamiq does not know the conversation it just created ({exc.message}). Check the "
            "agent's base URL: /v1/conversations and /v3/conversations must be on the same host.",
            status=404,
            details=exc.details,
        )
    # The send endpoint's 404 is the conversation: deleted or expired at Dynamiq.
    return VendorError(
        ErrorCode.VENDOR_CONVERSATION_LOST,
        CONVERSATION_LOST,
        status=404,
        details={"vendor_message": exc.message, **exc.details},
    )


# HTTP plumbing -------------------------------------------------------------------------------


def _client(timeouts: Timeouts, agent: AgentConfig) -> httpx.AsyncClient:
    client = build_client(timeouts)
    # `open_sse`/`request_json` quote only `error.message`; Dynamiq puts the useful part in
    # `error.details` ("Bad Request" + {"input": "cannot be blank"}). This hook raises the same
    # status error first, with the details in the message and kept in `VendorError.details`.
    client.event_hooks["response"] = [_raise_with_details(agent)]
    return client


def _raise_with_details(agent: AgentConfig) -> Callable[[httpx.Response], Awaitable[None]]:
    async def hook(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        raise _status_error(response.status_code, await read_capped(response), agent)

    return hook


def _status_error(status: int, body: bytes, agent: AgentConfig) -> VendorError:
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    message = vendor_error_message(parsed if parsed is not None else body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if details:
        described = _describe(details)
        if len(described) > MAX_DETAILS_CHARS:
            described = described[: MAX_DETAILS_CHARS - 1] + "…"
        message = f"{message} ({described})" if message else described
    exc = error_for_status(status, message, agent)
    if isinstance(error, dict):
        exc.details = {"vendor_error": error}
    return exc


def _describe(details: Any) -> str:
    if isinstance(details, dict):
        return "; ".join(f"{key}: {_describe(value)}" for key, value in details.items())
    if isinstance(details, list):
        return "; ".join(_describe(item) for item in details)
    return details if isinstance(details, str) else json.dumps(details, ensure_ascii=False)


async def _blank_line_at_end(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """The body's text, plus one blank line when it ended right after a line break (see
    `_events`)."""
    ended_on_line_break = False
    async for text in chunks:
        if text:
            ended_on_line_break = text[-1] in "\r\n"
        yield text
    if ended_on_line_break:
        # Two: after a lone "\r" the first "\n" only completes that line break.
        yield "\n\n"


async def _cancel_run(agent: AgentConfig, runs_root: str, run_id: str) -> None:
    """Best effort `POST /v1/runs/{id}/cancel`, bounded by CANCEL_TIMEOUT and shielded from the
    cancellation that usually brings us here. Never retried (a POST), never raised."""
    task = asyncio.get_running_loop().create_task(_post_cancel(agent, runs_root, run_id))
    _background.add(task)
    task.add_done_callback(_background.discard)
    # Cancelled again while waiting, the shield lets that cancellation through at once (it is
    # not ours to swallow) and the request finishes in the background within its own timeout.
    await asyncio.shield(task)


async def _post_cancel(agent: AgentConfig, runs_root: str, run_id: str) -> None:
    url = f"{runs_root}/v1/runs/{quote(run_id, safe='')}/cancel"
    timeouts = Timeouts(connect=CANCEL_TIMEOUT, read=CANCEL_TIMEOUT)
    try:
        async with asyncio.timeout(CANCEL_TIMEOUT), _client(timeouts, agent) as client:
            await request_json(
                client, "POST", url, agent=agent, headers=Provider.auth_headers(agent)
            )
    except Exception as exc:
        # The reply is already over for the user; a run left going at Dynamiq costs tokens but
        # breaks nothing, so it is only logged.
        logger.warning("could not cancel Dynamiq run %s: %s", run_id, exc)


# URLs ----------------------------------------------------------------------------------------


def _root(agent: AgentConfig) -> str:
    # The base URL is the host root; one ending in /v1 or /v3 (as other providers take) would
    # produce /v1/v1/... and a baffling 404, so the suffix is dropped.
    root = Provider.base_url(agent)
    for suffix in ("/v1", "/v3"):
        root = root.removesuffix(suffix)
    return root


def _runs_root(agent: AgentConfig) -> str:
    runs = agent.options.get("runs_base_url")
    if isinstance(runs, str) and runs.strip():
        return runs.strip().rstrip("/").removesuffix("/v1")
    return _root(agent)


def _conversation_url(root: str, conversation_id: str, version: str = "v1") -> str:
    # Quoted whole: the id is the vendor's (a UUID today), and a "/" in it must not change the path.
    return f"{root}/{version}/conversations/{quote(conversation_id, safe='')}"


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parsed = urlsplit(value)
    return parsed.scheme in ("http", "https") and bool(parsed.hostname) and " " not in value
