"""JSON shapes sent to browsers and API clients, defined once (documented in docs/protocol.md).

`conversation_json` / `message_json` are used by the JSON API, the chat page's initial state and
the websocket. Every websocket server -> client frame has a `TypedDict` and one builder here
(the relay and the consumer never spell a frame themselves); the builders return plain dict
literals, the cheapest shape to build on the relay's per-delta path (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, NotRequired, Protocol, TypedDict

from django.urls import reverse

from conversations.models import (
    Attachment,
    Conversation,
    Message,
    ToolCall,
    display_title,
    pick_title,
)
from conversations.providers import capabilities
from conversations.services.costs import cost_number, message_cost


class ToolCallLike(Protocol):
    """A stored `ToolCall` row or a running reply's `services.ToolCallRecord`."""

    call_id: str
    name: str
    arguments: str
    result: Any
    status: str


class ToolCallJSON(TypedDict):
    id: str
    name: str
    arguments: str
    result: Any
    status: str


class ActiveRun(TypedDict):
    """`conversation.sync`'s `active_run`: the running reply's text so far."""

    message_id: str
    content: str
    tool_calls: list[ToolCallJSON]
    status: str


class ConversationSync(TypedDict):
    type: Literal["conversation.sync"]
    conversation: dict[str, Any]
    messages: list[dict[str, Any]]
    messages_complete: bool
    active_run: ActiveRun | None
    # Message id -> its siblings' ids (itself included, oldest first), for the messages sent
    # that have alternatives (services.branches).
    branches: dict[str, list[str]]


class ConversationForked(TypedDict):
    """Regenerate or edit on a vendor that keeps its own history: the reply runs in `conversation`,
    a new conversation forked from this one."""

    type: Literal["conversation.forked"]
    conversation: dict[str, Any]
    client_id: str | None


class MessageFrame(TypedDict):
    """`message.created` and the terminal `message.completed` / `.failed` / `.canceled`."""

    type: str
    message: dict[str, Any]


class MessageDelta(TypedDict):
    type: Literal["message.delta"]
    message_id: str
    offset: int
    delta: str


class ReasoningDeltaFrame(TypedDict):
    type: Literal["reasoning.delta"]
    message_id: str
    delta: str


class ToolCallStartedFrame(TypedDict):
    type: Literal["tool_call.started"]
    message_id: str
    tool_call_id: str
    name: str


class ToolCallDeltaFrame(TypedDict):
    type: Literal["tool_call.delta"]
    message_id: str
    tool_call_id: str
    offset: int
    delta: str


class ToolCallCompletedFrame(TypedDict):
    type: Literal["tool_call.completed"]
    message_id: str
    tool_call_id: str
    name: str
    arguments: str


class ToolCallResultFrame(TypedDict):
    type: Literal["tool_call.result"]
    message_id: str
    tool_call_id: str
    result: Any


class MessageData(TypedDict):
    type: Literal["message.data"]
    message_id: str
    key: str
    value: Any


class InterruptRequestedFrame(TypedDict):
    type: Literal["interrupt.requested"]
    message_id: str
    interrupt_id: str
    reason: str
    payload: Any


class ConversationUpdated(TypedDict):
    type: Literal["conversation.updated"]
    conversation: dict[str, Any]


class ErrorFrame(TypedDict):
    type: Literal["error"]
    code: str
    message: str
    retry_after: NotRequired[int]
    client_id: NotRequired[str]


class Pong(TypedDict):
    type: Literal["pong"]


