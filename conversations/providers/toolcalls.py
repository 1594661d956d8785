"""Tool calls as vendors stream them, turned into `ToolCallStarted` / `Delta` / `Completed`.

Every streaming vendor sends a call in pieces (a start with the name, argument fragments, an
end) and the relay wants each call announced before its arguments and completed exactly once,
even when the vendor never ends it. `ToolCalls` keeps that bookkeeping for OpenAI (fragments
keyed by `index`), Dimedove (by `call_id`) and AG-Kit / AG-UI (by `toolCallId`); what differs
between them is said by the two flags of its constructor. Vendors that report a call once,
whole (Dynamiq, Loop Health), use `whole_call`.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from conversations.events import (
    ProviderEvent,
    ToolCallCompleted,
    ToolCallDelta,
    ToolCallStarted,
)


@dataclass
class ToolCall:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    # `ToolCallStarted` was yielded (OpenAI holds it back until the id and the name are known).
    started: bool = False
    completed: bool = False

    def text(self) -> str:
        return "".join(self.arguments)


class ToolCalls:
    """The tool calls of one reply, keyed by whatever links a vendor's pieces of one call.

    `renames`: a later start naming an already announced call differently renames it and
    announces it again (AG-Kit / AG-UI: arguments may come before the name; the relay keeps one
    card per id). Without it a later name only fills a call that had none, silently (Dimedove).
    `sealed`: argument fragments after the call completed are dropped (Dimedove, whose two shapes
    of one call may both arrive); unsealed, they are still relayed (AG-Kit / AG-UI).
    """

    def __init__(self, *, renames: bool = False, sealed: bool = True) -> None:
        self.calls: dict[Hashable, ToolCall] = {}
        self.renames = renames
        self.sealed = sealed

    def get(self, key: Hashable) -> ToolCall:
        """The call's record, created unannounced and without an id (OpenAI keys fragments by
        position and names the call in one of them)."""
        call = self.calls.get(key)
        if call is None:
            call = self.calls[key] = ToolCall()
        return call

    def announce(self, key: Hashable) -> Iterator[ProviderEvent]:
        """`ToolCallStarted` once, then the fragments held back until then as one delta."""
        call = self.get(key)
        if call.started:
            return
        call.started = True
        yield ToolCallStarted(call.call_id, call.name)
        if call.arguments:
            yield ToolCallDelta(call.call_id, call.text())

    def start(self, key: Hashable, name: str = "") -> Iterator[ProviderEvent]:
        """Announce a new call; for a known one, take the name as the constructor says."""
        call = self.calls.get(key)
        if call is None:
            self.calls[key] = ToolCall(call_id=str(key), name=name)
            yield from self.announce(key)
        elif name and name != call.name:
            if self.renames:
                call.name = name
                yield ToolCallStarted(call.call_id, name)
            elif not call.name:
                call.name = name

    def add(self, key: Hashable, fragment: str) -> Iterator[ProviderEvent]:
        """One argument fragment, starting the call if it is the first thing heard of it."""
        if not fragment:
            return
        yield from self.start(key)
        call = self.calls[key]
        if call.completed and self.sealed:
            return
        call.arguments.append(fragment)
        yield ToolCallDelta(call.call_id, fragment)

    def complete(
        self, key: Hashable, name: str = "", arguments: str | None = None
    ) -> Iterator[ProviderEvent]:
        """`ToolCallCompleted` once, with `arguments` when the vendor repeats them whole, else
        the fragments received."""
        yield from self.start(key, name)
        call = self.calls[key]
        if call.completed:
            return
        call.completed = True
        yield from self.announce(key)
        call.name = name or call.name
        yield ToolCallCompleted(
            call.call_id, call.name, call.text() if arguments is None else arguments
        )

    def finish(self) -> Iterator[ProviderEvent]:
        """Complete the calls the vendor never ended, in the order they came, with what
        arrived: no tool card stays spinning."""
        for key in list(self.calls):
            yield from self.complete(key)


def whole_call(call_id: str, name: str, arguments: str) -> Iterator[ProviderEvent]:
    """A call the vendor reports once, finished: started and completed together."""
    yield ToolCallStarted(call_id, name)
    yield ToolCallCompleted(call_id, name, arguments)


def arguments_text(value: Any) -> str:
    """Whole arguments as the JSON text the relay stores: text as sent, anything else dumped
    (vendors that send an object get the same text OpenAI would have sent)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
