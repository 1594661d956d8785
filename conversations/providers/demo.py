"""The demo agent: no network, no key. It streams a markdown reply at a model's pace so the whole
product (streaming, stop, reload mid-stream, tool calls, failures) can be tried on a fresh clone.

Say "tool" to get a tool call before the text; say "fail-demo" to get a failed run; say
"approval" to get an interrupt that waits for the user's approve / reject answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator

from conversations.events import (
    ErrorCode,
    InterruptRequested,
    ProviderEvent,
    RunCompleted,
    RunFailed,
    TextDelta,
    ToolCallCompleted,
    ToolCallDelta,
    ToolCallResult,
    ToolCallStarted,
    Usage,
)
from conversations.providers.base import (
    IMAGE_TYPES,
    TEXT_TYPES,
    Capabilities,
    FilePart,
    Provider,
    RunRequest,
)

# The quoted message is cut to 280 characters so a pasted essay does not turn a ~5 s demo into a
# minute-long one.
MAX_QUOTE_CHARS = 280
# Deltas of at most 8 characters: roughly what a model's token stream delivers.
MAX_DELTA_CHARS = 8

FAIL_WORD = re.compile(r"(?<![\w-])fail-demo(?![\w-])", re.IGNORECASE)
APPROVAL_WORD = re.compile(r"\bapproval\b", re.IGNORECASE)
APPROVAL_INTRO = "Before I refund order **A-1042** I need a human to approve it.\n"
APPROVAL_PAYLOAD = {
    "question": "Refund 49.99 CAD for order A-1042?",
    "options": ["approve", "reject"],
}

TOOL_NAME = "lookup_order"
TOOL_ARGUMENTS = {"order_id": "A-1042", "fields": ["status", "carrier", "eta"]}
TOOL_RESULT = {"order_id": "A-1042", "status": "shipped", "carrier": "Purolator", "eta_days": 2}

REPLY = """## Demo reply

You wrote:

{quote}

This is the **demo agent**. It runs inside chatsite, needs no API key, and streams its answer in \
small pieces, like a hosted model would.{history}

What you can try:

- **Stop** the reply while it streams
- **Reload** the page while it streams
- Mention a *tool* to see a tool call first
- Include `fail-demo` to see a failed run

| Feature | What to look for |
|---|---|
| Streaming | text grows piece by piece |
| Markdown | headings, lists, tables, code |
| Tools | a call, its arguments, its result |

A small code block, to check highlighting and copying:

```python
def greet(name: str) -> str:
    # Say hello to someone.
    return f"Hello, {{name}}!"


print(greet("chatsite"))
```

Send another message to see it again.
"""

TOOL_INTRO = (
    "I looked up order **A-1042**: it has **shipped** with Purolator and should arrive in "
    "about 2 days.\n\n"
)

FAIL_REPLY = "Starting the demo reply, then failing on purpose"


class DemoProvider(Provider):
    kind = "demo"
    # The demo answers from the whole history and describes the files it is sent.
    capabilities = Capabilities(attachments=IMAGE_TYPES | TEXT_TYPES)
    # Seconds between deltas: 0.025 s is ~40 deltas/s, a model's pace; tests set it to 0.
    delay: float = 0.025

    async def stream(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        # The agent option `delay` (seconds, 0..1) sets the pace: 0 for fast test suites.
        delay = request.agent.options.get("delay")
        if isinstance(delay, (int, float)) and not isinstance(delay, bool) and 0 <= delay <= 1:
            self.delay = float(delay)
        message = request.message
        if request.resume is not None:
            async for event in self._resumed(request):
                yield event
            return
        if APPROVAL_WORD.search(message):
            for piece in _pieces(APPROVAL_INTRO):
                await asyncio.sleep(self.delay)
                yield TextDelta(piece)
            yield InterruptRequested(
                f"int_demo_{uuid.uuid4().hex[:12]}", "approval", dict(APPROVAL_PAYLOAD)
            )
            return
        if FAIL_WORD.search(message):
            for piece in _pieces(FAIL_REPLY):
                await asyncio.sleep(self.delay)
                yield TextDelta(piece)
            yield RunFailed(ErrorCode.VENDOR_ERROR, "The demo agent was asked to fail.")
            return

        reply = _reply(request)
        if "tool" in message.lower():
            async for event in self._tool_call():
                yield event
            reply = TOOL_INTRO + reply
        for piece in _pieces(reply):
            await asyncio.sleep(self.delay)
            yield TextDelta(piece)

        prompt_words = len(message.split()) + sum(len(t.content.split()) for t in request.history)
        completion_words = len(reply.split())
        yield Usage(prompt_words, completion_words, prompt_words + completion_words)
        yield RunCompleted("stop")

    async def _resumed(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        assert request.resume is not None
        answer = request.resume.get("payload")
        text = answer if isinstance(answer, str) else json.dumps(answer)
        approved = text.strip().lower().startswith(("approve", "yes", "ok"))
        reply = (
            f"You answered: *{text.strip()[:MAX_QUOTE_CHARS]}*.\n\n"
            + ("The refund of **49.99 CAD** is on its way." if approved
               else "Understood: no refund was made.")
        )
        for piece in _pieces(reply):
            await asyncio.sleep(self.delay)
            yield TextDelta(piece)
        yield RunCompleted("stop")

    async def _tool_call(self) -> AsyncIterator[ProviderEvent]:
        call_id = f"call_demo_{uuid.uuid4().hex[:12]}"
        arguments = json.dumps(TOOL_ARGUMENTS)
        await asyncio.sleep(self.delay)
        yield ToolCallStarted(call_id, TOOL_NAME)
        for start in range(0, len(arguments), MAX_DELTA_CHARS):
            await asyncio.sleep(self.delay)
            yield ToolCallDelta(call_id, arguments[start : start + MAX_DELTA_CHARS])
        yield ToolCallCompleted(call_id, TOOL_NAME, arguments)
        # A real lookup takes a moment; ten deltas' worth makes the pending state visible.
        await asyncio.sleep(self.delay * 10)
        yield ToolCallResult(call_id, dict(TOOL_RESULT))


def _reply(request: RunRequest) -> str:
    quoted = request.message.strip()
    if len(quoted) > MAX_QUOTE_CHARS:
        quoted = quoted[: MAX_QUOTE_CHARS - 1] + "…"
    quote = "\n".join(f"> {line}" if line.strip() else ">" for line in quoted.splitlines())
    earlier = len(request.history)
    history = (
        f" This conversation has {earlier} earlier message{'s' if earlier != 1 else ''}."
        if earlier
        else ""
    )
    quote = quote or ("> (no text)" if request.attachments else "> (an empty message)")
    if request.attachments:
        quote += "".join(f"\n\nI received {describe_file(f)}." for f in request.attachments)
    return REPLY.format(quote=quote, history=history)


def describe_file(part: FilePart) -> str:
    """"screenshot.png (image/png, 12 KB)": what the demo says it was sent."""
    size = (f"{round(len(part.data) / 1024)} KB" if len(part.data) >= 1024
            else f"{len(part.data)} bytes")
    # The name is the user's: backticks keep markdown in it from rendering.
    name = part.name.replace("`", "'")
    return f"`{name}` ({part.content_type}, {size})"


def _pieces(text: str) -> list[str]:
    """Words with their trailing whitespace, long words cut into a few characters each."""
    pieces: list[str] = []
    for word in re.findall(r"\S+\s*|\s+", text):
        pieces.extend(word[i : i + MAX_DELTA_CHARS] for i in range(0, len(word), MAX_DELTA_CHARS))
    return pieces
