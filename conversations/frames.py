"""JSON shapes sent to browsers and API clients, defined once (documented in docs/protocol.md).

`conversation_json` / `message_json` are used by the JSON API, the chat page's initial state and
the websocket; the `*_frame` helpers build websocket server -> client frames.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conversations.models import Conversation, Message, ToolCall, display_title, pick_title


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def conversation_json(conversation: Conversation, language: str | None = None) -> dict[str, Any]:
    """`generated_title` / `display_title` in `language` (default: the active one);
    `generated_titles` is every vendor title by locale, so a frame fanned out to sockets of
    different languages can be localized per socket (`localize_conversation`)."""
    return {
        "id": str(conversation.id),
        "agent": conversation.agent.slug,
        "agent_name": conversation.agent.name,
        "title": conversation.title,
        "generated_title": conversation.generated_title(language),
        "generated_titles": conversation.generated_titles or {},
        "display_title": conversation.display_title(language),
        "external_user_id": conversation.external_user_id,
        "metadata": conversation.metadata,
        "archived": conversation.archived,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
    }


def localize_conversation(data: dict[str, Any], language: str) -> dict[str, Any]:
    """A copy of a `conversation_json` dict with its titles in `language`."""
    titles = data.get("generated_titles") or {}
    return {
        **data,
        "generated_title": pick_title(titles, language),
        "display_title": display_title(data.get("title") or "", titles, language),
    }


def localize_frame(frame: dict[str, Any], language: str) -> dict[str, Any]:
    """A frame carrying a conversation (`conversation.sync` / `conversation.updated`) with its
    titles in `language`; other frames unchanged. Never mutates `frame`: the relay hands the
    same dict to every viewer."""
    conversation = frame.get("conversation")
    if not isinstance(conversation, dict):
        return frame
    return {**frame, "conversation": localize_conversation(conversation, language)}


def tool_call_json(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
        "result": call.result,
        "status": call.status,
    }


def message_json(message: Message, tool_calls: list[ToolCall] | None = None) -> dict[str, Any]:
    """`tool_calls` defaults to the rows attached by services.transcript (`tool_call_rows`) or
    prefetched; pass `[]` for a message just created (no query, safe in async code)."""
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
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "error": message.error,
        "tool_calls": [tool_call_json(c) for c in calls],
        "token_usage": message.usage,
        "client_id": message.client_id,
        "created_at": _iso(message.created_at),
        "completed_at": _iso(message.completed_at),
        "ttft_ms": message.ttft_ms,
        "extra": message.extra,
        "feedback": _feedback_json(message),
    }


def _feedback_json(message: Message) -> dict[str, Any] | None:
    # Read only when loaded (select_related/prefetch in transcript()): never a query per message.
    if message.role != Message.Role.ASSISTANT or "feedback" not in message._state.fields_cache:
        return None
    feedback = message._state.fields_cache["feedback"]
    if feedback is None:
        return None
    return {"score": feedback.score, "comment": feedback.comment}


def error_frame(code: str, message: str, *, retry_after: int | None = None,
                client_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if retry_after is not None:
        frame["retry_after"] = retry_after  # seconds, with code "rate_limited"
    if client_id is not None:
        # The refused message.send: the client drops exactly that message from its outbox.
        frame["client_id"] = client_id
    return frame


def message_frame(kind: str, message: dict[str, Any]) -> dict[str, Any]:
    """`message.created` / `message.completed` / `message.failed` / `message.canceled`."""
    return {"type": kind, "message": message}


TERMINAL_FRAMES = ("message.completed", "message.failed", "message.canceled")


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
