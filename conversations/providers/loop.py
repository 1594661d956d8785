"""Loop Health AI service conversations (docs/providers/loop.md).

Loop Health keeps the conversation: we create it once (`POST /v1/conversations`), then post each
user message to it (`POST /v1/conversations/{id}/messages`). The reply is one JSON document, not a
stream, so the provider turns it into the events a stream would have produced: the whole text as
one `TextDelta`, each tool call as started + completed (+ result), the usage, then `RunCompleted`.

Guesses (the docs leave them open; see docs/providers/loop.md):
- `tool_calls` items are untyped: the OpenAI shape `{id, type, function{name, arguments}}` is read
  first, with common alternatives after it, and the raw array is kept for review;
- `assistant_message: null` in `chat-completion` mode (we asked for a reply and got none) fails the
  run rather than ending it as an empty success.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

from conversations.events import (
    ErrorCode,
    ProviderEvent,
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
    delete_json,
    request_json,
    vendor_error_message,
)
from conversations.providers.toolcalls import arguments_text, whole_call
from conversations.providers.usage import parse_usage

# The `model` enum of POST /v1/conversations (§A3). Checked strictly: the vendor's schema is an
# enum, so a typo would otherwise surface only as a 400 on a user's first message; a model Loop
# adds later is a one-line change here.
MODELS = ("claude-sonnet-4-6", "gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "gpt-3.5-turbo")
# `append` stores the message without a reply (the vendor's own default); `chat-completion` asks
# for the assistant's answer, which is what a chat needs, so it is ours.
MODES = ("chat-completion", "append")
DEFAULT_MODE = "chat-completion"

CONVERSATION_LOST = (
    "Loop Health no longer has this conversation. Start a new conversation to continue."
)


class LoopProvider(Provider):
    kind = "loop"
    # Loop Health keeps the conversation itself and takes no files.
    capabilities = Capabilities(branches_in_place=False)
    required_options: dict[str, str] = {}
    default_base_url = "https://ai.platform.loop.health"

    async def stream(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        agent = request.agent
        self.check_agent(agent)
        root = self._root(agent)
        mode = agent.options.get("mode") or DEFAULT_MODE
        headers = self.auth_headers(agent)
        async with build_client(self.timeouts) as client:
            conversation_id = request.vendor_conversation_id
            if not conversation_id:
                body: dict[str, Any] = {}
                if agent.options.get("model"):
                    body["model"] = agent.options["model"]
                if request.title:
                    body["title"] = request.title
                created = await request_json(
                    client,
                    "POST",
                    f"{root}/v1/conversations",
                    agent=agent,
                    json=body,
                    headers=headers,
                )
                conversation_id = _conversation_id(created)
                # Yielded before the message is sent, so the relay stores the id even if the send
                # then fails or is cancelled: the next message reuses the conversation.
                yield VendorConversation(conversation_id)
            try:
                reply = await request_json(
                    client,
                    "POST",
                    f"{_conversation_url(root, conversation_id)}/messages",
                    agent=agent,
                    json={"role": "user", "content": request.message, "mode": mode},
                    headers=headers,
                )
            except VendorError as exc:
                # The send endpoint's only documented 404 is "Conversation not found": the vendor
                # dropped it (deleted, expired), and only a new conversation can go on.
                if exc.status == 404:
                    raise VendorError(
                        ErrorCode.VENDOR_CONVERSATION_LOST,
                        CONVERSATION_LOST,
                        status=404,
                        details={"vendor_message": exc.message},
                    ) from exc
                raise
        # The whole reply is checked before anything is yielded: a malformed document fails the
        # run without half of it shown.
        for event in list(_events_from_reply(reply, conversation_id, mode)):
            yield event

    async def delete_conversation(self, agent: AgentConfig, vendor_conversation_id: str) -> None:
        if not vendor_conversation_id:
            return
        async with build_client(self.timeouts) as client:
            answer = await delete_json(
                client,
                _conversation_url(self._root(agent), vendor_conversation_id),
                agent=agent,
                headers=self.auth_headers(agent),
            )
        if isinstance(answer, dict) and answer.get("deleted") is False:
            raise VendorError(
                ErrorCode.VENDOR_ERROR,
                "Loop Health did not delete the conversation: "
                + (vendor_error_message(answer) or "it answered deleted: false."),
                details={"body": answer},
            )

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> list[str]:
        problems = super().validate_options(options)
        model = options.get("model")
        if model not in (None, "") and model not in MODELS:
            problems.append(f"option 'model' must be one of {', '.join(MODELS)} (got {model!r})")
        mode = options.get("mode")
        if mode not in (None, "") and mode not in MODES:
            problems.append(f"option 'mode' must be one of {', '.join(MODES)} (got {mode!r})")
        return problems

    def _root(self, agent: AgentConfig) -> str:
        root = self.base_url(agent, self.default_base_url)
        # The base URL is the host root, but other providers take URLs ending in /v1 and the
        # same habit here would produce /v1/v1/... and a baffling 404.
        return root.removesuffix("/v1")


def _conversation_url(root: str, conversation_id: str) -> str:
    # Quoted whole: the id is the vendor's (a UUID today), and a "/" in it must not change the path.
    return f"{root}/v1/conversations/{quote(conversation_id, safe='')}"


def _conversation_id(created: Any) -> str:
    conversation_id = created.get("id") if isinstance(created, dict) else None
    if isinstance(conversation_id, str) and conversation_id:
        return conversation_id
    raise VendorError(
        ErrorCode.VENDOR_PROTOCOL,
        "Loop Health created no conversation id: " + (vendor_error_message(created) or "empty."),
        details={"body": created},
    )


def _events_from_reply(reply: Any, conversation_id: str, mode: str) -> Iterator[ProviderEvent]:
    if not isinstance(reply, dict) or "assistant_message" not in reply:
        raise _malformed("it has no assistant_message", reply)
    user_message = reply.get("message")
    assistant = reply["assistant_message"]
    if assistant is not None and not isinstance(assistant, dict):
        raise _malformed("assistant_message is not an object", reply)
    ids = {
        "conversation_id": conversation_id,
        "user_message_id": _message_id(user_message),
        "assistant_message_id": _message_id(assistant),
    }
    if assistant is None:
        yield VendorExtra("vendor_message_ids", ids)
        if mode == "append":
            # Append mode stores the message and asks for no reply: nothing more to show.
            yield RunCompleted(None)
        else:
            yield RunFailed(
                ErrorCode.VENDOR_ERROR,
                "Loop Health saved your message but sent no reply.",
            )
        return
    content = assistant.get("content")
    if content is not None and not isinstance(content, str):
        raise _malformed("assistant_message.content is not text", reply)
    raw_calls = assistant.get("tool_calls")
    if raw_calls is not None and not isinstance(raw_calls, list):
        raise _malformed("assistant_message.tool_calls is not a list", reply)
    if content:
        yield TextDelta(content)
    if raw_calls:
        # The item shape is undocumented: keep exactly what came, whatever we made of it.
        yield VendorExtra("vendor_tool_calls", raw_calls)
        yield from _tool_call_events(raw_calls)
    token_usage = assistant.get("token_usage")
    # An object, as documented; any other shape is not Loop Health's.
    usage = parse_usage(token_usage) if isinstance(token_usage, dict) else None
    if usage is not None:
        yield usage
    yield VendorExtra("vendor_message_ids", ids)
    if isinstance(assistant.get("metadata"), dict) and assistant["metadata"]:
        yield VendorExtra("vendor_metadata", assistant["metadata"])
    yield RunCompleted(None)


def _tool_call_events(raw_calls: list[Any]) -> Iterator[ProviderEvent]:
    seen: set[str] = set()
    for index, item in enumerate(raw_calls):
        call = item if isinstance(item, dict) else {"arguments": item}
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        call_id = _first_text(call, "id", "tool_call_id", "call_id") or f"call_{index}"
        # The relay keeps one card per call id; a repeated id would merge two calls.
        if call_id in seen:
            call_id = f"{call_id}_{index}"
        seen.add(call_id)
        name = _first_text(function, "name") or _first_text(call, "name", "tool_name", "tool")
        arguments = _arguments_text(function, call)
        yield from whole_call(call_id, name, arguments)
        for key in ("result", "output"):
            if call.get(key) is not None:
                yield ToolCallResult(call_id, call[key])
                break


def _arguments_text(function: dict[str, Any], call: dict[str, Any]) -> str:
    for source, key in ((function, "arguments"), (call, "arguments"), (call, "input"),
                        (call, "args")):
        if source.get(key) is not None:
            return arguments_text(source[key])
    return ""


def _first_text(source: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = source.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return ""


def _message_id(message: Any) -> str | None:
    value = message.get("id") if isinstance(message, dict) else None
    return value if isinstance(value, str) and value else None


def _malformed(problem: str, body: Any) -> VendorError:
    return VendorError(
        ErrorCode.VENDOR_PROTOCOL,
        f"Loop Health's reply is not the documented message pair ({problem}): "
        + vendor_error_message(body),
        details={"body": body},
    )
