"""The websocket consumer: thin. It validates client frames, calls services and the relay, and
forwards fan-out batches. Protocol v1 is documented in docs/protocol.md."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from typing import Any

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from django.utils import translation
from django.utils.translation import gettext as _

from chatsite import logs, metrics
from conversations import backpressure, ratelimit, services, sessions
from conversations import layer as layer_calls
from conversations.frames import (
    active_run,
    conversation_forked,
    conversation_json,
    error_frame,
    localize_frame,
    message_created,
    message_json,
    omit_content,
    pong,
    presence_frame,
    sync_frame,
    without_content,
)
from conversations.models import Conversation, Message
from conversations.relay import CLOSE_SERVICE_RESTART, conversation_group, relay, start_db
from conversations.services import validation

logger = logging.getLogger(__name__)

# The largest legitimate frame is a 32,000-character message (up to 4 bytes each in UTF-8) plus
# 16 KB of metadata; 256 KiB leaves room for JSON escaping and refuses anything absurd before
# parsing it.
MAX_FRAME_BYTES = 256 * 1024
# Daphne (Autobahn) refuses to send a websocket message over 1 MiB; frames are kept under it
# with room to spare.
MAX_SEND_BYTES = 1000 * 1024
# conversation.sync carries the latest 100 messages (a reconnecting client already has older
# ones; the page itself renders the whole transcript), halved until the frame fits.
SYNC_MESSAGES = 100
# A socket accepted while Redis was down joins its groups when it is back: first try after
# 0.5 s, doubling to one try per 10 s (one task per socket, cancelled when it closes).
REJOIN_RETRY_MIN = 0.5
REJOIN_RETRY_MAX = 10.0


def scope_language(scope: dict[str, Any]) -> str:
    """The language a page request with the handshake's headers gets: the switcher's cookie,
    else Accept-Language, else LANGUAGE_CODE (LocaleMiddleware's choice; no URL prefixes here).
    """
    headers: dict[str, list[str]] = {}
    for name, value in scope.get("headers") or []:
        headers.setdefault(name.decode("latin1").lower(), []).append(value.decode("latin1"))
    request = HttpRequest()
    request.COOKIES = parse_cookie("; ".join(headers.get("cookie", [])))
    request.META["HTTP_ACCEPT_LANGUAGE"] = ", ".join(headers.get("accept-language", []))
    return translation.get_language_from_request(request)


class ConversationConsumer(AsyncWebsocketConsumer):
    conversation_id: str
    group: str
    # The socket user's language: titles and error messages sent on this socket use it.
    language: str = "en"
    gauge: backpressure.WriteGauge | None = None
    raw_send: Any = None
    closing = False
    # Frames held until the first conversation.sync is sent (connect); None once it is.
    early: list[dict[str, Any] | str] | None = None
    # The login session the socket was opened with; its end closes the socket (sessions.py).
    auth_session: sessions.SocketSession | None = None
    # Degraded local mode (Redis down at connect): whether the layer knows this socket's
    # channel, the groups still to join, and the task joining them (see _rejoin).
    channel_subscribed = True
    pending_groups: list[str]
    rejoin_task: asyncio.Task[None] | None = None
    # Presence: the sockets of this conversation open anywhere (channel name -> user), learnt
    # from the group's presence.join / presence.here / presence.leave messages.
    present: dict[str, dict[str, Any]]
    # Counted in metrics.OPEN_SOCKETS (accepted onto a conversation), so disconnect uncounts.
    counted = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' AsyncConsumer.__call__ (4.3), except that the socket's channel is made
        even while Redis is down: the pub/sub layer subscribes a new channel at once, which
        failed every handshake with HTTP 500 during an outage (issue 9)."""
        self.pending_groups = []
        self.present = {}
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is None:
            await super().__call__(scope, receive, send)
            return
        self.channel_name, self.channel_subscribed = await layer_calls.ensure_channel(
            self.channel_layer)
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch([receive, self.channel_receive], self.dispatch)

    async def connect(self) -> None:
        if relay.draining:
            await self.close()  # stopping (SIGTERM): the client retries, on another process
            return
        self.language = scope_language(self.scope)
        user = self.scope.get("user")
        # This socket's task: its log lines (and its replies' tasks) carry these ids.
        logs.bind(request_id=logs.sane_request_id(_header(self.scope, b"x-request-id")),
                  conversation_id=self.scope["url_route"]["kwargs"].get("conversation_id"),
                  user_id=getattr(user, "pk", None))
        if user is None or not user.is_authenticated:
            await self.close()  # before accept(): the handshake is refused (HTTP 403)
            return
        # Join the user's and the session's groups, then check the session once more: a logout
        # published between the handshake's session read and the join still ends this socket.
        # The check and the access check are one hop onto the database thread, which every
        # socket of the process shares (50 sockets opening at once queued 0.5 s on it with
        # three hops, `make bench` W).
        self.auth_session = sessions.socket_session(self.scope)
        for name in self.auth_session.groups if self.auth_session else ():
            await self._join(name)
        conversation = await database_sync_to_async(_open_checked)(
            self.auth_session, user, self.scope["url_route"]["kwargs"]["conversation_id"])
        if conversation is None:
            await self.close()
            return
        # Over RATE_LIMIT_SOCKETS_PER_USER: accepted, told why (`rate_limited` with retry_after;
        # a refused handshake is a bare HTTP 403), then closed with 4429. Nothing joined yet.
        if refusal := await ratelimit.aopen_socket(user.pk, self.channel_name):
            await self.accept()
            with translation.override(self.language):
                await self.send(text_data=json.dumps(refusal.frame(), ensure_ascii=False))
            await self.close(code=ratelimit.CLOSE_TOO_MANY_SOCKETS)
            return
        self.conversation_id = str(conversation.id)
        self.group = conversation_group(self.conversation_id)
        relay.ensure_reaper()
        # Join before taking the snapshot: a batch published in between overlaps the snapshot
        # (the client drops it by offset) rather than leaving a gap.
        # Frames for this socket before its conversation.sync (a batch from another process,
        # a presence change) wait for it: the sync is always the first frame, and what it
        # already holds is dropped by offset on the client.
        self.early = []
        await self._join(self.group)
        relay.add_viewer(self.conversation_id, self)
        await self.accept()
        self.counted = True
        metrics.OPEN_SOCKETS.inc()
        self.gauge = self.scope.get("write_gauge")
        self.raw_send = self.scope.get("raw_send")
        with translation.override(self.language):
            sync = fit_sync(await self._sync_frame())
            early, self.early = self.early, None
            await self.send_frame(sync)
            for frame in early:
                await self.send_frame(frame)
        await self._announce_presence(user)
        if self.pending_groups or not self.channel_subscribed:
            # Degraded local mode (Redis down): the socket works, its own replies stream to
            # it directly and other processes' batches reach it through the process bus once
            # the layer is back; its groups (deletion, reaper notices, logout) are joined then.
            self.rejoin_task = asyncio.get_running_loop().create_task(self._rejoin())

    async def disconnect(self, code: int) -> None:
        if self.counted:
            self.counted = False
            metrics.OPEN_SOCKETS.dec()
        if self.rejoin_task is not None:
            self.rejoin_task.cancel()
        groups = list(self.auth_session.groups if self.auth_session else ())
        await ratelimit.aclose_socket(self.channel_name)
        if getattr(self, "group", None):
            with contextlib.suppress(layer_calls.LayerUnavailable):
                await layer_calls.group_send(self.group, {
                    "type": "presence.leave", "channel": self.channel_name}, self.channel_layer)
            relay.remove_viewer(self.conversation_id, self)
            relay.detach(self.conversation_id, self.channel_name)
            groups.append(self.group)
        for name in groups:  # pending ones too: the pub/sub layer lists a failed join locally
            # A layer outage must not fail the close (logged, throttled, by layer_calls).
            with contextlib.suppress(layer_calls.LayerUnavailable):
                await layer_calls.group_discard(name, self.channel_name, self.channel_layer)

    async def _join(self, group: str) -> None:
        """Join a group now, or, with the layer down, list it for _rejoin."""
        try:
            await layer_calls.group_add(group, self.channel_name, self.channel_layer)
        except layer_calls.LayerUnavailable:  # logged, throttled, by layer_calls
            self.pending_groups.append(group)

    async def _rejoin(self) -> None:
        """Join the groups Redis refused at connect, retrying with backoff (REJOIN_RETRY_MIN
        doubling to REJOIN_RETRY_MAX) until it answers; cancelled by disconnect. Then check
        the session again: a logout published during the outage reached no one."""
        delay = REJOIN_RETRY_MIN
        while self.pending_groups or not self.channel_subscribed:
            await asyncio.sleep(delay)
            delay = min(2 * delay, REJOIN_RETRY_MAX)
            try:
                if not self.channel_subscribed:
                    await layer_calls.subscribe_channel(self.channel_layer, self.channel_name)
                    self.channel_subscribed = True
                while self.pending_groups:
                    await layer_calls.group_add(self.pending_groups[0], self.channel_name,
                                                self.channel_layer)
                    self.pending_groups.pop(0)
            except layer_calls.LayerUnavailable:
                continue
        if not await database_sync_to_async(sessions.session_is_valid)(self.auth_session):
            await self.session_revoked({})

    async def send_frame(self, frame: dict[str, Any] | str) -> None:
        if self.closing:
            return
        if self.early is not None:
            self.early.append(frame)
            return
        if isinstance(frame, dict) and frame.get("type") == "conversation.updated":
            # Fanned out to every viewer as built by the run: titles in this socket's language.
            frame = localize_frame(frame, self.language)
        text = frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False)
        if len(text) > MAX_SEND_BYTES and len(text.encode()) > MAX_SEND_BYTES:
            # A reply of over ~1 MB: its final frame goes without the content, which the
            # client has from the deltas (issue 9 §8), so every reply ends visibly.
            slim = without_content(frame)
            if slim is not None:
                text = json.dumps(slim, ensure_ascii=False)
        if len(text) > MAX_SEND_BYTES and len(text.encode()) > MAX_SEND_BYTES:
            # Any other frame this large cannot be served, so say why instead of letting the
            # server raise.
            logger.warning("frame of %d bytes for %s is over the websocket limit",
                           len(text), self.conversation_id)
            with translation.override(self.language):
                message = _("A message in this conversation is too large to show live; "
                            "reload the page to read it.")
            text = json.dumps(error_frame("too_large", message))
        # Counted after fitting: what Twisted buffers is the text actually sent.
        if self.gauge is not None and self.gauge.over_limit(len(text)):
            # The client stopped reading: stop queueing for it (see backpressure.py). It
            # resyncs from conversation.sync when it reconnects; the run goes on regardless.
            self.closing = True
            metrics.BACKPRESSURE_CLOSES.inc()
            logger.info("closing socket of %s: client too slow", self.conversation_id)
            await self.close(code=backpressure.CLOSE_TOO_SLOW,
                             reason="client too slow: reconnect to resync")
            return
        try:
            if self.raw_send is not None:
                await self.raw_send({"type": "websocket.send", "text": text})
            else:
                await self.send(text_data=text)
        except Disconnected:
            # The client closed while a group message (a presence change, an event) was on its
            # way: nothing to deliver, and disconnect() follows.
            self.closing = True

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch hops to the database thread (close_old_connections) before every
        message, group batches included: at 20 batches/s per viewer that one shared thread
        became the bottleneck (`make bench`). Handlers here that touch the database go through
        database_sync_to_async, which closes stale connections itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # Client -> server ------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Error messages (here and from services) in the socket user's language; `code`s stay.
        with translation.override(self.language):
            await self._receive(text_data)

    async def _receive(self, text_data: str | None) -> None:
        if text_data is None:
            await self.send_frame(error_frame("bad_json", _("Frames must be JSON text.")))
            return
        if len(text_data) > MAX_FRAME_BYTES or len(text_data.encode()) > MAX_FRAME_BYTES:
            await self.send_frame(error_frame(
                "too_large",
                _("Frames must be at most %(size)s KiB.") % {"size": MAX_FRAME_BYTES // 1024}))
            return
        try:
            frame = validation.parse(text_data)
        except validation.InvalidJSON as exc:
            message = _("The frame is not valid JSON.") if exc.code == "bad_json" else exc.message
            await self.send_frame(error_frame(exc.code, message))
            return
        try:
            validation.check(frame)
        except validation.InvalidJSON as exc:
            # JSON that cannot be stored (a lone surrogate, NUL, nesting past 32): refused with
            # the client_id, so the client drops that message rather than resend it forever.
            await self.send_frame(error_frame("invalid", exc.message,
                                              client_id=_client_id(frame)))
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_frame(error_frame(
                "invalid", _("A frame must be a JSON object with a string “type”.")))
            return
        handler = self.HANDLERS.get(frame["type"])
        if handler is None:
            await self.send_frame(error_frame(
                "unknown_type",
                _("Unknown frame type “%(type)s”.") % {"type": frame["type"][:64]}))
            return
        try:
            # message.send checks the session itself, in its one start hop (on_send).
            if frame["type"] not in ("ping", "message.send") and not await database_sync_to_async(
                    sessions.session_is_valid)(self.auth_session):
                await self._session_ended(frame)
                return
            await handler(self, frame)
        except (services.InvalidInput, services.NotFound) as exc:
            await self.send_frame(error_frame(exc.code, exc.message, client_id=_client_id(frame)))
        except layer_calls.LayerUnavailable:
            # Logged (throttled) by layer.py: no traceback per frame during an outage.
            await self.send_frame(error_frame(
                "internal_error", _("The server could not handle this request; try again."),
                client_id=_client_id(frame)))
        except Exception:
            # A bug or an outage (database, channel layer) must not close the socket with 1011
            # and make the client resend: say so, log once, keep the connection.
            logger.exception("frame %s failed on %s", frame["type"], self.conversation_id)
            await self.send_frame(error_frame(
                "internal_error", _("The server could not handle this request; try again."),
                client_id=_client_id(frame)))

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send_frame(pong())

    async def _session_ended(self, frame: dict[str, Any]) -> None:
        # Logged out, deactivated or a new password since the handshake: nothing stored.
        await self.send_frame(error_frame(
            "not_authenticated", _("Your session has ended. Log in again to continue."),
            client_id=_client_id(frame)))
        await self.session_revoked({})

    async def on_send(self, frame: dict[str, Any]) -> None:
        # One hop onto the reply-start threads (relay.start_db), not three onto Channels' one
        # database thread: a reply's start never queues behind other sockets' work.
        outcome = await start_db(_accept_send)(
            self.auth_session, self.scope["user"], self.conversation_id, frame)
        if outcome is None:
            await self._session_ended(frame)
        elif isinstance(outcome, ratelimit.Refusal):
            await self.send_frame(outcome.frame(client_id=_client_id(frame)))
        elif isinstance(outcome, dict):
            await self.send_frame(message_created(outcome))
        else:
            await relay.start(outcome, owner=self.send_frame, owner_channel=self.channel_name)

    async def on_cancel(self, frame: dict[str, Any]) -> None:
        if relay.local_run(self.conversation_id) is None:
            active = await database_sync_to_async(_has_streaming_reply)(self.conversation_id)
            if not active:
                await self.send_frame(error_frame("no_run", _("No reply is running.")))
                return
        await relay.cancel(self.conversation_id)

    async def on_resume(self, frame: dict[str, Any]) -> None:
        interrupt_id = frame.get("interrupt_id")
        if not isinstance(interrupt_id, str) or not interrupt_id:
            await self.send_frame(error_frame("invalid", _("interrupt_id must be a string.")))
            return
        if refusal := await database_sync_to_async(ratelimit.check_send)(self.scope["user"].pk):
            await self.send_frame(refusal.frame())
            return
        accepted = await database_sync_to_async(services.accept_interrupt_answer)(
            self.conversation_id, self.scope["user"], interrupt_id, frame.get("payload")
        )
        await relay.start(accepted, owner=self.send_frame, owner_channel=self.channel_name)

    async def on_regenerate(self, frame: dict[str, Any]) -> None:
        await self._start_edit(services.regenerate_reply, frame,
                               message_id=frame.get("message_id"))

    async def on_edit(self, frame: dict[str, Any]) -> None:
        await self._start_edit(services.edit_message, frame, message_id=frame.get("message_id"),
                               content=frame.get("content"))

    async def _start_edit(self, use_case: Any, frame: dict[str, Any], **fields: Any) -> None:
        """message.regenerate / message.edit: a new branch here, or a fork (services.edits)."""
        if refusal := await database_sync_to_async(ratelimit.check_send)(self.scope["user"].pk):
            await self.send_frame(refusal.frame(client_id=_client_id(frame)))
            return
        accepted = await database_sync_to_async(use_case)(
            self.conversation_id, self.scope["user"], client_id=frame.get("client_id"), **fields)
        if accepted.forked:
            # The reply runs in the new conversation; this socket is told where to go.
            if accepted.assistant_message is not None:
                await relay.start(accepted)
            data = await database_sync_to_async(conversation_json)(
                accepted.conversation, self.language)
            await self.send_frame(conversation_forked(data, _client_id(frame)))
            return
        if accepted.assistant_message is None:
            msg = await database_sync_to_async(
                lambda: message_json(services.stored_message(accepted.user_message.pk)))()
            await self.send_frame(message_created(msg))
            return
        await relay.start(accepted, owner=self.send_frame, owner_channel=self.channel_name)

    async def on_select_branch(self, frame: dict[str, Any]) -> None:
        """branch.select: the branch through `message_id` becomes the active path, and every
        socket of the conversation (any process) is sent a fresh conversation.sync (through
        services.branch_selected, as for the API)."""
        await database_sync_to_async(services.select_branch)(
            await database_sync_to_async(services.get_conversation)(
                self.scope["user"], self.conversation_id),
            frame.get("message_id"))

    async def on_note(self, frame: dict[str, Any]) -> None:
        """note.add: an internal note for the team; announced to every socket (services.desk)
        through the group, this one included. A repeated client_id is acknowledged."""
        note, new = await database_sync_to_async(services.add_note)(
            self.conversation_id, self.scope["user"], content=frame.get("content"),
            client_id=frame.get("client_id"))
        if not new:
            msg = await database_sync_to_async(
                lambda: message_json(services.stored_message(note.pk)))()
            await self.send_frame(message_created(msg))

    HANDLERS = {
        "ping": on_ping,
        "message.send": on_send,
        "note.add": on_note,
        "message.regenerate": on_regenerate,
        "message.edit": on_edit,
        "branch.select": on_select_branch,
        "run.cancel": on_cancel,
        "interrupt.resume": on_resume,
    }

    # Server -> client ------------------------------------------------------------------------

    async def deliver(self, frames: list[dict[str, Any]]) -> None:
        """A coalesced batch from the relay (relay.Run.publish / ProcessBus)."""
        for frame in frames:
            await self.send_frame(frame)

    async def relay_frames(self, event: dict[str, Any]) -> None:
        """Frames sent through the conversation's group (the reaper's message.failed, notes and
        assignment events)."""
        if event.get("skip") == self.channel_name:
            return
        if any(f.get("type") == "conversation.updated" for f in event["frames"]) and not (
                await database_sync_to_async(services.may_open)(
                    self.scope["user"], self.conversation_id)):
            # Transferred to a team this user is not in: nothing more reaches them (4404).
            await self.close(code=4404)
            return
        await self.deliver(event["frames"])

    # Presence ----------------------------------------------------------------------------------

    async def _announce_presence(self, user: Any) -> None:
        self.me = {"id": user.pk, "name": user.get_full_name() or user.get_username()}
        self.present[self.channel_name] = self.me
        try:
            await layer_calls.group_send(self.group, {
                "type": "presence.join", "channel": self.channel_name, "user": self.me},
                self.channel_layer)
        except layer_calls.LayerUnavailable:
            pass  # logged by layer_calls; presence comes back with the layer
        await self._send_presence()

    async def _send_presence(self) -> None:
        users = {u["id"]: u for u in self.present.values()}
        await self.send_frame(presence_frame(sorted(users.values(), key=lambda u: u["name"])))

    async def presence_join(self, event: dict[str, Any]) -> None:
        if event["channel"] == self.channel_name or not hasattr(self, "me"):
            return
        self.present[event["channel"]] = event["user"]
        with contextlib.suppress(layer_calls.LayerUnavailable):
            await layer_calls.send(event["channel"], {
                "type": "presence.here", "channel": self.channel_name, "user": self.me},
                self.channel_layer)
        await self._send_presence()

    async def presence_here(self, event: dict[str, Any]) -> None:
        self.present[event["channel"]] = event["user"]
        await self._send_presence()

    async def presence_leave(self, event: dict[str, Any]) -> None:
        if self.present.pop(event["channel"], None) is not None:
            await self._send_presence()

    async def session_revoked(self, event: dict[str, Any]) -> None:
        """The socket's session ended (sessions.REVOKED_MESSAGE, or the guard in _receive)."""
        self.closing = True  # nothing more is sent to a socket that is no longer logged in
        await self.close(code=sessions.CLOSE_SESSION_ENDED)

    async def branch_changed(self, event: dict[str, Any]) -> None:
        """Another socket (or the API) picked a branch: show the new active path."""
        await self.resync()

    async def resync(self) -> None:
        with translation.override(self.language):
            await self.send_frame(fit_sync(await self._sync_frame()))

    async def conversation_deleted(self, event: dict[str, Any]) -> None:
        # 4404: the client stops reconnecting to a conversation that is gone.
        await self.close(code=4404)

    async def close_for_restart(self) -> None:
        """This process is stopping (relay.shutdown): close with 1012 "service restart", which
        browsers treat as "reconnect now". Autobahn's public close accepts only 1000 and
        3000-4999, so under Daphne the close frame is sent through its frame-level call."""
        self.closing = True
        protocol = getattr(self.raw_send, "args", (None,))[0]
        send_close = getattr(protocol, "sendCloseFrame", None)
        if send_close is None:
            await self.close(code=CLOSE_SERVICE_RESTART)
            return
        send_close(code=CLOSE_SERVICE_RESTART, reasonUtf8=b"service restart", isReply=False)

    async def _sync_frame(self) -> dict[str, Any]:
        conversation, messages, stored, complete, branches = await database_sync_to_async(
            self._load)()
        # The live text, taken after joining the group: anything published since is delivered
        # after this frame and overlaps it (dropped by offset), so there is no gap.
        run = relay.local_run(self.conversation_id)
        active = run.snapshot() if run is not None else None
        if active is None and stored is not None:
            live = await relay.remote_snapshot(self.conversation_id)
            active = live if live and live.get("message_id") == stored["message_id"] else stored
        return sync_frame(conversation, messages, complete, active, branches)

    def _load(
        self,
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None, bool,
               dict[str, list[str]]]:
        conversation = services.get_conversation(self.scope["user"], self.conversation_id)
        messages, path = services.path_transcript(conversation, limit=SYNC_MESSAGES)
        if any(services.is_orphaned(m) for m in messages):
            # A reply its stopped process left streaming: failed now, so the sync shows it so
            # (this conversation only; the relay's reaper sweeps the rest every few seconds).
            services.reap_orphaned_runs(conversation_id=conversation.pk)
            messages, path = services.path_transcript(conversation, limit=SYNC_MESSAGES)
        complete = len(path.ids) <= SYNC_MESSAGES
        sent = {str(m.pk) for m in messages}
        branches = {pk: ids for pk, ids in path.branches.items() if pk in sent}
        stored = None
        for m in messages:
            if m.status == Message.Status.STREAMING:
                stored = active_run(str(m.id), m.content, [], m.status)
        return (conversation_json(conversation, self.language),
                [message_json(m) for m in messages], stored, complete, branches)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    """A handshake header's value (latin-1, as HTTP headers are), or None."""
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin1")
    return None


def _open_checked(auth_session: sessions.SocketSession | None, user: Any,
                  conversation_id: Any) -> Conversation | None:
    """A handshake's database work: the conversation if the session is still valid and the
    user may open it, else None (the handshake is refused either way, saying nothing)."""
    if not sessions.session_is_valid(auth_session):
        return None
    try:
        return services.get_conversation(user, conversation_id)
    except services.NotFound:
        return None


def _accept_send(auth_session: sessions.SocketSession | None, user: Any, conversation_id: str,
                 frame: dict[str, Any]
                 ) -> services.AcceptedMessage | ratelimit.Refusal | dict[str, Any] | None:
    """message.send's database work, in order: None when the session has ended; a Refusal over
    the running-replies or sends-per-minute limit (ratelimit.py), before anything is stored; for
    a repeated client_id the stored message's JSON (acknowledged again, never run twice);
    otherwise the accepted message, its placeholder committed."""
    if not sessions.session_is_valid(auth_session):
        return None
    if refusal := ratelimit.check_send(user.pk):
        return refusal
    accepted = services.accept_user_message(
        conversation_id,
        user,
        content=frame.get("content"),
        client_id=frame.get("client_id"),
        metadata=frame.get("metadata"),
        attachments=frame.get("attachments"),
    )
    if accepted.assistant_message is None:
        return message_json(services.stored_message(accepted.user_message.pk))
    return accepted


def _client_id(frame: Any) -> str | None:
    """The frame's client_id when it is a plain string (echoed in error frames)."""
    value = frame.get("client_id") if isinstance(frame, dict) else None
    if isinstance(value, str) and len(value) <= services.CLIENT_ID_MAX_CHARS:
        try:
            validation.check_text(value)
        except validation.InvalidJSON:
            return None
        return value
    return None


def fit_sync(frame: dict[str, Any]) -> dict[str, Any] | str:
    """The sync frame as text under MAX_SEND_BYTES: drop the oldest messages (halving) until it
    fits, marking `messages_complete` false; a client keeps the older ones it already has. The
    newest message stays (its status is what a reconnecting client most needs): when it, or
    the active run, is over ~1 MB alone, it goes with its content omitted like a final frame
    (frames.omit_content; the client keeps its own text or loads it from the API)."""
    text = json.dumps(frame, ensure_ascii=False)
    while len(text.encode()) > MAX_SEND_BYTES and len(frame["messages"]) > 1:
        keep = len(frame["messages"]) // 2
        frame = {**frame, "messages": frame["messages"][-keep:], "messages_complete": False}
        text = json.dumps(frame, ensure_ascii=False)
    if len(text.encode()) > MAX_SEND_BYTES:
        run = frame.get("active_run")
        frame = {**frame, "messages": [omit_content(m) for m in frame["messages"]],
                 "active_run": omit_content(run) if isinstance(run, dict) else run}
        text = json.dumps(frame, ensure_ascii=False)
    if len(text.encode()) > MAX_SEND_BYTES and frame["messages"]:
        # Still too large without any text (huge tool calls or data): as before, no messages.
        frame = {**frame, "messages": [], "messages_complete": False}
        text = json.dumps(frame, ensure_ascii=False)
    return text


def _has_streaming_reply(conversation_id: str) -> bool:
    return Message.objects.streaming().filter(conversation_id=conversation_id).exists()
