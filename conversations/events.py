"""Normalized provider events: the one vocabulary between providers and the relay.

Providers turn vendor bytes into these; the relay turns them into browser frames (the frame
shapes are in `frames.py` and documented in docs/protocol.md). A run ends with exactly one
terminal event: `RunCompleted`, `RunFailed` or `InterruptRequested` (the run pauses awaiting the
user's answer). A provider whose stream stops without one is reported as `vendor_truncated` by
the relay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Model "thinking"; stored and shown apart from the answer, never mixed into it."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    call_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallCompleted:
    """`arguments` is the raw text the vendor sent (may be empty or not JSON)."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallResult:
    call_id: str
    result: Any


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class VendorConversation:
    """The vendor created (or confirmed) its own conversation id; the relay stores it."""

    vendor_conversation_id: str


@dataclass(frozen=True, slots=True)
class TitleGenerated:
    """Vendor-generated titles keyed by locale, e.g. {"en-ca": ..., "fr-ca": ...}."""

    titles: dict[str, str]


@dataclass(frozen=True, slots=True)
class VendorExtra:
    """Anything worth keeping for review that has no browser event of its own (data blocks,
    unknown vendor events). Stored under `Message.extra[key]` as a list."""

    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class InterruptRequested:
    """The vendor needs the user's answer before it goes on; the run pauses (`awaiting_input`).

    `payload` is shown to the user (a question, the tool call to approve...). `vendor_data` is
    private to the provider: stored with the pending interrupt and handed back unchanged in
    `RunRequest.resume["vendor_data"]` (e.g. a run id, or the dialect to answer in).
    """

    interrupt_id: str
    reason: str
    payload: Any = None
    vendor_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunCompleted:
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RunFailed:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


ProviderEvent = (
    TextDelta
    | ReasoningDelta
    | ToolCallStarted
    | ToolCallDelta
    | ToolCallCompleted
    | ToolCallResult
    | Usage
    | VendorConversation
    | TitleGenerated
    | VendorExtra
    | InterruptRequested
    | RunCompleted
    | RunFailed
)

TERMINAL_EVENTS = (RunCompleted, RunFailed, InterruptRequested)


class ErrorCode:
    """Codes of `message.failed` (relay) and of rejected client frames (`error`)."""

    VENDOR_AUTH = "vendor_auth"
    VENDOR_NOT_FOUND = "vendor_not_found"
    VENDOR_RATE_LIMITED = "vendor_rate_limited"
    VENDOR_UNAVAILABLE = "vendor_unavailable"
    VENDOR_UNREACHABLE = "vendor_unreachable"
    VENDOR_TIMEOUT = "vendor_timeout"
    VENDOR_TRUNCATED = "vendor_truncated"
    VENDOR_ERROR = "vendor_error"
    VENDOR_BAD_REQUEST = "vendor_bad_request"
    VENDOR_PROTOCOL = "vendor_protocol"
    # The reply passed MAX_REPLY_CHARS; the text up to the cap is kept.
    VENDOR_TOO_LARGE = "vendor_too_large"
    # The vendor no longer knows this conversation (404 on it): start a new conversation.
    VENDOR_CONVERSATION_LOST = "vendor_conversation_lost"
    AGENT_MISCONFIGURED = "agent_misconfigured"
    SERVER_RESTART = "server_restart"
    INTERNAL_ERROR = "internal_error"
