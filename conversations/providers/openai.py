"""OpenAI Chat Completions streaming, and the many backends that speak it (vLLM, Ollama, ...).

Wire format (docs/providers.md): each `data:` is a `chat.completion.chunk`; tool-call fragments
are merged by `index` (id and name only in the first fragment); with `include_usage` one chunk
with empty or null `choices` carries the usage; the stream ends with `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from conversations.events import (
    ErrorCode,
    ProviderEvent,
    ReasoningDelta,
    RunCompleted,
    RunFailed,
    TextDelta,
    TitleGenerated,
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
    request_json,
    vendor_error_message,
)
from conversations.providers.toolcalls import ToolCalls
from conversations.providers.usage import parse_usage

logger = logging.getLogger(__name__)

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

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> list[str]:
        problems = super().validate_options(options)
        title_model = options.get("title_model")
        if title_model not in (None, "") and not isinstance(title_model, str):
            problems.append(f"option 'title_model' must be a model name, not {title_model!r}")
        return problems

    async def stream(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        """The reply; then, for an untitled conversation's first exchange with `title_model`
        set, one more completion naming the conversation, before the terminal RunCompleted."""
        async with contextlib.aclosing(self._reply(request)) as events:  # type: ignore[type-var]
            async for event in events:
                if isinstance(event, RunCompleted) and wants_title(request):
                    title = await self._generate_title(request)
                    if title:
                        yield TitleGenerated({TITLE_LOCALE: title})
                yield event

    async def _generate_title(self, request: RunRequest) -> str:
        """One non-streaming completion with `title_model`; "" when it fails, which is only
        logged: the reply is complete whatever happens here."""
        agent = request.agent
        url = f"{self.base_url(agent, self.default_base_url)}/chat/completions"
        try:
            async with asyncio.timeout(TITLE_SECONDS), build_client(self.timeouts) as client:
                body = await request_json(client, "POST", url, agent=agent,
                                          json=title_body(request),
                                          headers=self.auth_headers(agent))
        except (VendorError, httpx.HTTPError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, VendorError) else str(exc)
            logger.info("OpenAI title for agent %s failed (%s): %s", agent.slug,
                        type(exc).__name__, agent.redactor().text(reason))
            return ""
        title = clean_title(completion_text(body))
        if not title:
            logger.info("OpenAI title for agent %s: the answer held no title", agent.slug)
        return title

    async def _reply(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
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
        messages: list[dict[str, Any]] = []
        if options.get("system_prompt"):
            messages.append({"role": "system", "content": str(options["system_prompt"])})
        messages.extend(
            {"role": turn.role, "content": turn.content}
            for turn in request.history
            # Tool turns need the call ids this history does not keep; empty turns (a failed
            # run) are refused by several compatible backends.
            if turn.role in HISTORY_ROLES and turn.content
        )
        messages.append({"role": "user", "content": user_content(request)})
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


def user_content(request: RunRequest) -> str | list[dict[str, Any]]:
    """The user turn's `content`: the text alone, or with files the parts of a multimodal
    message: the text, then each image as an `image_url` part holding a data URL and each text
    file inline as a text part headed by its name."""
    if not request.attachments:
        return request.message
    parts: list[dict[str, Any]] = []
    if request.message:
        parts.append({"type": "text", "text": request.message})
    for part in request.attachments:
        if part.content_type in IMAGE_TYPES:
            data = base64.b64encode(part.data).decode("ascii")
            parts.append({"type": "image_url",
                          "image_url": {"url": f"data:{part.content_type};base64,{data}"}})
        elif part.content_type in TEXT_TYPES:
            text = part.data.decode("utf-8-sig", errors="replace")
            parts.append({"type": "text", "text": f"{part.name}:\n\n{text}"})
        else:  # services refuse what `capabilities` lacks before calling the vendor
            raise VendorError(ErrorCode.VENDOR_BAD_REQUEST,
                              f"{part.name} ({part.content_type}) cannot be sent to this agent.")
    return parts


# Titles (`title_model`) --------------------------------------------------------------------------

# One short completion: past this, the finished reply is not held back any longer for a title.
TITLE_SECONDS = 15.0
# The "short title": one line of the sidebar, as the title taken from the first message.
TITLE_MAX_CHARS = 60
# Enough of the first message to name the conversation; a pasted log is not sent twice whole.
TITLE_SOURCE_MAX_CHARS = 4_000
# The title's key in Conversation.generated_titles: BCP 47 "undetermined", since the model writes
# in the message's language, whichever it is (models.pick_title falls back to the only one).
TITLE_LOCALE = "und"
TITLE_PROMPT = (
    f"Write a short title, at most {TITLE_MAX_CHARS} characters, for a conversation that starts "
    "with the user's message below. Write it in the same language as the message. Answer with "
    "the title only: no quotes, no final period."
)
# Reasoning models served by some compatible backends (Ollama, vLLM) think aloud in `content`.
THINKING = re.compile(r"<think>.*?</think>", re.S | re.I)
TITLE_PREFIX = re.compile(r"^(?:\*\*)?title(?:\*\*)?\s*:\s*", re.I)
QUOTES = "\"'“”‘’«»`*#_ "


def wants_title(request: RunRequest) -> bool:
    """`title_model` is set, this is the conversation's first exchange and it has no title."""
    model = request.agent.options.get("title_model")
    return (
        isinstance(model, str) and bool(model.strip())
        and not request.history and not request.title and request.resume is None
        and bool(request.message.strip())
    )


def title_body(request: RunRequest) -> dict[str, Any]:
    return {
        "model": str(request.agent.options["title_model"]).strip(),
        "messages": [
            {"role": "system", "content": TITLE_PROMPT},
            {"role": "user", "content": request.message[:TITLE_SOURCE_MAX_CHARS]},
        ],
        "stream": False,
    }


def completion_text(body: Any) -> str:
    """The first choice's text of a `chat.completion` ("" when there is none)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts, from some compatible backends
        content = "".join(p.get("text", "") for p in content
                          if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def clean_title(text: str) -> str:
    """The model's answer as a title: its first line with text, without a "Title:" label,
    quotes or a final period, cut on a word boundary at TITLE_MAX_CHARS with "…"."""
    text = THINKING.sub("", text)
    line = next((" ".join(ln.split()) for ln in text.splitlines() if ln.strip()), "")
    line = TITLE_PREFIX.sub("", line).strip(QUOTES).rstrip(".").strip(QUOTES)
    if len(line) <= TITLE_MAX_CHARS:
        return line
    cut = line[: TITLE_MAX_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return f"{cut.rstrip()}…"


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