Frame = (
    ConversationSync | ConversationForked | MessageFrame | MessageDelta | ReasoningDeltaFrame
    | ToolCallStartedFrame
    | ToolCallDeltaFrame | ToolCallCompletedFrame | ToolCallResultFrame | MessageData
    | InterruptRequestedFrame | ConversationUpdated | ErrorFrame | Pong
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def conversation_json(conversation: Conversation, language: str | None = None) -> dict[str, Any]:
    """`generated_title` / `display_title` in `language` (default: the active one);
    `generated_titles` is every vendor title by locale and `auto_title` the one taken from the
    first message, so a frame fanned out to sockets of different languages can be localized
    per socket (`localize_conversation`)."""
    return {
        "id": str(conversation.id),
        "agent": conversation.agent.slug,
        "agent_name": conversation.agent.name,
        "title": conversation.title,
        "generated_title": conversation.generated_title(language),
        "generated_titles": conversation.generated_titles or {},
        "display_title": conversation.display_title(language),
        "auto_title": conversation.auto_title,
        "external_user_id": conversation.external_user_id,
        "metadata": conversation.metadata,
        "archived": conversation.archived,
        "forked_from": str(conversation.forked_from_id) if conversation.forked_from_id else None,
        "team": team_json(conversation),
        "assignee": assignee_json(conversation),
        "capabilities": capabilities_json(conversation.agent.provider, conversation.agent.options),
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
    }


def _loaded(conversation: Conversation, name: str) -> Any:
    """A conversation's team or assignee: as the services' readers loaded it (select_related),
    else read now; but never a query in async code (the relay's announcements), where Django
    forbids one: None then."""
    cache = conversation._state.fields_cache
    if name in cache:
        return cache[name]
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return getattr(conversation, name)
    return None


def team_json(conversation: Conversation) -> dict[str, str] | None:
    """{"slug", "name"} of the conversation's team, or None (a private conversation). Unloaded
    in async code: the slug and name are empty."""
    if conversation.team_id is None:
        return None
    team = _loaded(conversation, "team")
    return {"slug": team.slug, "name": team.name} if team else {"slug": "", "name": ""}


def assignee_json(conversation: Conversation) -> dict[str, Any] | None:
    """{"id", "name"} of the conversation's assignee, or None. Unloaded in async code: the name
    is empty (as `author_json`)."""
    if conversation.assignee_id is None:
        return None
    assignee = _loaded(conversation, "assignee")
    return user_json(assignee) if assignee else {"id": conversation.assignee_id, "name": ""}


def capabilities_json(kind: str, options: dict[str, Any] | None) -> dict[str, Any]:
    caps = capabilities(kind, options)
    return {"branches_in_place": caps.branches_in_place,
            "fork_primes_history": caps.fork_primes_history,
            "attachments": sorted(caps.attachments)}


def localize_conversation(data: dict[str, Any], language: str) -> dict[str, Any]:
    """A copy of a `conversation_json` dict with its titles in `language`."""
    titles = data.get("generated_titles") or {}
    return {
        **data,
        "generated_title": pick_title(titles, language),
        "display_title": display_title(data.get("title") or "", titles, language,
                                       auto_title=data.get("auto_title") or ""),
    }


def localize_frame(frame: dict[str, Any], language: str) -> dict[str, Any]:
    """A frame carrying a conversation (`conversation.sync` / `conversation.updated`) with its
    titles in `language`; other frames unchanged. Never mutates `frame`: the relay hands the
    same dict to every viewer."""
    conversation = frame.get("conversation")
    if not isinstance(conversation, dict):
        return frame
    return {**frame, "conversation": localize_conversation(conversation, language)}


def tool_call_json(call: ToolCallLike) -> ToolCallJSON:
    return {
        "id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
        "result": call.result,
        "status": call.status,
    }


def message_json(message: Message, tool_calls: list[ToolCall] | None = None) -> dict[str, Any]:
    """`tool_calls` defaults to the rows attached by services.transcript (`tool_call_rows`) or
    prefetched; pass `[]` for a message just created (no query, safe in async code).
    `attachments` are the rows services attached (`attachment_rows`), else none: never a query."""
    if tool_calls is not None:
        calls = tool_calls
    elif hasattr(message, "tool_call_rows"):
        calls = message.tool_call_rows
    elif message.role == Message.Role.ASSISTANT:
        calls = list(message.tool_calls.all())
    else:
        calls = []
    return {
        "id": str(message.id),
        "parent_id": str(message.parent_id) if message.parent_id else None,
        "role": message.role,
        "author": author_json(message),
        "content": message.content,
        "status": message.status,
        "error": message.error,
        "tool_calls": [tool_call_json(c) for c in calls],
        "token_usage": message.usage,
        # The agent's current prices (services.costs); null without prices or usage.
        "cost": cost_number(message_cost(message)),
        "client_id": message.client_id,
        "created_at": _iso(message.created_at),
        "completed_at": _iso(message.completed_at),
        "ttft_ms": message.ttft_ms,
        # The reply's OpenTelemetry trace id (32 hex), "" when tracing is off.
        "trace_id": message.trace_id,
        "extra": message.extra,
        "feedback": _feedback_json(message),
        "attachments": [attachment_json(a) for a in getattr(message, "attachment_rows", ())],
    }


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    """An uploaded file (the upload's answer, and each of a user message's `attachments`);
    `url` serves it to those who may see the conversation."""
    return {
        "id": str(attachment.id),
        "name": attachment.name,
        "size": attachment.size,
        "content_type": attachment.content_type,
        "url": reverse("api_attachment", args=[attachment.id]),
    }


def user_json(user: Any) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.pk, "name": user.get_full_name() or user.get_username()}


def author_json(message: Message) -> dict[str, Any] | None:
    """Who wrote a user message, note or event; read only when loaded (select_related in the
    transcript loaders, or set on a message just created): never a query per message."""
    if message.author_id is None:
        return None
    author = message._state.fields_cache.get("author")
    return user_json(author) if author is not None else {"id": message.author_id, "name": ""}


def _feedback_json(message: Message) -> dict[str, Any] | None:
    # Read only when loaded (select_related/prefetch in transcript()): never a query per message.
    if message.role != Message.Role.ASSISTANT or "feedback" not in message._state.fields_cache:
        return None
    feedback = message._state.fields_cache["feedback"]
    if feedback is None:
        return None
    return {"score": feedback.score, "comment": feedback.comment}


def active_run(message_id: str, content: str, tool_calls: Iterable[ToolCallLike],
               status: str) -> ActiveRun:
    return {"message_id": message_id, "content": content,
            "tool_calls": [tool_call_json(c) for c in tool_calls], "status": status}


