"""The shape every provider has.

A provider is plain async Python: it takes a `RunRequest` (plain data, no ORM objects) and yields
`conversations.events` objects. It never touches the ORM, Channels or a socket, so each one is
testable alone against a fake vendor on loopback.

Rules every provider follows:
- yield exactly one terminal event (`RunCompleted`, `RunFailed`, `InterruptRequested`) last;
- raise `VendorError` (or let an httpx error escape) for transport/HTTP faults: the relay maps
  them with `error_for_exception`, so the mapping lives in one place;
- never retry a POST that creates a message or run (a retry would send the user's message twice);
- honour cancellation: the relay cancels the task; `async with` blocks close the HTTP stream.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from conversations.events import ErrorCode, ProviderEvent
from conversations.providers.redact import Redactor


@dataclass(frozen=True)
class AgentConfig:
    slug: str
    provider: str
    name: str = ""
    base_url: str = ""
    token_env: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # Why token_env may not be read (services.agent_config applies conversations/token_env.py):
    # a row saved before the rule must never send, say, SECRET_KEY to a vendor.
    token_refused: str = ""

    def token(self) -> str | None:
        if not self.token_env:
            return None
        if self.token_refused:
            raise VendorError(ErrorCode.AGENT_MISCONFIGURED,
                              f"Agent {self.slug!r}: {self.token_refused}")
        return os.environ.get(self.token_env)

    def redactor(self) -> Redactor:
        return Redactor([self.token()])


@dataclass(frozen=True)
class ChatTurn:
    role: str  # "user" | "assistant" | "system" | "tool"
    content: str


@dataclass(frozen=True)
class FilePart:
    """A file sent with the user's message (an `Attachment`, read from storage by services):
    plain bytes, so a provider needs neither the ORM nor the storage backend."""

    name: str
    content_type: str  # sniffed from the content (services.attachments)
    data: bytes


# Kinds of file a provider may take (Capabilities.attachments).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
TEXT_TYPES = frozenset({"text/plain", "text/csv", "application/json"})


@dataclass(frozen=True)
class Capabilities:
    """What a provider supports, declared once per provider (docs/providers.md lists them)."""

    # The vendor is sent the active path as history on every turn, so a reply can be regenerated
    # or a message edited in place, as a branch of the same conversation. False for a vendor
    # that keeps the conversation itself: regenerate and edit then start a fork.
    branches_in_place: bool = True
    # A fork's new vendor conversation is primed with the path so far (the vendor takes history
    # in the request); False: the fork's vendor sees only the edited or repeated message.
    fork_primes_history: bool = False
    # Content types the provider can send to the vendor; empty: attachments are refused before
    # any vendor call and the chat disables its attach button.
    attachments: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RunRequest:
    agent: AgentConfig
    conversation_id: str
    message: str
    # Earlier turns, oldest first, not including `message`.
    history: list[ChatTurn] = field(default_factory=list)
    title: str = ""
    external_user_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    vendor_conversation_id: str = ""
    # Set when the run answers an interrupt: {"interrupt_id": str, "payload": Any,
    # "reason": str, "vendor_data": dict} (vendor_data as the provider's InterruptRequested had it).
    resume: dict[str, Any] | None = None
    # Files sent with `message`, in upload order.
    attachments: list[FilePart] = field(default_factory=list)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 120.0

    def httpx(self) -> httpx.Timeout:
        # write/pool get the connect budget: a request body is small, and waiting longer for a
        # pooled connection than for a new one makes no sense.
        return httpx.Timeout(
            connect=self.connect, read=self.read, write=self.connect, pool=self.connect
        )


class VendorError(Exception):
    """A vendor fault with its relay code and a message fit to show the user."""

    def __init__(
        self, code: str, message: str, *, status: int | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}


class Provider:
    """Base class: subclasses set `kind` and implement `stream`."""

    kind: ClassVar[str] = ""
    # Options `agents add` must see (name -> help); checked by `validate_options`.
    required_options: ClassVar[dict[str, str]] = {}
    default_base_url: ClassVar[str] = ""
    # Ends "Agent 'x' has no base URL", for a vendor with no default: where to find one.
    base_url_hint: ClassVar[str] = "."
    capabilities: ClassVar[Capabilities] = Capabilities()

    @classmethod
    def capabilities_for(cls, agent: AgentConfig) -> Capabilities:
        """The capabilities with this agent's options (a provider whose behaviour depends on
        an option overrides this)."""
        return cls.capabilities

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()

    def stream(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        raise NotImplementedError

    async def delete_conversation(self, agent: AgentConfig, vendor_conversation_id: str) -> None:
        """Delete the vendor-side conversation, where the vendor has one. Default: nothing."""
        return None

    # The provider boundary: callers use these, never `stream`/`delete_conversation` directly.

    async def run(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        """`stream`, with every vendor string redacted of the agent's token (redact.py): the
        events it yields and the `VendorError` it raises (any other escaping exception is
        mapped by `error_for_exception` first, so transport errors are redacted too)."""
        redactor = request.agent.redactor()
        try:
            async with contextlib.aclosing(self.stream(request)) as stream:  # type: ignore[type-var]
                async for event in stream:
                    yield redactor.event(event)
        except (VendorError, httpx.HTTPError) as exc:
            raise redact_error(error_for_exception(exc, request.agent), redactor) from None

    async def delete(self, agent: AgentConfig, vendor_conversation_id: str) -> None:
        """`delete_conversation`, raising only redacted `VendorError`s."""
        try:
            await self.delete_conversation(agent, vendor_conversation_id)
        except Exception as exc:
            raise redact_error(error_for_exception(exc, agent), agent.redactor()) from None

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> list[str]:
        """Problems with an agent's options, one readable line each (empty when fine)."""
        return [
            f"missing option {name!r} ({help_text})"
            for name, help_text in cls.required_options.items()
            if options.get(name) in (None, "")
        ]

    # Helpers shared by providers -------------------------------------------------------------

    def check_agent(self, agent: AgentConfig) -> str:
        """Refuse to call the vendor for a misconfigured agent (`agent_misconfigured`): no base
        URL first, then incomplete options. Returns the base URL."""
        base_url = self.require_base_url(agent)
        problems = self.validate_options(agent.options)
        if problems:
            raise VendorError(
                ErrorCode.AGENT_MISCONFIGURED, f"Agent {agent.slug!r}: {'; '.join(problems)}."
            )
        return base_url

    def require_base_url(self, agent: AgentConfig) -> str:
        """The agent's base URL (or the vendor's default); `agent_misconfigured` when neither."""
        base_url = self.base_url(agent, self.default_base_url)
        if not base_url:
            raise VendorError(
                ErrorCode.AGENT_MISCONFIGURED,
                f"Agent {agent.slug!r} has no base URL{self.base_url_hint}",
            )
        return base_url

    @staticmethod
    def auth_headers(agent: AgentConfig) -> dict[str, str]:
        token = agent.token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    @staticmethod
    def base_url(agent: AgentConfig, default: str = "") -> str:
        return (agent.base_url or default).rstrip("/")


