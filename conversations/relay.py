"""The relay: owns each run's lifecycle, persistence and fan-out.

Data flows one way: vendor bytes -> provider -> normalized events -> this module -> sockets and
the database. Design numbers (docs/performance.md, measured with `make bench`):

- One channel-layer message per vendor delta is 7-35x slower than a direct send and collapses at
  ~20 streams on Redis. So deltas go *straight* to the socket that started the run, and every
  other viewer (second tab, other process) gets coalesced batches through the channel layer,
  one message per RELAY_FANOUT_WINDOW (~50 ms: a 50 ms window cut publish counts ~25x in peers).
- No database write per delta: the text is flushed on a timer (FLUSH_INTERVAL, ~1 s; it doubles
  as the heartbeat that lets survivors reap a dead process's runs) and once at the end, so the
  queries per reply do not grow with the number of deltas.
- A run is its own task, never awaited inside a consumer's receive handler, so "stop" frames are
  handled during a stream; it keeps running when the socket that started it goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Protocol
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone, translation

from chatsite import logs, tracing
from chatsite import metrics as m
from conversations import events as ev
from conversations import frames as shapes
from conversations import layer as layer_calls
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

    async def close_for_restart(self) -> None: ...

    async def resync(self) -> None: ...

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
# Batches kept for other processes while the layer is down: 10,000 is ~16 s of 30 replies
# (20 batches/s each), a few MB at most; past that the oldest go and those viewers resync.
BUS_BACKLOG = 10_000
# Reaper notices (one per reaped reply) kept while the layer is down: 1,000 covers a dead
# process's every reply at RATE_LIMIT_RUNS_PER_USER 10 for 100 users.
REAP_NOTICE_BACKLOG = 1000

# The final save is retried on a fresh connection (a PostgreSQL backend terminated under the
# relay failed 3 of 5 final saves): ~31 s of backoff in all, longer than RELAY_ORPHAN_AFTER, so
# a database outage ends either with the reply saved or with the reaper of another process
# telling the viewers what is stored.
FINISH_RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
# An owner that has not proved its lease for this share of RELAY_ORPHAN_AFTER (a SIGSTOP, a
# long GC pause, a flush stuck on a row lock) checks it before sending anything more: the
# reaper of another process may have ended the reply meanwhile. 0.6 of 15 s leaves 6 s of
# margin for the check itself.
LEASE_CHECK_SHARE = 0.6


# Stopping: final saves get this long before sockets are closed anyway (a database outage at
# shutdown must not hold the stop for the whole retry schedule); 1012 is the websocket close
# code for "service restart": the chat reconnects at once, to another process.
SHUTDOWN_SAVE_TIMEOUT = 5.0
CLOSE_SERVICE_RESTART = 1012
# A client answers a close frame within a round trip; 2 s covers a slow one.
CLOSE_HANDSHAKE_TIMEOUT = 2.0


# How long a process remembers replies it was fenced out of: past any batch still queued.
FENCED_MEMORY = 60.0


def _reply_id(frame: dict[str, Any]) -> str | None:
    message = frame.get("message")
    return message.get("id") if isinstance(message, dict) else frame.get("message_id")


class Fenced(Exception):
    """The reply was ended elsewhere (reaped, canceled as orphaned): its old owner stops."""


# The relay's own database threads (PostgreSQL): Channels runs every database_sync_to_async
# call of a process on ONE thread, so a relay write stuck on a row lock (20 s in the fault
# tests) held every handshake and send of the process behind it. 4 threads: a flush, final
# saves and lease checks proceed side by side; each keeps its own connection. SQLite has one
# writer anyway, and its shared-cache test databases lock across threads, so there the relay
# stays on Channels' thread.
_RELAY_DB_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="relay-db")


def relay_db(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    if connection.vendor != "postgresql":
        return database_sync_to_async(func)

    async def call(*args: Any, **kwargs: Any) -> Any:
        # run_in_executor, not asgiref: asgiref runs the call in a copy of the caller's context,
        # where Django keeps the connection, so it was neither reused nor closed per thread.
        return await asyncio.get_running_loop().run_in_executor(
            _RELAY_DB_THREADS,
            functools.partial(_in_relay_thread_reconnecting, func, *args, **kwargs))

    return call


# A reply's start (session check, send limits, the user's message and the placeholder committed)
# has threads of its own: on Channels' one database thread it queued behind every socket's other
# work, and each of its ~8 round trips waits there for the GIL behind a busy event loop (up to
# the 5 ms switch interval each), so at 200 replies on two processes message.send -> first delta
# reached a p50 of 1 s (docs/performance.md). Starts never wait behind a flush or a final save
# either (those have the relay's own threads).
class StartExecutor(Executor):
    """One thread while starts come one or two at a time, up to `overflow` more under load.

    Two starts side by side on a light load only interleave on the GIL and both finish later:
    `make bench` S (5 conversations) added 10 ms p50 to the time to first token with one thread
    and 18-24 ms with four. Under load their round trips overlap usefully: B (200
    conversations, two processes) had placeholder p99 918 ms with four threads, 1,456 with one.
    So a start goes to the one thread unless `serial` starts are already there (running or
    queued), then to the overflow threads."""

    def __init__(self, serial: int = 2, overflow: int = 3) -> None:
        self._serial = serial
        self._primary = ThreadPoolExecutor(max_workers=1, thread_name_prefix="start-db")
        self._overflow = ThreadPoolExecutor(max_workers=overflow,
                                            thread_name_prefix="start-db-overflow")
        self._lock = threading.Lock()
        self._on_primary = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            primary = self._on_primary < self._serial
            if primary:
                self._on_primary += 1
        if not primary:
            return self._overflow.submit(fn, *args, **kwargs)
        future = self._primary.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Any]) -> None:
        with self._lock:
            self._on_primary -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._primary.shutdown(wait, cancel_futures=cancel_futures)
        self._overflow.shutdown(wait, cancel_futures=cancel_futures)


_START_DB_THREADS = StartExecutor()


def start_db(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """`func` on the reply-start threads (PostgreSQL; Channels' thread on SQLite, as relay_db),
    in the caller's language: its error messages reach the user as they are."""
    if connection.vendor != "postgresql":
        return database_sync_to_async(func)

    async def call(*args: Any, **kwargs: Any) -> Any:
        language = translation.get_language()
        return await asyncio.get_running_loop().run_in_executor(
            _START_DB_THREADS,
            functools.partial(_in_language, language, _in_relay_thread, func, *args, **kwargs))

    return call


def _in_language(language: str | None, func: Callable[..., Any], *args: Any,
                 **kwargs: Any) -> Any:
    # run_in_executor carries no context, and Django keeps the active language in one.
    with translation.override(language):
        return func(*args, **kwargs)


def _in_relay_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # As Channels does around each call: drop a connection that failed or outlived
    # CONN_MAX_AGE, so a retry gets a fresh one.
    close_old_connections()
    try:
        return func(*args, **kwargs)
    finally:
        close_old_connections()


def _in_relay_thread_reconnecting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """_in_relay_thread, once more at once on a new connection when the call failed because
    its connection had been dropped (PostgreSQL restarted, an idle connection killed by a proxy
    or pg_terminate_backend). Health checks are off (settings: one `SELECT 1` per call), so a
    connection dropped while idle is found by the next call; with flushes 0.3 s apart and
    connections killed every 0.15 s, every flush met a dead one and the heartbeat went stale
    (tests/test_faults.py). Only the relay's own writes use it: each is safe to run twice."""
    try:
        return _in_relay_thread(func, *args, **kwargs)
    except (OperationalError, InterfaceError) as exc:
        if not _connection_dropped(exc):
            raise  # a lock timeout, a deadlock, ...: the caller's own handling
        return _in_relay_thread(func, *args, **kwargs)


def _connection_dropped(exc: Exception) -> bool:
    """The error is the connection's, not the statement's: SQLSTATE class 08 (connection
    exception) or 57P (the server shut the session down: pg_terminate_backend, a restart), or
    no SQLSTATE at all (the socket closed under the driver)."""
    state = getattr(exc.__cause__, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))


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
        self.ttft_seconds: float | None = None
        self.deltas = 0  # text deltas sent, counted once into the metrics when the run ends
        self.error_code = ""  # the end's, for the reply's span
        self.trace_id = ""  # the reply span's (chatsite/tracing.py), "" when tracing is off
        self.batch_started = 0.0  # when the pending fan-out batch got its first frame
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
        # When the lease was last proved (the placeholder's heartbeat, then each flush that
        # found the row still ours), on the monotonic clock, which keeps counting through a
        # SIGSTOP. `fenced`: the reply was ended elsewhere; nothing more is written or sent.
        self.lease_proved_at = time.monotonic()
        self.fenced = False
        self.shutting_down = False

    # State -----------------------------------------------------------------------------------

    @property
    def content(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def snapshot(self) -> shapes.ActiveRun:
        return shapes.active_run(self.message_id, self.content, self.tool_calls.values(),
                                 self.status)

    # Fan-out ---------------------------------------------------------------------------------

    async def emit(self, frame: dict[str, Any], *, urgent: bool = False) -> None:
        """Send to the owner socket now; queue for the other viewers (coalesced)."""
        if self.fenced:
            return
        if self.lease_overdue():
            await self.prove_lease()
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
            if not self._batch:
                self.batch_started = time.monotonic()
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
            if self.lease_overdue():
                with contextlib.suppress(Fenced):
                    await self.prove_lease()
            if self.fenced:
                self._batch = []
                return
            frames, self._batch = self._batch, []
            m.FANOUT_BATCHES.inc()
            m.FANOUT_LAG.observe(time.monotonic() - self.batch_started)
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
        except Fenced:
            return
        except asyncio.CancelledError:
            if self.fenced:
                return  # ended elsewhere: nothing more from here
            if self.cancel_requested:
                status, code = Message.Status.CANCELED, ""
            else:
                # Cancelled from outside (the process stopping, an event loop closing): one
                # bounded try to save, never the whole retry schedule, so whoever cancelled is
                # not kept waiting (a loop's teardown waits for every task it cancels).
                code = ev.ErrorCode.SERVER_RESTART
                message = ("The server restarted while this reply was streaming; the text "
                           "received before is kept.")
                self.status = status
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finish(code, message), SHUTDOWN_SAVE_TIMEOUT)
                return
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

    # Events -> frames ------------------------------------------------------------------------
    # One handler per event type, found by `type(event)` in HANDLERS (after the class): one dict
    # lookup per event instead of a chain of isinstance checks. Events with no frame of their
    # own (Usage, TitleGenerated...) only update the run; RunCompleted / RunFailed have no
    # handler: `execute` ends the run on them.

    def _handle(self, event: ev.ProviderEvent) -> Awaitable[None]:
        # Not a coroutine itself: it returns the handler's, so an event costs one coroutine
        # object as before the table, not two (measured: +165 ns per delta when awaited in a
        # wrapper coroutine, on a ~540 ns path).
        return HANDLERS.get(type(event), Run._on_nothing)(self, event)

    async def _on_nothing(self, event: ev.ProviderEvent) -> None:
        pass

    async def _on_text(self, event: ev.TextDelta) -> None:
        if not event.text:
            return
        if self.length + len(event.text) > self.relay.max_reply_chars:
            await self._over_cap(event.text)
        if self.ttft_ms is None:
            self.ttft_seconds = time.monotonic() - self.started
            self.ttft_ms = int(self.ttft_seconds * 1000)
        frame = shapes.message_delta(self.message_id, self.length, event.text)
        self._parts.append(event.text)
        self.length += len(event.text)
        self.deltas += 1
        await self.emit(frame)

    async def _on_reasoning(self, event: ev.ReasoningDelta) -> None:
        self.extra["reasoning"] = self.extra.get("reasoning", "") + event.text
        await self.emit(shapes.reasoning_delta(self.message_id, event.text))

    async def _on_tool_call_started(self, event: ev.ToolCallStarted) -> None:
        await self._start_tool_call(event.call_id, event.name)

    async def _on_tool_call_delta(self, event: ev.ToolCallDelta) -> None:
        call = self.tool_calls.get(event.call_id) or await self._start_tool_call(
            event.call_id, "")
        offset = len(call.arguments)
        call.arguments += event.delta
        await self.emit(shapes.tool_call_delta(self.message_id, event.call_id, offset,
                                               event.delta))

    async def _on_tool_call_completed(self, event: ev.ToolCallCompleted) -> None:
        call = self.tool_calls.get(event.call_id) or await self._start_tool_call(
            event.call_id, event.name)
        call.name = event.name or call.name
        call.arguments = event.arguments if event.arguments else call.arguments
        call.status = ToolCall.Status.COMPLETED
        call.completed_at = timezone.now()
        await self.emit(shapes.tool_call_completed(self.message_id, call.call_id, call.name,
                                                   call.arguments))

    async def _on_tool_call_result(self, event: ev.ToolCallResult) -> None:
        call = self.tool_calls.get(event.call_id) or await self._start_tool_call(
            event.call_id, "")
        call.result = event.result
        await self.emit(shapes.tool_call_result(self.message_id, event.call_id, event.result))

    async def _on_usage(self, event: ev.Usage) -> None:
        self.usage = event.as_dict()

    async def _on_vendor_conversation(self, event: ev.VendorConversation) -> None:
        self.vendor_conversation_id = event.vendor_conversation_id
        await relay_db(services.set_vendor_conversation_id)(
            self.conversation_id, event.vendor_conversation_id)

    async def _on_title(self, event: ev.TitleGenerated) -> None:
        self.generated_titles = dict(event.titles)

    async def _on_vendor_extra(self, event: ev.VendorExtra) -> None:
        self.extra.setdefault(event.key, []).append(event.value)
        await self.emit(shapes.message_data(self.message_id, event.key, event.value))

    async def _on_interrupt(self, event: ev.InterruptRequested) -> None:
        self.extra["pending_interrupt"] = {
            "id": event.interrupt_id, "reason": event.reason, "payload": event.payload,
            "vendor_data": event.vendor_data}
        await self.emit(shapes.interrupt_requested(self.message_id, event.interrupt_id,
                                                   event.reason, event.payload), urgent=True)

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
        await self.emit(shapes.tool_call_started(self.message_id, call_id, name))
        return call

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.cancel_requested = True
            self.task.cancel()

    def lease_overdue(self) -> bool:
        return time.monotonic() - self.lease_proved_at > self.relay.lease_check_after

    async def prove_lease(self) -> None:
        """Flush this reply now; `Fenced` (and the run stops) if it is no longer ours."""
        started = time.monotonic()
        try:
            fenced = await relay_db(services.flush_runs)([(self.message_id, self.content)])
        except Exception:
            # The database cannot say: go on (the reaper cannot reach it either, most likely)
            # and ask again in a second rather than on every delta.
            logger.warning("could not check the lease of %s", self.message_id, exc_info=True)
            self.lease_proved_at = started - self.relay.lease_check_after + 1.0
            return
        if fenced and self.status == Message.Status.STREAMING:
            self.fence()
            raise Fenced(self.message_id)
        self.lease_proved_at = started

    def fence(self) -> None:
        """Ended elsewhere: stop the vendor stream, write and send nothing more."""
        if self.fenced:
            return
        self.fenced = True
        self.relay.fenced_replies[self.message_id] = time.monotonic()
        logger.warning("reply %s was ended by another process; stopping it here",
                       self.message_id)
        if self.task is not None and not self.task.done() and self.task is not (
                asyncio.current_task()):
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
            trace_id=self.trace_id,
        )
        self.error_code = outcome.error_code
        saved = await self._save_with_retries(outcome)
        if saved is None:
            return
        message_data, conversation_data = saved
        self.record_metrics(outcome)
        await self.emit(shapes.terminal_frame(self.status, message_data), urgent=True)
        if conversation_data is not None:
            await self.emit(shapes.conversation_updated(conversation_data), urgent=True)

    def record_metrics(self, outcome: services.RunOutcome) -> None:
        """The reply's figures, once, when its end is saved (docs/observability.md)."""
        agent = self.request.agent.slug
        code = outcome.error_code
        duration = time.monotonic() - self.started
        m.REPLIES.labels(agent, outcome.status,
                         code if not code or code in KNOWN_ERROR_CODES else "other").inc()
        m.DURATION.labels(agent).observe(duration)
        if self.ttft_seconds is not None:
            m.TTFT.labels(agent).observe(self.ttft_seconds)
        if self.deltas:
            m.DELTAS.labels(agent).inc(self.deltas)
        # One line per reply (its ids come from the run's log context, chatsite/logs.py).
        logger.info("reply ended: agent %s, %s%s, %d deltas in %.2f s", agent, outcome.status,
                    f" ({code})" if code else "", self.deltas, duration)

    async def _save_with_retries(
        self, outcome: services.RunOutcome
    ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """The final write, retried with backoff on a fresh connection (Django replaces a
        connection that failed before the next call). None when the reply was fenced, or when
        the database stayed out for every retry: then no final frame is sent from here, and the
        reaper of a live process ends the reply as stored and tells the viewers, so what the
        client is finally shown is what is stored."""
        save = relay_db(self._save)
        for attempt, delay in enumerate((*FINISH_RETRY_DELAYS, None)):
            try:
                saved = await save(outcome)
            except Exception:
                if delay is None:
                    logger.error("could not save the end of run %s after %d tries",
                                 self.message_id, attempt + 1, exc_info=True)
                    return None
                logger.warning("saving the end of run %s failed; retrying in %gs",
                               self.message_id, delay, exc_info=attempt == 0)
                await asyncio.sleep(delay)
                continue
            if saved is None:
                self.fence()
                return None
            self.lease_proved_at = time.monotonic()
            return saved
        return None

    def _save(
        self, outcome: services.RunOutcome
    ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        completed_at = services.finish_run(self.message_id, self.conversation_id, outcome)
        if completed_at is None:
            return None
        # The final JSON comes from what the run holds, not from reading the rows back.
        message = Message(
            # The conversation object, not its id: the reply's cost reads its agent's prices
            # (frames.message_json) with no query in async code.
            id=self.placeholder.id, conversation=self.conversation,
            seq=self.placeholder.seq, role=Message.Role.ASSISTANT, content=outcome.content,
            status=outcome.status, error_code=outcome.error_code,
            error_message=outcome.error_message, usage=outcome.usage, extra=outcome.extra,
            created_at=self.placeholder.created_at, completed_at=completed_at,
            ttft_ms=outcome.ttft_ms, trace_id=outcome.trace_id,
        )
        conversation = None
        if outcome.generated_titles:
            self.conversation.generated_titles = outcome.generated_titles
            conversation = conversation_json(self.conversation)
        return message_json(message, outcome.tool_call_rows(self.message_id, completed_at)), \
            conversation


# The error codes a reply's metrics are labelled with; any other (none today) counts as
# "other", so a label's values stay bounded.
KNOWN_ERROR_CODES = frozenset(
    v for k, v in vars(ev.ErrorCode).items() if k.isupper() and isinstance(v, str))


# Event type -> Run handler (see Run._handle). A new event with a frame: its builder in
# frames.py, a handler method above, a row here.
HANDLERS: dict[type, Callable[[Run, Any], Awaitable[None]]] = {
    ev.TextDelta: Run._on_text,
    ev.ReasoningDelta: Run._on_reasoning,
    ev.ToolCallStarted: Run._on_tool_call_started,
    ev.ToolCallDelta: Run._on_tool_call_delta,
    ev.ToolCallCompleted: Run._on_tool_call_completed,
    ev.ToolCallResult: Run._on_tool_call_result,
    ev.Usage: Run._on_usage,
    ev.VendorConversation: Run._on_vendor_conversation,
    ev.TitleGenerated: Run._on_title,
    ev.VendorExtra: Run._on_vendor_extra,
    ev.InterruptRequested: Run._on_interrupt,
}


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
        backoff = 0.0  # while the layer is down
        while True:
            await self.wakeup.wait()
            # Let the window fill: every reply's batch of the next BUS_WINDOW rides along.
            await asyncio.sleep(max(BUS_WINDOW, backoff))
            self.wakeup.clear()
            batches, self.outbox = self.outbox, []
            batches, held = self.relay.sendable(batches)
            if held:  # replies whose lease is in doubt: sent once proved, dropped if fenced
                self.outbox = held + self.outbox
                self.wakeup.set()
            if not batches:
                continue
            try:
                await layer_calls.group_send(
                    self.GROUP, {"type": "relay.bus", "origin": self.origin, "batches": batches},
                    self.layer,
                )
            except layer_calls.LayerUnavailable:
                # Logged (throttled) by layer_calls. A layer outage must not kill the runs:
                # owners still stream and the text is persisted. The batches wait, in order,
                # for the layer (the oldest dropped past BUS_BACKLOG: those viewers see a gap
                # and resync), and the sender backs off instead of failing every 25 ms.
                self.outbox = (batches + self.outbox)[-BUS_BACKLOG:]
                self.wakeup.set()
                backoff = min(max(2 * backoff, CONTROL_RETRY_MIN), CONTROL_RETRY_MAX)
                continue
            backoff = 0.0

    def ensure_listening(self) -> None:
        if not self.cross_process:
            return
        if self.listener is None or self.listener.done():
            self.listener = asyncio.get_running_loop().create_task(self._listen_forever())

    async def _listen_forever(self) -> None:
        backoff = CONTROL_RETRY_MIN
        channel = ""
        joined = False
        while True:
            try:
                if not channel:
                    # Made even while Redis is down (no leaked channel per retry); the group's
                    # subscription is what carries the bus to it.
                    channel, _ = await layer_calls.ensure_channel(self.layer, "bus.")
                if not joined:
                    await layer_calls.group_add(self.GROUP, channel, self.layer)
                    joined = True
                msg = await self.layer.receive(channel)
                layer_calls.layer_log.success()
                backoff = CONTROL_RETRY_MIN
            except Exception as exc:  # CancelledError is not an Exception: it ends the task
                if not isinstance(exc, layer_calls.LayerUnavailable):  # else logged already
                    layer_calls.layer_log.failure("receive", exc)
                    joined = False  # the core layer's group lives in Redis: join again
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
            with contextlib.suppress(layer_calls.LayerUnavailable):  # logged by layer_calls
                await layer_calls.send(msg["reply_to"],
                                       {"type": "run.snapshot", "snapshot": run.snapshot()},
                                       self.layer)

    async def request(self, action: str, conversation_id: str, **fields: Any) -> None:
        """Send a control request to every other process (cancel, snapshot). Retried once on a
        fresh connection (the first publish after a Redis restart fails); raises
        layer_calls.LayerUnavailable if the layer is down."""
        await layer_calls.group_send(self.GROUP, {
            "type": "relay.control", "origin": self.origin, "action": action,
            "conversation_id": conversation_id, **fields,
        }, self.layer)


class Relay:
    """Per-process registry of the runs this process is executing."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._buses: weakref.WeakKeyDictionary[Any, ProcessBus] = weakref.WeakKeyDictionary()
        # This process's sockets, by conversation id then channel name.
        self.viewers: dict[str, dict[str, Viewer]] = {}
        # Replies this process was fenced out of (message id -> when), so batches of theirs
        # still queued for other processes are dropped; forgotten after FENCED_MEMORY s.
        self.fenced_replies: dict[str, float] = {}
        # Short-lived tasks kept referenced until done (asyncio keeps only weak references).
        self._background: set[asyncio.Task[None]] = set()
        # Set on SIGTERM (chatsite/shutdown.py): no new sockets, runs end, sockets get 1012.
        self.draining = False

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

    def sendable(self, batches: list[tuple[str, list[dict[str, Any]]]]
                 ) -> tuple[list[tuple[str, list[dict[str, Any]]]],
                            list[tuple[str, list[dict[str, Any]]]]]:
        """Split bus batches into those to send now and those to hold: a reply whose owner has
        not proved its lease lately (this process was stalled) is held until it does, and the
        frames of a reply this process was fenced out of are dropped."""
        now = time.monotonic()
        for message_id, at in list(self.fenced_replies.items()):
            if now - at > FENCED_MEMORY:
                del self.fenced_replies[message_id]
        send, held = [], []
        for conversation_id, frames in batches:
            run = self.local_run(conversation_id)
            if run is not None and not run.fenced and run.lease_overdue():
                held.append((conversation_id, frames))
                continue
            if self.fenced_replies:
                frames = [f for f in frames if _reply_id(f) not in self.fenced_replies]
            if frames:
                send.append((conversation_id, frames))
        return send, held

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
        a channel-layer message per socket cost ~150 µs each, docs/performance.md)."""
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
    def lease_check_after(self) -> float:
        return settings.RELAY_ORPHAN_AFTER * LEASE_CHECK_SHARE

    @property
    def flush_interval(self) -> float:
        return settings.RELAY_FLUSH_INTERVAL

    @property
    def timeouts(self) -> Any:
        return services.vendor_timeouts()

    async def start(self, accepted: services.AcceptedMessage, owner: Sink | None = None,
                    owner_channel: str | None = None) -> Run:
        """Announce the user's message and the placeholder, then run the reply as a task."""
        run = Run(self, accepted, owner, owner_channel)
        self.runs[run.conversation_id] = run
        self.bus.ensure_listening()  # cancel / snapshot requests from other processes
        if accepted.announce_user:
            await run.emit(shapes.message_created(message_json(accepted.user_message, [])))
        await run.emit(shapes.message_created(message_json(accepted.assistant_message, [])),
                       urgent=True)
        if accepted.metadata_changed or accepted.title_changed:
            await run.emit(shapes.conversation_updated(conversation_json(accepted.conversation)),
                           urgent=True)
        run.task = asyncio.create_task(self._execute(run), name=f"run-{run.message_id}")
        return run

    async def _execute(self, run: Run) -> None:
        # The run's own task: these ids are on its log lines only.
        logs.bind(conversation_id=run.conversation_id, message_id=run.message_id)
        m.ACTIVE_RUNS.inc()
        try:
            # The reply's span, entered in its own task so the vendor call's span is its child
            # (a shared no-op when tracing is off).
            with tracing.reply_span(run):
                await run.execute()
        finally:
            m.ACTIVE_RUNS.dec()
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
            reply_to = await layer_calls.new_channel("snapshot.", layer)
            await self.bus.request("snapshot", str(conversation_id), reply_to=reply_to)
            msg = await asyncio.wait_for(layer.receive(reply_to), SNAPSHOT_TIMEOUT)
        except (TimeoutError, layer_calls.LayerUnavailable):  # the latter logged, throttled
            return None
        except Exception as exc:
            layer_calls.layer_log.failure("snapshot", exc)
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
        a second at 100 streams and queued new messages behind them (`make bench`). A flush
        that finds a reply no longer ours (reaped or canceled elsewhere) fences its run."""
        while self.runs:
            await asyncio.sleep(self.flush_interval)
            await self.flush_now()

    async def flush_now(self) -> None:
        runs = [run for run in list(self.runs.values())
                if run.status == Message.Status.STREAMING and not run.fenced]
        if not runs:
            return
        started = time.monotonic()
        try:
            fenced = set(await relay_db(services.flush_runs)(
                [(run.message_id, run.content) for run in runs]))
        except Exception:
            m.FLUSH_FAILURES.inc()
            logger.warning("flush of %d replies failed; will retry", len(runs), exc_info=True)
            return
        m.FLUSH_SECONDS.observe(time.monotonic() - started)
        for run in runs:
            if run.message_id not in fenced:
                run.lease_proved_at = max(run.lease_proved_at, started)
            elif run.status == Message.Status.STREAMING:
                # Not a reply that ended by itself while the flush ran (its final save, on
                # another relay thread, commits first and the flush then finds 0 rows).
                run.fence()

    def ensure_reaper(self) -> None:
        """Start this process's reaper once (lazily: there is no ASGI lifespan in Daphne)."""
        if settings.RELAY_REAP_INTERVAL <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._reaper is None or self._reaper.done() or self._reaper.get_loop() is not loop:
            self._reaper = loop.create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        reap = relay_db(services.reap_orphaned_runs)
        # Notices the layer could not carry, retried each pass (capped: REAP_NOTICE_BACKLOG).
        unsent: list[tuple[str, list[dict[str, Any]]]] = []
        while True:
            await asyncio.sleep(settings.RELAY_REAP_INTERVAL)
            try:
                # Never this process's own live replies (services.reap_orphaned_runs).
                reaped = await reap(alive=[run.message_id for run in list(self.runs.values())])
            except Exception:
                logger.warning("reaper pass failed; will retry", exc_info=True)
                reaped = []
            notices = [(str(m["conversation_id"]), [message_frame("message.failed", m["message"])])
                       for m in reaped]
            if unsent:
                unsent = await self._notify_viewers(unsent)
            # While the layer is still down, new notices are not tried one by one.
            failed = notices if unsent else await self._notify_viewers(notices)
            for conversation_id, frames in failed:
                # This process's viewers are told now; other processes' when the layer is back.
                await self.deliver_local(conversation_id, frames)
            unsent = (unsent + failed)[-REAP_NOTICE_BACKLOG:]

    async def _notify_viewers(self, notices: list[tuple[str, list[dict[str, Any]]]]
                              ) -> list[tuple[str, list[dict[str, Any]]]]:
        """Send the reaper's final frames to each conversation's group (every process); return
        those the layer could not carry (logged, throttled, by layer_calls). A viewer that gets
        one twice (delivered locally, then by the group) just sets the same final state."""
        for i, (conversation_id, frames) in enumerate(notices):
            try:
                await layer_calls.group_send(
                    conversation_group(conversation_id),
                    {"type": "relay.frames", "skip": None, "frames": frames}, self.layer)
            except layer_calls.LayerUnavailable:
                return notices[i:]
        return []

    async def cancel(self, conversation_id: UUID | str) -> None:
        """Stop the conversation's run wherever it runs: this process, another live one (a
        request on the bus), or none (a dead or stalled process: fenced and ended here)."""
        run = self.local_run(conversation_id)
        if run is not None:
            run.cancel()
            return
        if await self.cancel_orphaned(conversation_id):
            return
        await self.bus.request("cancel", str(conversation_id))
        # The owner may stall or miss the request; once its heartbeat is stale, end it here.
        task = asyncio.create_task(self._cancel_orphaned_later(str(conversation_id)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def orphan_stale_after(self) -> float:
        # A live owner flushes every RELAY_FLUSH_INTERVAL (1 s): three missed flushes, and at
        # least 3 s, mean nobody is running the reply any more.
        return max(3.0, 3 * self.flush_interval)

    async def cancel_orphaned(self, conversation_id: UUID | str) -> bool:
        """End the conversation's reply as canceled if no live process runs it; tell every
        viewer. False when there is no such reply."""
        try:
            message = await relay_db(services.cancel_orphaned_run)(
                conversation_id, self.orphan_stale_after)
        except Exception:
            logger.warning("could not cancel an orphaned reply of %s", conversation_id,
                           exc_info=True)
            return False
        if message is None:
            return False
        frames = [message_frame("message.canceled", message)]
        try:
            await layer_calls.group_send(
                conversation_group(conversation_id),
                {"type": "relay.frames", "skip": None, "frames": frames}, self.layer)
        except layer_calls.LayerUnavailable:  # logged by layer.py; this process's tabs at least
            await self.deliver_local(str(conversation_id), frames)
        return True

    async def _cancel_orphaned_later(self, conversation_id: str) -> None:
        await asyncio.sleep(self.orphan_stale_after + self.flush_interval)
        await self.cancel_orphaned(conversation_id)

    async def shutdown(self, grace: float) -> None:
        """The process is stopping (SIGTERM, chatsite/shutdown.py): save every live reply's
        text now, let replies that end within `grace` seconds finish, end the others as
        `server_restart` with their text kept (a final frame to every viewer), then close this
        process's sockets with 1012 so clients reconnect at once to another process."""
        self.draining = True
        await self.flush_now()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.runs and loop.time() < deadline:
            await asyncio.sleep(0.1)
        tasks = []
        for run in list(self.runs.values()):
            if run.task is not None and not run.task.done():
                run.shutting_down = True
                run.task.cancel()
                tasks.append(run.task)
        if tasks:
            # The final saves retry for up to ~31 s (FINISH_RETRY_DELAYS); a stop should not
            # wait that long: what is not saved by then is reaped elsewhere as stored.
            await asyncio.wait(tasks, timeout=SHUTDOWN_SAVE_TIMEOUT)
        # Batches still queued for other processes' viewers ride the next bus window.
        await asyncio.sleep(2 * BUS_WINDOW)
        for viewers in list(self.viewers.values()):
            for viewer in list(viewers.values()):
                with contextlib.suppress(Exception):
                    await viewer.close_for_restart()
        # Let the close handshakes finish (each socket unregisters when its client answers):
        # a reactor stopped now would cut them, and clients would see 1006, not 1012.
        deadline = loop.time() + CLOSE_HANDSHAKE_TIMEOUT
        while self.viewers and loop.time() < deadline:
            await asyncio.sleep(0.05)
        logger.info("relay drained: %d replies ended early", len(tasks))

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
        await layer_calls.group_send(conversation_group(conversation_id),
                                     {"type": "conversation.deleted"}, layer)
    except layer_calls.LayerUnavailable:
        # Logged by layer_calls. This process's sockets are closed directly; those of other
        # processes get 4404 on their next reconnect or frame (the conversation is gone).
        for viewer in list(relay.viewers.get(str(conversation_id), {}).values()):
            with contextlib.suppress(Exception):
                await viewer.close(code=4404)
    except Exception:  # the local delete already happened; open sockets resync or 404
        logger.warning("could not notify sockets of deleted %s", conversation_id, exc_info=True)


async def notify_branch_changed(conversation_id: UUID | str) -> None:
    """Every socket of the conversation, in every process, resyncs to the new active path."""
    try:
        await layer_calls.group_send(conversation_group(conversation_id),
                                     {"type": "branch.changed"}, get_channel_layer())
    except layer_calls.LayerUnavailable:
        # Logged by layer_calls: this process's sockets resync now; others on reconnect.
        for viewer in list(relay.viewers.get(str(conversation_id), {}).values()):
            with contextlib.suppress(Exception):
                await viewer.resync()


async def notify_event(conversation_id: UUID | str, frames: list[dict[str, Any]]) -> None:
    """A note or an assignment event: `message.created` + `conversation.updated` to every
    socket of the conversation, in every process."""
    try:
        await layer_calls.group_send(conversation_group(conversation_id),
                                     {"type": "relay.frames", "frames": frames},
                                     get_channel_layer())
    except layer_calls.LayerUnavailable:
        # Logged by layer_calls: this process's sockets get it now; others on their next sync.
        await relay.deliver_local(str(conversation_id), frames)


def _on_conversation_event(sender: Any, conversation_id: UUID | str, message_id: UUID | str,
                           **kwargs: Any) -> None:
    # Sent on commit by services.desk, from a sync thread (a view, the API, a socket's
    # database thread, the admin).
    message = services.stored_message(message_id)
    conversation = services.load_conversation(conversation_id)
    frames = [shapes.message_created(message_json(message)),
              shapes.conversation_updated(conversation_json(conversation))]
    async_to_sync(notify_event)(conversation_id, frames)


def _on_branch_selected(sender: Any, conversation_id: UUID | str, **kwargs: Any) -> None:
    # Sent by services.select_branch on commit, from a sync thread (the API).
    async_to_sync(notify_branch_changed)(conversation_id)


def _on_conversation_deleted(sender: Any, conversation_id: UUID | str, **kwargs: Any) -> None:
    # Sent on commit by services.delete_conversation, from a sync thread (a view, the API).
    async_to_sync(notify_deleted)(conversation_id)


def connect_receivers() -> None:
    """Called by ConversationsConfig.ready, so every process that can delete a conversation
    (web, API, management commands) tells the sockets; services never import the relay."""
    services.conversation_deleted.connect(
        _on_conversation_deleted, dispatch_uid="conversations.relay.notify_deleted")
    services.branch_selected.connect(
        _on_branch_selected, dispatch_uid="conversations.relay.notify_branch_changed")
    services.conversation_event.connect(
        _on_conversation_event, dispatch_uid="conversations.relay.notify_event")