def sync_frame(conversation: dict[str, Any], messages: list[dict[str, Any]], complete: bool,
               active: ActiveRun | None,
               branches: dict[str, list[str]] | None = None) -> ConversationSync:
    return {"type": "conversation.sync", "conversation": conversation, "messages": messages,
            "messages_complete": complete, "active_run": active, "branches": branches or {}}


def conversation_forked(conversation: dict[str, Any],
                        client_id: str | None) -> ConversationForked:
    return {"type": "conversation.forked", "conversation": conversation, "client_id": client_id}


# The per-event builders below run once per vendor delta: one dict literal each, nothing more.

def message_delta(message_id: str, offset: int, delta: str) -> MessageDelta:
    return {"type": "message.delta", "message_id": message_id, "offset": offset, "delta": delta}


def reasoning_delta(message_id: str, delta: str) -> ReasoningDeltaFrame:
    return {"type": "reasoning.delta", "message_id": message_id, "delta": delta}


def tool_call_started(message_id: str, tool_call_id: str, name: str) -> ToolCallStartedFrame:
    return {"type": "tool_call.started", "message_id": message_id, "tool_call_id": tool_call_id,
            "name": name}


def tool_call_delta(message_id: str, tool_call_id: str, offset: int,
                    delta: str) -> ToolCallDeltaFrame:
    return {"type": "tool_call.delta", "message_id": message_id, "tool_call_id": tool_call_id,
            "offset": offset, "delta": delta}


def tool_call_completed(message_id: str, tool_call_id: str, name: str,
                        arguments: str) -> ToolCallCompletedFrame:
    return {"type": "tool_call.completed", "message_id": message_id,
            "tool_call_id": tool_call_id, "name": name, "arguments": arguments}


def tool_call_result(message_id: str, tool_call_id: str, result: Any) -> ToolCallResultFrame:
    return {"type": "tool_call.result", "message_id": message_id, "tool_call_id": tool_call_id,
            "result": result}


def message_data(message_id: str, key: str, value: Any) -> MessageData:
    return {"type": "message.data", "message_id": message_id, "key": key, "value": value}


def interrupt_requested(message_id: str, interrupt_id: str, reason: str,
                        payload: Any) -> InterruptRequestedFrame:
    return {"type": "interrupt.requested", "message_id": message_id,
            "interrupt_id": interrupt_id, "reason": reason, "payload": payload}


def conversation_updated(conversation: dict[str, Any]) -> ConversationUpdated:
    return {"type": "conversation.updated", "conversation": conversation}


def presence_frame(users: list[dict[str, Any]]) -> dict[str, Any]:
    """Who has the conversation open now: `users` [{id, name}], each once."""
    return {"type": "presence", "users": users}


def pong() -> Pong:
    return {"type": "pong"}


def error_frame(code: str, message: str, *, retry_after: int | None = None,
                client_id: str | None = None) -> ErrorFrame:
    frame: ErrorFrame = {"type": "error", "code": code, "message": message}
    if retry_after is not None:
        frame["retry_after"] = retry_after  # seconds, with code "rate_limited"
    if client_id is not None:
        # The refused message.send: the client drops exactly that message from its outbox.
        frame["client_id"] = client_id
    return frame


def message_frame(kind: str, message: dict[str, Any]) -> MessageFrame:
    """`message.created` / `message.completed` / `message.failed` / `message.canceled`."""
    return {"type": kind, "message": message}


def message_created(message: dict[str, Any]) -> MessageFrame:
    return {"type": "message.created", "message": message}


# A reply's final frame by its status; a reply paused for an interrupt ends its stream with
# `message.completed` too (docs/protocol.md).
TERMINAL_FRAME = {
    Message.Status.COMPLETED: "message.completed",
    Message.Status.AWAITING_INPUT: "message.completed",
    Message.Status.FAILED: "message.failed",
    Message.Status.CANCELED: "message.canceled",
}
TERMINAL_FRAMES = ("message.completed", "message.failed", "message.canceled")


def terminal_frame(status: str, message: dict[str, Any]) -> MessageFrame:
    """The final `message.*` frame of a reply that ended with `status`."""
    return {"type": TERMINAL_FRAME[status], "message": message}


def omit_content(message: dict[str, Any]) -> dict[str, Any]:
    """A copy of a `message_json` dict (or a sync's `active_run`) without its `content`, for a
    frame that would pass the websocket's 1 MiB limit: `content_omitted` says so and
    `content_length` (code points, the unit of delta offsets) lets a client check that the text
    it assembled from deltas is whole (docs/protocol.md)."""
    rest = {key: value for key, value in message.items() if key != "content"}
    return {**rest, "content_omitted": True, "content_length": len(message.get("content") or "")}


def without_content(frame: Any) -> dict[str, Any] | None:
    """A terminal `message.*` frame with its message's content omitted (the client has the text
    from the deltas and needs only the status); None for any other frame."""
    if not isinstance(frame, dict) or frame.get("type") not in TERMINAL_FRAMES:
        return None
    message = frame.get("message")
    if not isinstance(message, dict) or "content" not in message:
        return None
    return {**frame, "message": omit_content(message)}
