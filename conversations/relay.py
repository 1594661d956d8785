"""The relay: owns each run's lifecycle, persistence and fan-out.

Data flows one way: vendor bytes -> provider -> normalized events -> this module -> sockets and
the database. Design numbers (../shared/reference/performance.md, measured on this machine kind):

- One channel-layer message per vendor delta is 7-35x slower than a direct send and collapses at
  ~20 streams on Redis. So deltas go *straight* to the socket that started the run, and every
  other viewer (second tab, other process) gets coalesced batches through the channel layer,
  one message per FANOUT_WINDOW (~50 ms: a 50 ms window cut publish counts ~25x in peers).
- No database write per delta: the text is flushed on a timer (FLUSH_INTERVAL, ~1 s; it doubles
  as the heartbeat that lets survivors reap a dead process's runs) and once at the end, so the
  queries per reply do not grow with the number of deltas.
- A run is its own task, never awaited inside a consumer's receive handler, so "stop" frames are
  handled during a stream; it keeps running when the socket that started it goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from uuid import UUID

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.utils import timezone

from conversations import events as ev
from conversations import services
from conversations.frames import conversation_json, message_frame, message_json
from conversations.models import Message, ToolCall
from conversations.providers import get_provider
from conversations.providers.base import VendorError, error_for_exception

logger = logging.getLogger(__name__)

Sink = Callable[[dict[str, Any]], Awaitable[None]]


class Viewer(Protocol):
    """A socket watching a conversation (the consumer)."""

    channel_name: str

    async def deliver(self, frames: list[dict[str, Any]]) -> None: ...

# Retry bounds of the process bus listener during a channel-layer outage: quick enough to
# honour a "stop" soon after Redis is back, slow enough not to spin while it is down.
CONTROL_RETRY_MIN = 0.5
CONTROL_RETRY_MAX = 5.0
# How long a socket syncing mid-reply waits for the live text from the process running it
# (another server). A healthy layer answers in ~1 ms; past this the stored copy (<= ~1 s old)
# is used and the client fills the rest from the live batches, or resyncs on a gap.
SNAPSHOT_TIMEOUT = 1.0
# Batches of all replies of a process ride one bus message per window: 25 ms keeps a second
# viewer's added delay well under the 250 ms target while capping bus traffic at 40 msgs/s.
BUS_WINDOW = 0.025

TERMINAL_FRAME = {
    Message.Status.COMPLETED: "message.completed",
    Message.Status.AWAITING_INPUT: "message.completed",
    Message.Status.FAILED: "message.failed",
    Message.Status.CANCELED: "message.canceled",
}


def conversation_group(conversation_id: UUID | str) -> str:
    """Every socket of a conversation (any process) listens here."""
    return f"conv.{UUID(str(conversation_id)).hex}"


class Run:
    def __init__(self, relay: Relay, accepted: services.AcceptedMessage, owner: Sink | None,
                 owner_channel: str | None) -> None:
        assert accepted.assistant_message is not None and accepted.request is not None
        self.relay = relay
        self.conversation = accepted.conversation
        self.conversation_id = str(accepted.conversation.id)
        self.message_id = str(accepted.assistant_message.id)
        self.placeholder = accepted.assistant_message
        self.request = accepted.request
        self.owner = owner
        self.owner_channel = owner_channel
        self.group = conversation_group(self.conversation_id)
        self.status = Message.Status.STREAMING
        self.cancel_requested = False
        self._parts: list[str] = []
        self.length = 0  # in code points, as Python counts; `offset` uses the same unit
        self.tool_calls: dict[str, services.ToolCallRecord] = {}
        self.usage: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.ttft_ms: int | None = None
        self.vendor_conversation_id = ""
        self.generated_titles: dict[str, str] | None = None
        self.started = time.monotonic()
        self._batch: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._buses: weakref.WeakKeyDictionary[Any, ProcessBus] = weakref.WeakKeyDictionary()
        # This process's sockets, by conversation id then channel name.
        self.viewers: dict[str, dict[str, Viewer]] = {}
        self._publish_lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    # State -----------------------------------------------------------------------------------

    @property
    def content(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def snapshot(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "content": self.content,
            "tool_calls": [self._tool_call_json(c) for c in self.tool_calls.values()],
            "status": self.status,
        }

    @staticmethod
    def _tool_call_json(call: services.ToolCallRecord) -> dict[str, Any]:
        return {"id": call.call_id, "name": call.name, "arguments": call.arguments,
                "result": call.result, "status": call.status}

    # Fan-out ---------------------------------------------------------------------------------

    async def emit(self, frame: dict[str, Any], *, urgent: bool = False) -> None:
        """Send to the owner socket now; queue for the other viewers (coalesced)."""
        if self.owner is not None:
            try:
                await self.owner(frame)
            except Exception:  # the socket went away; the run goes on without it
                self.detach_owner()
        if not self._watched_by_others():
            return  # nobody else to coalesce for: skip the batch work on the hot path
        self._queue(frame)
        if urgent:
            await self.publish()

    def _watched_by_others(self) -> bool:
        """Another socket of this process watches, or other processes might. A socket that
        starts watching registers before taking its snapshot, so it misses nothing skipped."""
        if self.relay.bus.cross_process:
            return True
        viewers = self.relay.viewers.get(self.conversation_id, {})
        return any(name != self.owner_channel for name in viewers)

    def detach_owner(self) -> None:
        self.owner = None
        self.owner_channel = None

    def _queue(self, frame: dict[str, Any]) -> None:
        last = self._batch[-1] if self._batch else None
        kind = frame["type"]
        if (
            last is not None
            and kind == last["type"] == "message.delta"
            and last["offset"] + len(last["delta"]) == frame["offset"]
        ):
            last["delta"] += frame["delta"]
        elif (
            last is not None
            and kind == last["type"] == "tool_call.delta"
            and last["tool_call_id"] == frame["tool_call_id"]
            and last["offset"] + len(last["delta"]) == frame["offset"]
        ):
            last["delta"] += frame["delta"]
        else:
            self._batch.append(dict(frame))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._publish_later())

    async def _publish_later(self) -> None:
        await asyncio.sleep(self.relay.fanout_window)
        await self.publish()

    async def publish(self) -> None:
        """Send the pending batch to every other viewer: sockets of this process directly,
        other processes through the process bus (one channel-layer message per process per
        window for all its replies, see ProcessBus)."""
        async with self._publish_lock:
            if not self._batch:
                return
            frames, self._batch = self._batch, []
            await self.relay.deliver_local(self.conversation_id, frames, skip=self.owner_channel)
            self.relay.bus.publish(self.conversation_id, frames)

    # The run ---------------------------------------------------------------------------------

    async def execute(self) -> None:
        self.relay.ensure_flusher()
        status, code, message = Message.Status.FAILED, ev.ErrorCode.VENDOR_TRUNCATED, ""
        try:
            provider = get_provider(self.request.agent.provider, self.relay.timeouts)
            terminal = None
            async with contextlib.aclosing(provider.run(self.request)) as stream:
                async for event in stream:
                    await self._handle(event)
                    if isinstance(event, ev.TERMINAL_EVENTS):
                        terminal = event
                        break
            if isinstance(terminal, ev.RunCompleted):
                status, code = Message.Status.COMPLETED, ""
            elif isinstance(terminal, ev.InterruptRequested):
                status, code = Message.Status.AWAITING_INPUT, ""
            elif isinstance(terminal, ev.RunFailed):
                code, message = terminal.code, terminal.message
            else:
                message = "The vendor's stream ended before the reply was complete."
        except asyncio.CancelledError:
            if self.cancel_requested:
                status, code = Message.Status.CANCELED, ""
            else:
                code = ev.ErrorCode.SERVER_RESTART
                message = "The server stopped while this reply was streaming."
        except LookupError as exc:
            code = ev.ErrorCode.AGENT_MISCONFIGURED
            message = f"This agent's provider is not available: {exc}."
        except Exception as exc:
            err = error_for_exception(exc, self.request.agent)
            if err.code == ev.ErrorCode.INTERNAL_ERROR:
                logger.exception("run %s failed", self.message_id)
            code, message = err.code, err.message
        self.status = status
        await self._finish(code, message)

    async def _handle(self, event: ev.ProviderEvent) -> None:
        mid = self.message_id
        if isinstance(event, ev.TextDelta):
            if not event.text:
                return
            if self.length + len(event.text) > self.relay.max_reply_chars:
                await self._over_cap(event.text)
            if self.ttft_ms is None:
                self.ttft_ms = int((time.monotonic() - self.started) * 1000)
            frame = {"type": "message.delta", "message_id": mid, "offset": self.length,
                     "delta": event.text}
            self._parts.append(event.text)
            self.length += len(event.text)
            await self.emit(frame)
        elif isinstance(event, ev.ReasoningDelta):
            self.extra["reasoning"] = self.extra.get("reasoning", "") + event.text
            await self.emit({"type": "reasoning.delta", "message_id": mid, "delta": event.text})
        elif isinstance(event, ev.ToolCallStarted):
            await self._start_tool_call(event.call_id, event.name)
        elif isinstance(event, ev.ToolCallDelta):
            call = self.tool_calls.get(event.call_id) or await self._start_tool_call(
                event.call_id, "")
            offset = len(call.arguments)
            call.arguments += event.delta
            await self.emit({"type": "tool_call.delta", "message_id": mid,
                             "tool_call_id": event.call_id, "offset": offset,
                             "delta": event.delta})
        elif isinstance(event, ev.ToolCallCompleted):
            call = self.tool_calls.get(event.call_id) or await self._start_tool_call(
                event.call_id, event.name)
            call.name = event.name or call.name
            call.arguments = event.arguments if event.arguments else call.arguments
            call.status = ToolCall.Status.COMPLETED
            call.completed_at = timezone.now()
            await self.emit({"type": "tool_call.completed", "message_id": mid,
                             "tool_call_id": call.call_id, "name": call.name,
                             "arguments": call.arguments})
        elif isinstance(event, ev.ToolCallResult):
            call = self.tool_calls.get(event.call_id) or await self._start_tool_call(
                event.call_id, "")
            call.result = event.result
            await self.emit({"type": "tool_call.result", "message_id": mid,
                             "tool_call_id": event.call_id, "result": event.result})
        elif isinstance(event, ev.Usage):
            self.usage = event.as_dict()
        elif isinstance(event, ev.VendorConversation):
            self.vendor_conversation_id = event.vendor_conversation_id
            await database_sync_to_async(services.set_vendor_conversation_id)(
                self.conversation_id, event.vendor_conversation_id)
        elif isinstance(event, ev.TitleGenerated):
            self.generated_titles = dict(event.titles)
        elif isinstance(event, ev.VendorExtra):
            self.extra.setdefault(event.key, []).append(event.value)
            await self.emit({"type": "message.data", "message_id": mid, "key": event.key,
                             "value": event.value})
        elif isinstance(event, ev.InterruptRequested):
            self.extra["pending_interrupt"] = {
                "id": event.interrupt_id, "reason": event.reason, "payload": event.payload,
                "vendor_data": event.vendor_data}
            await self.emit({"type": "interrupt.requested", "message_id": mid,
                             "interrupt_id": event.interrupt_id, "reason": event.reason,
                             "payload": event.payload}, urgent=True)

    async def _over_cap(self, text: str) -> None:
        """Keep the text up to MAX_REPLY_CHARS, then fail the run: a vendor streaming without
        end must not fill the database (6,000,000 characters were stored before the cap)."""
        room = self.relay.max_reply_chars - self.length
        if room > 0:
            await self._handle(ev.TextDelta(text[:room]))
        raise VendorError(
            ev.ErrorCode.VENDOR_TOO_LARGE,
            f"The reply passed the limit of {self.relay.max_reply_chars:,} characters; "
            "the text up to it is kept.",
        )

    async def _start_tool_call(self, call_id: str, name: str) -> services.ToolCallRecord:
        call = self.tool_calls.get(call_id)
        if call is not None:  # some vendors announce a call twice; one card per call id
            call.name = name or call.name
            return call
        call = services.ToolCallRecord(call_id=call_id, name=name, created_at=timezone.now())
        self.tool_calls[call_id] = call
        await self.emit({"type": "tool_call.started", "message_id": self.message_id,
                         "tool_call_id": call_id, "name": name})
        return call

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.cancel_requested = True
            self.task.cancel()

    async def _finish(self, code: str, message: str) -> None:
        for call in self.tool_calls.values():
            if call.status == ToolCall.Status.STARTED and self.status != Message.Status.COMPLETED:
                call.status = ToolCall.Status.FAILED
        outcome = services.RunOutcome(
            status=self.status,
            content=self.content,
            error_code=code if self.status == Message.Status.FAILED else "",
            error_message=message if self.status == Message.Status.FAILED else "",
            usage=self.usage,
            tool_calls=list(self.tool_calls.values()),
            extra=self.extra,
            ttft_ms=self.ttft_ms,
            vendor_conversation_id=self.vendor_conversation_id,
            generated_titles=self.generated_titles,
        )
        try:
            saved = await database_sync_to_async(self._save)(outcome)
        except Exception:
            logger.exception("could not save the end of run %s", self.message_id)
            return
        message_data, conversation_data = saved
        await self.emit(message_frame(TERMINAL_FRAME[self.status], message_data), urgent=True)
        if conversation_data is not None:
            await self.emit({"type": "conversation.updated", "conversation": conversation_data},
                            urgent=True)

    def _save(self, outcome: services.RunOutcome) -> tuple[dict[str, Any], dict[str, Any] | None]:
        completed_at = services.finish_run(self.message_id, self.conversation_id, outcome)
        # The final JSON comes from what the run holds, not from reading the rows back.
        message = Message(
            id=self.placeholder.id, conversation_id=self.conversation_id,
            seq=self.placeholder.seq, role=Message.Role.ASSISTANT, content=outcome.content,
            status=outcome.status, error_code=outcome.error_code,
            error_message=outcome.error_message, usage=outcome.usage, extra=outcome.extra,
            created_at=self.placeholder.created_at, completed_at=completed_at,
            ttft_ms=outcome.ttft_ms,
        )
        conversation = None
        if outcome.generated_titles:
            self.conversation.generated_titles = outcome.generated_titles
            conversation = conversation_json(self.conversation)
        return message_json(message, outcome.tool_call_rows(self.message_id, completed_at)), \
            conversation


class ProcessBus:
    """Carries fan-out batches between server processes: ONE channel-layer message per process
    per BUS_WINDOW holding every batch of every reply it runs, to ONE group all processes join.

    Publishing one message per reply per 50 ms window (4,000 messages/s for 200 replies) swamped
    channels_redis' pub/sub, which publishes one message per round trip and reads one per event
    loop turn: second viewers fell 10 s behind (`make bench`, scenario B). This way Redis carries
    ~40 messages/s per process whatever the number of replies, and the receiving process hands
    each batch to its local sockets of that conversation directly. With the in-memory layer there
    is only one process, so nothing is published at all.
    """

    GROUP = "chatsite.relay.bus"

    def __init__(self, relay: Relay, layer: Any) -> None:
        self.relay = relay
        self.layer = layer
        self.origin = uuid.uuid4().hex
        self.cross_process = not isinstance(layer, InMemoryChannelLayer)
        self.outbox: list[tuple[str, list[dict[str, Any]]]] = []
        self.wakeup = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None
        self.listener: asyncio.Task[None] | None = None

    def publish(self, conversation_id: str, frames: list[dict[str, Any]]) -> None:
        if not self.cross_process:
            return
        self.outbox.append((conversation_id, frames))
        self.wakeup.set()
        if self.sender is None or self.sender.done():
            self.sender = asyncio.get_running_loop().create_task(self._send_forever())

    async def _send_forever(self) -> None:
        while True:
            await self.wakeup.wait()
            # Let the window fill: every reply's batch of the next BUS_WINDOW rides along.
            await asyncio.sleep(BUS_WINDOW)
            self.wakeup.clear()
            batches, self.outbox = self.outbox, []
            if not batches:
                continue
            try:
                await self.layer.group_send(
                    self.GROUP, {"type": "relay.bus", "origin": self.origin, "batches": batches}
                )
            except Exception:
                # A layer outage must not kill the runs: owners still stream, the text is
                # persisted, and other viewers resync from conversation.sync on reconnect.
                logger.warning("fan-out of %d batches failed", len(batches), exc_info=True)

    def ensure_listening(self) -> None:
        if not self.cross_process:
            return
        if self.listener is None or self.listener.done():
            self.listener = asyncio.get_running_loop().create_task(self._listen_forever())

    async def _listen_forever(self) -> None:
        backoff = CONTROL_RETRY_MIN
        channel = ""
        while True:
            try:
                if not channel:
                    channel = await self.layer.new_channel("bus.")
                    await self.layer.group_add(self.GROUP, channel)
                msg = await self.layer.receive(channel)
                backoff = CONTROL_RETRY_MIN
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("relay bus: channel layer error; retrying", exc_info=True)
                channel = ""
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, CONTROL_RETRY_MAX)
                continue
            if msg.get("origin") == self.origin:
                continue  # our own batches and requests: handled locally already
            if msg.get("type") == "relay.control":
                await self._control(msg)
                continue
            for conversation_id, frames in msg.get("batches", ()):
                await self.relay.deliver_local(conversation_id, frames)

    async def _control(self, msg: dict[str, Any]) -> None:
        """A socket in another process asks the process running a reply to stop it or to
        share its live text. Every process hears it; only the one running the reply acts."""
        run = self.relay.local_run(str(msg.get("conversation_id")))
        if run is None:
            return
        if msg.get("action") == "cancel":
            run.cancel()
        elif msg.get("action") == "snapshot" and isinstance(msg.get("reply_to"), str):
            with contextlib.suppress(Exception):
                await self.layer.send(msg["reply_to"],
                                      {"type": "run.snapshot", "snapshot": run.snapshot()})

    async def request(self, action: str, conversation_id: str, **fields: Any) -> None:
        """Send a control request to every other process (cancel, snapshot)."""
        await self.layer.group_send(self.GROUP, {
            "type": "relay.control", "origin": self.origin, "action": action,
            "conversation_id": conversation_id, **fields,
        })


class Relay:
    """Per-process registry of the runs this process is executing."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._buses: weakref.WeakKeyDictionary[Any, ProcessBus] = weakref.WeakKeyDictionary()
        # This process's sockets, by conversation id then channel name.
        self.viewers: dict[str, dict[str, Viewer]] = {}

    @property
    def layer(self) -> Any:
        return get_channel_layer()

    @property
    def bus(self) -> ProcessBus:
        """One per event loop and layer (tests run several loops in one process)."""
        layer = self.layer
        loop = asyncio.get_running_loop()
        current = self._buses.get(loop)
        if current is None or current.layer is not layer:
            current = self._buses[loop] = ProcessBus(self, layer)
        return current

    def add_viewer(self, conversation_id: str, viewer: Viewer) -> None:
        self.viewers.setdefault(conversation_id, {})[viewer.channel_name] = viewer
        self.bus.ensure_listening()

    def remove_viewer(self, conversation_id: str, viewer: Viewer) -> None:
        viewers = self.viewers.get(conversation_id)
        if viewers is not None:
            viewers.pop(viewer.channel_name, None)
            if not viewers:
                del self.viewers[conversation_id]

    async def deliver_local(self, conversation_id: str, frames: list[dict[str, Any]],
                            skip: str | None = None) -> None:
        """Hand a batch to this process's sockets of the conversation (not through the layer:
        a channel-layer message per socket cost ~150 µs each, performance.md)."""
        for channel_name, viewer in list(self.viewers.get(conversation_id, {}).items()):
            if channel_name == skip:
                continue
            try:
                await viewer.deliver(frames)
            except Exception:
                # A socket closing under us must not fail the reply or starve the others; it
                # unregisters itself in disconnect().
                logger.debug("delivery to %s failed", channel_name, exc_info=True)

    @property
    def fanout_window(self) -> float:
        return settings.RELAY_FANOUT_WINDOW

    @property
    def max_reply_chars(self) -> int:
        return settings.MAX_REPLY_CHARS

    @property
    def flush_interval(self) -> float:
        return settings.RELAY_FLUSH_INTERVAL

    @property
    def timeouts(self) -> Any:
        from conversations.providers.base import Timeouts

        return Timeouts(connect=settings.VENDOR_CONNECT_TIMEOUT, read=settings.VENDOR_READ_TIMEOUT)

    async def start(self, accepted: services.AcceptedMessage, owner: Sink | None = None,
                    owner_channel: str | None = None) -> Run:
        """Announce the user's message and the placeholder, then run the reply as a task."""
        run = Run(self, accepted, owner, owner_channel)
        self.runs[run.conversation_id] = run
        self.bus.ensure_listening()  # cancel / snapshot requests from other processes
        await run.emit(message_frame("message.created", message_json(accepted.user_message, [])))
        await run.emit(
            message_frame("message.created", message_json(accepted.assistant_message, [])),
            urgent=True,
        )
        if accepted.metadata_changed:
            await run.emit({"type": "conversation.updated",
                            "conversation": conversation_json(accepted.conversation)},
                           urgent=True)
        run.task = asyncio.create_task(self._execute(run), name=f"run-{run.message_id}")
        return run

    async def _execute(self, run: Run) -> None:
        try:
            await run.execute()
        finally:
            if self.runs.get(run.conversation_id) is run:
                del self.runs[run.conversation_id]

    def local_run(self, conversation_id: UUID | str) -> Run | None:
        return self.runs.get(str(conversation_id))

    async def remote_snapshot(self, conversation_id: UUID | str) -> dict[str, Any] | None:
        """The live text of a reply running in another process, or None if nobody answers."""
        layer = self.layer
        if not self.bus.cross_process:
            return None  # one process: a reply not running here is not running anywhere
        try:
            reply_to = await layer.new_channel("snapshot.")
            await self.bus.request("snapshot", str(conversation_id), reply_to=reply_to)
            msg = await asyncio.wait_for(layer.receive(reply_to), SNAPSHOT_TIMEOUT)
        except TimeoutError:
            return None
        except Exception:
            logger.warning("snapshot request for %s failed", conversation_id, exc_info=True)
            return None
        snapshot = msg.get("snapshot")
        return snapshot if isinstance(snapshot, dict) else None

    def ensure_flusher(self) -> None:
        """One flush task per process for all its runs (started with the first run)."""
        loop = asyncio.get_running_loop()
        if self._flusher is None or self._flusher.done() or self._flusher.get_loop() is not loop:
            self._flusher = loop.create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        """Every FLUSH_INTERVAL, write every live run's text and heartbeat in ONE statement and
        one hop to the database thread: per-run flush tasks cost 100 statements and thread hops
        a second at 100 streams and queued new messages behind them (`make bench`)."""
        flush = database_sync_to_async(services.flush_runs)
        while self.runs:
            await asyncio.sleep(self.flush_interval)
            items = [(run.message_id, run.content) for run in list(self.runs.values())
                     if run.status == Message.Status.STREAMING]
            if not items:
                continue
            try:
                await flush(items)
            except Exception:
                logger.warning("flush of %d replies failed; will retry", len(items),
                               exc_info=True)

    def ensure_reaper(self) -> None:
        """Start this process's reaper once (lazily: there is no ASGI lifespan in Daphne)."""
        if settings.RELAY_REAP_INTERVAL <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._reaper is None or self._reaper.done() or self._reaper.get_loop() is not loop:
            self._reaper = loop.create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        reap = database_sync_to_async(services.reap_orphaned_runs)
        while True:
            await asyncio.sleep(settings.RELAY_REAP_INTERVAL)
            try:
                reaped = await reap()
                for message in reaped:
                    await self.layer.group_send(
                        conversation_group(message["conversation_id"]),
                        {"type": "relay.frames", "skip": None,
                         "frames": [message_frame("message.failed", message["message"])]},
                    )
            except Exception:
                logger.warning("reaper pass failed; will retry", exc_info=True)

    async def cancel(self, conversation_id: UUID | str) -> None:
        """Stop the conversation's run wherever it runs (this process or another)."""
        run = self.local_run(conversation_id)
        if run is not None:
            run.cancel()
            return
        await self.bus.request("cancel", str(conversation_id))

    def detach(self, conversation_id: UUID | str, channel_name: str) -> None:
        run = self.local_run(conversation_id)
        if run is not None and run.owner_channel == channel_name:
            run.detach_owner()


relay = Relay()


async def notify_deleted(conversation_id: UUID | str) -> None:
    """Stop the conversation's reply and close its sockets (4404) in every process."""
    layer = get_channel_layer()
    try:
        await relay.cancel(conversation_id)
        await layer.group_send(conversation_group(conversation_id),
                               {"type": "conversation.deleted"})
    except Exception:  # the local delete already happened; open sockets resync or 404
        logger.warning("could not notify sockets of deleted %s", conversation_id, exc_info=True)