def redact_error(error: VendorError, redactor: Redactor) -> VendorError:
    return VendorError(error.code, redactor.text(error.message), status=error.status,
                       details=redactor.value(error.details))


def error_for_status(status: int, vendor_message: str, agent: AgentConfig) -> VendorError:
    """Map an HTTP error status to the relay's code, with a message a user can act on."""
    if status in (401, 403):
        hint = (
            f"check the token in the {agent.token_env} environment variable"
            if agent.token_env
            else "this agent has no token variable configured"
        )
        return VendorError(
            ErrorCode.VENDOR_AUTH,
            f"The vendor refused our credentials ({status}): {hint}."
            + (f" Vendor said: {vendor_message}" if vendor_message else ""),
            status=status,
        )
    if status == 404:
        code = ErrorCode.VENDOR_NOT_FOUND
    elif status == 429:
        code = ErrorCode.VENDOR_RATE_LIMITED
    elif status >= 500:
        code = ErrorCode.VENDOR_UNAVAILABLE
    else:
        code = ErrorCode.VENDOR_BAD_REQUEST
    text = vendor_message or httpx.codes.get_reason_phrase(status) or "error"
    return VendorError(code, f"The vendor answered {status}: {text}", status=status)


# Transport faults, the most specific class first, as httpx maps httpcore's exceptions to its own
# (`httpx._transports.default.HTTPCORE_EXC_MAP`): the first class an exception is an instance of
# gives the code and the message. `{aside}` is " (<first text in the exception chain>)" or
# nothing; `{reason}` that text, else the exception's class name.
TRANSPORT_ERRORS: tuple[tuple[type[httpx.TransportError], str, str], ...] = (
    (httpx.ConnectTimeout, ErrorCode.VENDOR_UNREACHABLE, "Timed out connecting to the vendor."),
    # Read, write and pool timeouts: no byte for the read timeout (120 s; heartbeats count).
    (
        httpx.TimeoutException,
        ErrorCode.VENDOR_TIMEOUT,
        "The vendor stopped sending data and the stream timed out.",
    ),
    (httpx.ConnectError, ErrorCode.VENDOR_UNREACHABLE, "Could not connect to the vendor."),
    (
        httpx.RemoteProtocolError,
        ErrorCode.VENDOR_TRUNCATED,
        "The vendor closed the connection before the reply ended.",
    ),
    # The connection broke while the response was being read (a reset mid-stream): the request
    # reached the vendor, so, like a close without the final chunk, the reply is cut.
    (
        httpx.ReadError,
        ErrorCode.VENDOR_TRUNCATED,
        "The connection to the vendor broke before the reply ended{aside}.",
    ),
    # WriteError (the request could not be sent), proxy and other protocol errors: the vendor
    # was not reached.
    (
        httpx.TransportError,
        ErrorCode.VENDOR_UNREACHABLE,
        "Network error talking to the vendor: {reason}.",
    ),
)

# Links of `__cause__`/`__context__` searched for a message: a TCP reset is two without text
# (ReadError("") from anyio's BrokenResourceError()); 5 leaves room for wrappers.
MAX_CHAIN_DEPTH = 5


def error_for_exception(exc: BaseException, agent: AgentConfig | None = None) -> VendorError:
    """Map any exception escaping a provider to a `VendorError` (one place for the mapping)."""
    if isinstance(exc, VendorError):
        return exc
    for cls, code, template in TRANSPORT_ERRORS:
        if isinstance(exc, cls):
            detail = _first_text(exc)
            return VendorError(
                code,
                template.format(
                    aside=f" ({detail})" if detail else "", reason=detail or type(exc).__name__
                ),
            )
    return VendorError(ErrorCode.INTERNAL_ERROR, "The reply failed because of an internal error.")


def _first_text(exc: BaseException) -> str:
    # httpx's errors often have an empty str(): a TCP reset is ReadError("") caused by anyio's
    # BrokenResourceError(), with no text either. Take the first text down the chain, so a
    # stored message says what it can and is never empty.
    cause: BaseException | None = exc
    for _ in range(MAX_CHAIN_DEPTH):
        if cause is None:
            break
        if detail := str(cause).strip():
            return detail
        cause = cause.__cause__ or cause.__context__
    return ""
