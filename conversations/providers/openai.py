"""OpenAI Chat Completions streaming, and the many backends that speak it (vLLM, Ollama, ...).

Wire format (docs/providers.md): each `data:` is a `chat.completion.chunk`; tool-call fragments
are merged by `index` (id and name only in the first fragment); with `include_usage` one chunk
with empty or null `choices` carries the usage; the stream ends with `data: [DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from conversations.events import (
    ErrorCode,
    ProviderEvent,
    ReasoningDelta,
    RunCompleted,
    RunFailed,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from conversations.providers.base import (
    IMAGE_TYPES,
    TEXT_TYPES,
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

HISTORY_ROLES = frozenset({"user", "assistant", "system"})
# Optional agent options passed through to the request body when set.
PASSTHROUGH_OPTIONS = ("temperature", "max_tokens")


class OpenAIProvider(Provider):
    kind = "openai"
    # Chat Completions is stateless: the active path is the history; images go as image_url
    # parts, text files inline.
    capabilities = Capabilities(attachments=IMAGE_TYPES | TEXT_TYPES)
    required_options = {"model": "model name sent to /chat/completions, e.g. gpt-4o-mini"}
    base_url_hint = " (e.g. https://api.openai.com/v1)."

    async def stream(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        agent = request.agent
        base_url = self.check_agent(agent)
        async with (
            build_client(self.timeouts) as client,
            open_sse(
                client,
                "POST",
                f"{base_url}/chat/completions",
                agent=agent,
                json=self.request_body(request),
                headers=self.auth_headers(agent),
                allow_json=True,
            ) as stream,
        ):
            if stream.json_body is not None:
                for event in _events_from_completion(stream.json_body):
                    yield event
                return
            merger = _ChunkMerger()
            async for sse in stream.events():
                if is_done(sse):
                    for event in merger.finish():
                        yield event
                    yield RunCompleted(merger.finish_reason)
                    return
                if sse.event == "error":
                    # openai-python raises on `event: error` whatever its data (§C.15).
                    yield _vendor_failure(json_or_text(sse.data))
                    return
                try:
                    payload = parse_json(sse)
                except VendorError as exc:
                    yield RunFailed(exc.code, exc.message)
                    return
                if isinstance(payload, dict) and payload.get("error"):
                    yield _vendor_failure(payload)
                    return
                if not isinstance(payload, dict):
                    yield RunFailed(
                        ErrorCode.VENDOR_PROTOCOL,
                        f"The vendor sent an event that is not a JSON object: {sse.data[:100]!r}",
                    )
                    return
                for event in merger.feed(payload):
                    yield event
        # No [DONE]: no terminal event, so the relay reports the reply as truncated.

    @staticmethod
    def request_body(request: RunRequest) -> dict[str, Any]:
        options = request.agent.options
        messages: list[dict[str, str]] = []
        if options.get("system_prompt"):
            messages.append({"role": "system", "content": str(options["system_prompt"])})
        messages.extend(
            {"role": turn.role, "content": turn.content}
            for turn in request.history
            # Tool turns need the call ids this history does not keep; empty turns (a failed
            # run) are refused by several compatible backends.
            if turn.role in HISTORY_ROLES and turn.content
        )
        messages.append({"role": "user", "content": request.message})
        body: dict[str, Any] = {
            "model": options["model"],
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for name in PASSTHROUGH_OPTIONS:
            if options.get(name) not in (None, ""):
                body[name] = options[name]
        return body


class _ChunkMerger:
    """Turns chunks into events, merging tool-call fragments by their `index`."""

    def __init__(self) -> None:
        # Keyed by `index`; a fragment after the call completed is still relayed.
        self.calls = ToolCalls(sealed=False)
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def feed(self, chunk: dict[str, Any]) -> Iterator[ProviderEvent]:
        if isinstance(chunk.get("usage"), dict):
            # Kept, not yielded: some backends repeat cumulative usage on every chunk, and the
            # last value is the one that counts.
            self.usage = parse_usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            # n > 1 completions are not requested; only the first one is shown.
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                yield ReasoningDelta(reasoning)
            for key in ("content", "refusal"):
                if isinstance(delta.get(key), str) and delta[key]:
                    yield TextDelta(delta[key])
            for position, fragment in enumerate(delta.get("tool_calls") or ()):
                yield from self._tool_fragment(position, fragment)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                yield from self._complete_calls()

    def finish(self) -> Iterator[ProviderEvent]:
        yield from self._complete_calls()
        if self.usage is not None:
            yield self.usage

    def _tool_fragment(self, position: int, fragment: dict[str, Any]) -> Iterator[ProviderEvent]:
        index = fragment.get("index", position)
        call = self.calls.get(index)
        function = fragment.get("function") or {}
        if fragment.get("id") and not call.call_id:
            call.call_id = str(fragment["id"])
        if function.get("name") and not call.name:
            call.name = str(function["name"])
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        if arguments:
            call.arguments.append(arguments)
        if not call.started and call.call_id and call.name:
            # With the fragments that came before the id and name were known, as one delta.
            yield from self.calls.announce(index)
        elif call.started and arguments:
            yield ToolCallDelta(call.call_id, arguments)

    def _complete_calls(self) -> Iterator[ProviderEvent]:
        # In `index` order, the order of the calls in the message.
        for index in sorted(self.calls.calls):
            call = self.calls.calls[index]
            if not call.started:
                # Some compatible backends omit the id; a stable one keeps the events linked.
                call.call_id = call.call_id or f"call_{index}"
            yield from self.calls.complete(index)


def _vendor_failure(payload: Any) -> RunFailed:
    error = payload.get("error") if isinstance(payload, dict) else None
    details = error if isinstance(error, dict) else {}
    message = vendor_error_message(payload) or "The vendor reported an error."
    return RunFailed(ErrorCode.VENDOR_ERROR, message, details=details)


def _events_from_completion(body: Any) -> Iterator[ProviderEvent]:
    """A whole `chat.completion` from a backend that ignored `"stream": true`."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not isinstance(choices[0], dict):
        if isinstance(body, dict) and body.get("error"):
            yield _vendor_failure(body)
        else:
            yield RunFailed(
                ErrorCode.VENDOR_PROTOCOL,
                "The vendor answered with JSON that is neither a stream nor a completion: "
                + vendor_error_message(body),
            )
        return
    message = choices[0].get("message") or {}
    merger = _ChunkMerger()
    chunk = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    key: message.get(key)
                    for key in ("content", "refusal", "reasoning_content", "tool_calls")
                },
                "finish_reason": choices[0].get("finish_reason"),
            }
        ],
        "usage": body.get("usage"),
    }
    yield from merger.feed(chunk)
    yield from merger.finish()
    yield RunCompleted(merger.finish_reason)
