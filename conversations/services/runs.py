"""A reply's life in the database: accepting the message that starts it (or the answer that
resumes it), the request handed to the provider, the relay's flushes and final write, and the
reaper that fails a dead process's replies.

The process running a reply writes only under its lease (`OWNER_LEASE`, see `Message.lease`):
a reply reaped or canceled elsewhere is never written again by its old owner.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, NamedTuple
from uuid import UUID

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Case, Func, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from chatsite import metrics
from conversations.events import ErrorCode
from conversations.models import Attachment, Conversation, Message, ToolCall
from conversations.providers.base import ChatTurn, RunRequest
from conversations.services import attachments as attachments_service
from conversations.services import queue_rules, webhooks
from conversations.services.agents import agent_config
from conversations.services.branches import Tree
from conversations.services.costs import check_budget
from conversations.services.errors import InvalidInput, NotFound
from conversations.services.teams import agent_access_annotations, check_conversation_agent
from conversations.services.validation import (
    CONTENT_MAX_CHARS,
    clean_client_id,
    clean_content,
    clean_metadata,
)

logger = logging.getLogger(__name__)

# start_reply's default parent: the end of the active path.
_LEAF = object()


# Accepting a message or an answer -----------------------------------------------------------


@dataclass
class AcceptedMessage:
    user_message: Message
    # None when the send was a repeat of an earlier client_id (acknowledged, not run again).
    assistant_message: Message | None
    request: RunRequest | None
    conversation: Conversation
    # The message replaced the conversation's metadata, or (below) gave it its title: either
    # way the relay announces the conversation with `conversation.updated`.
    metadata_changed: bool = False
    history: list[ChatTurn] = field(default_factory=list)
    # This first message gave the conversation its title (`Conversation.auto_title`).
    title_changed: bool = False
    # False for a regenerated reply: its user message exists already and is not announced.
    announce_user: bool = True
    # The reply runs in a new conversation (services.edits: a fork), not the socket's.
    forked: bool = False


# The "first line, up to 60 characters": enough to tell conversations apart in the
# list, one line of the sidebar.
AUTO_TITLE_MAX_CHARS = 60
# Explicit bidi embeddings, overrides and isolates: one left open in a title would reorder the
# list around it. The marks (LRM, RLM) are harmless and stay.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Control characters (other than the whitespace collapsed anyway) shown as a space.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _joins_previous(char: str) -> bool:
    """A character that belongs to the one before it (a combining mark, a variation selector,
    an emoji skin tone, a joiner): a cut must not separate them."""
    return (unicodedata.category(char).startswith("M") or char in "\u200d\ufe0e\ufe0f"
            or "\U0001f3fb" <= char <= "\U0001f3ff")


def title_from_message(content: str) -> str:
    """A conversation's title taken from its first message: the first line with text,
    whitespace collapsed, cut on a word boundary at AUTO_TITLE_MAX_CHARS characters with "…"
    when cut; "" when no line has text."""
    text = ""
    for line in content.splitlines():
        text = " ".join(_CONTROLS.sub(" ", _BIDI_CONTROLS.sub("", line)).split())
        # A line of only invisible characters (zero-width spaces, joiners) is no title.
        if any(unicodedata.category(char)[0] in "LNPS" for char in text):
            break
        text = ""
    limit = AUTO_TITLE_MAX_CHARS
    if len(text) <= limit:
        return text
    cut = limit
    if text[cut] != " ":
        space = text.rfind(" ", 0, cut)
        if space >= limit // 2:
            cut = space
        else:
            # One long word: cut inside it, but never between a character and what joins it
            # (an emoji's skin tone or a ZWJ sequence, an accent).
            while cut > 1 and (_joins_previous(text[cut]) or text[cut - 1] == "\u200d"):
                cut -= 1
    return text[:cut].rstrip() + "…"


def _turns(rows: list[tuple[Any, ...]]) -> list[ChatTurn]:
    """Completed turns from (role, content, status) rows, oldest first."""
    turns = []
    for role, content, status in rows:
        if role not in ("user", "assistant", "system"):
            continue
        # Failed or empty assistant replies carry no meaning for the model.
        if role == "assistant" and (not content or status == Message.Status.FAILED):
            continue
        turns.append(ChatTurn(role=role, content=content))
    return turns


class Row(NamedTuple):
    pk: Any
    parent_id: Any
    seq: int
    role: str
    content: str
    status: str
    client_id: str | None
    edited_from: Any


@dataclass
class _Locked:
    """A conversation row-locked for the current transaction, with one read of its messages:
    it gives the idempotency check, the active-run check, the active path (services.branches)
    and its history, and the next position, so the queries per reply stay few whatever the
    conversation's length."""

    conversation: Conversation
    rows: list[Row]  # oldest first
    # Who acts: the author of the messages written (a team's conversation has several people).
    user: Any = None

    @cached_property
    def tree(self) -> Tree:
        return Tree.build((r.pk, r.parent_id, r.seq, r.edited_from) for r in self.rows)

    @cached_property
    def by_pk(self) -> dict[Any, Row]:
        return {r.pk: r for r in self.rows}

    def path(self, leaf: Any = None) -> list[Row]:
        """The active path's rows, or the path ending at `leaf`."""
        ids = self.tree.path(leaf if leaf is not None else self.conversation.active_leaf_id)
        return [self.by_pk[pk] for pk in ids]

    def streaming(self) -> bool:
        return any(r.status == Message.Status.STREAMING for r in self.rows)

    def history(self, leaf: Any = None) -> list[ChatTurn]:
        """The turns of the active path (or of the path ending at `leaf`)."""
        return _turns([(r.role, r.content, r.status) for r in self.path(leaf)])

    def first_message(self) -> bool:
        return not any(r.role == Message.Role.USER for r in self.rows)

    def repeat(self, client_id: str | None) -> Message | None:
        """The message an earlier frame with this client_id created, if any."""
        pk = next((r.pk for r in self.rows if client_id and r.client_id == client_id), None)
        return Message.objects.get(pk=pk) if pk is not None else None

    def start_reply(self, content: str | None, *, parent: Any = _LEAF,
                    client_id: str | None = None,
                    extra: dict[str, Any] | None = None,
                    metadata: dict[str, Any] | None = None,
                    auto_title: str = "") -> tuple[Message | None, Message, bool]:
        """Add the user's message (unless `content` is None: a regenerated reply) and the
        streaming assistant placeholder, in one INSERT, below `parent` (default: the end of the
        active path), make the placeholder the active leaf, and touch the conversation (storing
        `metadata` when it changed, and `auto_title` when given). Returns both rows and whether
        the metadata changed."""
        conversation = self.conversation
        if parent is _LEAF:
            path = self.tree.path(conversation.active_leaf_id)
            parent = path[-1] if path else None
        seq = (max(r.seq for r in self.rows) if self.rows else 0) + 1
        now = timezone.now()
        # The row lock serialises writes to this conversation, so nothing checked under it
        # (client_id, active run) can race in between.
        rows = []
        user_message = None
        if content is not None:
            user_message = Message(
                conversation=conversation, seq=seq, role=Message.Role.USER, parent_id=parent,
                content=content, client_id=client_id, extra=extra or {}, created_at=now,
                author=self.author)
            rows.append(user_message)
            parent, seq = user_message.pk, seq + 1
        assistant = Message(
            conversation=conversation, seq=seq, role=Message.Role.ASSISTANT, parent_id=parent,
            status=Message.Status.STREAMING, created_at=now, heartbeat_at=now,
            client_id=client_id if content is None else None,
            extra=(extra or {}) if content is None else {})
        rows.append(assistant)
        Message.objects.bulk_create(rows)
        fields = ["updated_at", "active_leaf_id"]
        conversation.updated_at = now
        conversation.active_leaf_id = assistant.pk
        metadata_changed = metadata is not None and metadata != conversation.metadata
        if metadata_changed:
            conversation.metadata = metadata
            fields.append("metadata")
        if auto_title:
            conversation.auto_title = auto_title
            fields.append("auto_title")
        conversation.save(update_fields=fields)
        return user_message, assistant, metadata_changed

    @property
    def author(self) -> Any:
        return self.user if getattr(self.user, "is_authenticated", False) else None

    def append(self, role: str, content: str, *, client_id: str | None = None,
               extra: dict[str, Any] | None = None) -> Message:
        """One message that starts no run (an internal note, an assignment event) at the end of
        the active path, which it then ends."""
        path = self.tree.path(self.conversation.active_leaf_id)
        now = timezone.now()
        message = Message.objects.create(
            conversation=self.conversation, role=role, content=content, client_id=client_id,
            extra=extra or {}, author=self.author, created_at=now, completed_at=now,
            parent_id=path[-1] if path else None,
            seq=(max(r.seq for r in self.rows) if self.rows else 0) + 1)
        self.conversation.active_leaf_id = message.pk
        self.conversation.updated_at = now
        self.conversation.save(update_fields=["active_leaf_id", "updated_at"])
        self.rows.append(Row(message.pk, message.parent_id, message.seq, role, content,
                             message.status, client_id, None))
        self.__dict__.pop("tree", None)
        self.__dict__.pop("by_pk", None)
        return message


@contextmanager
def _locked(conversation_id: UUID | str, user: Any, *, checked: bool = True
            ) -> Iterator[_Locked]:
    """The user's conversation inside a transaction, under a row lock that serialises
    concurrent sends and answers to it (PostgreSQL; SQLite serialises writers anyway), so two
    tabs can never start two runs. NotFound for a conversation the user may not open, unless
    `checked` is false (the admin's actions, authorised by the admin's own permissions)."""
    rows_of = Conversation.objects.for_user(user) if checked else Conversation.objects.all()
    with transaction.atomic():
        conversation = (
            rows_of
            # The conversation's row only: a bare FOR UPDATE also locked the joined agent row,
            # so every send to the same agent, in every conversation and process, waited for
            # the one before to commit (measured: p50 200 ms from message.send to the
            # placeholder at 60 conversations on two processes).
            .select_for_update(of=("self",))
            .select_related("agent")
            .annotate(**agent_access_annotations())
            .filter(pk=conversation_id)
            .first()
        )
        if conversation is None:
            raise NotFound(_("No such conversation."))
        rows = [Row(*r) for r in conversation.messages.order_by("seq").values_list(
            "pk", "parent_id", "seq", "role", "content", "status", "client_id",
            "extra__edited_from")]
        yield _Locked(conversation, rows, user)


def _refuse_if_busy(locked: _Locked) -> None:
    """Before any run starts: none running, the agent active and open to the conversation's
    team (services.teams.check_agent)."""
    if locked.streaming():
        raise InvalidInput(
            "run_active",
            _("The agent is still replying; stop it or wait for it to finish."),
            status=409,
        )
    if not locked.conversation.agent.is_active:
        raise InvalidInput(
            "invalid", _("This conversation's agent has been deactivated."), status=422
        )
    check_conversation_agent(locked.conversation)
    if locked.conversation.team_id is not None:
        check_budget(locked.conversation.team)


def accept_user_message(
    conversation_id: UUID | str,
    user: Any,
    *,
    content: Any,
    client_id: Any = None,
    metadata: Any = None,
    attachments: Any = None,
) -> AcceptedMessage:
    """Commit the user's message and the streaming assistant placeholder, before any vendor call.

    `attachments` are ids of files uploaded into this conversation and not sent yet
    (services.attachments); they are linked to the message in the same transaction, read from
    storage and handed to the provider. With attachments the text may be empty.

    Idempotent on `client_id`: a repeat returns the original message and no run. Raises
    `InvalidInput("run_active")` when the conversation already has a streaming reply.

    The first message of a conversation with no title of any kind gives it one
    (`title_from_message`, stored as `auto_title`, which a user or vendor title outranks).
    """
    file_ids = attachments_service.clean_attachment_ids(attachments)
    if file_ids and (content is None or (isinstance(content, str) and not content.strip())):
        content = ""  # a file alone is a message (a screenshot can say it all)
    else:
        content = clean_content(content)
    client_id = clean_client_id(client_id)
    new_metadata = clean_metadata(metadata) if metadata is not None else None
    with _locked(conversation_id, user) as locked:
        conversation = locked.conversation
        if (existing := locked.repeat(client_id)) is not None:
            # Its files went with the original: a repeat is acknowledged, not checked again.
            return AcceptedMessage(existing, None, None, conversation)
        _refuse_if_busy(locked)
        files = attachments_service.claim(conversation, file_ids)
        history = locked.history()
        auto_title = ""
        if (locked.first_message() and not conversation.title
                and not conversation.generated_titles and not conversation.auto_title):
            auto_title = title_from_message(content or (files[0].name if files else ""))
        user_message, assistant, metadata_changed = locked.start_reply(
            content, client_id=client_id, metadata=new_metadata, auto_title=auto_title)
        assert user_message is not None  # content is not None: the user message was made
        attachments_service.link(files, user_message)
        user_message.attachment_rows = files  # type: ignore[attr-defined]
    request = build_run_request(conversation, content, history, attachments=files)
    title_changed = bool(auto_title)
    return AcceptedMessage(
        user_message, assistant, request, conversation, metadata_changed, history,
        title_changed,
    )


def accept_interrupt_answer(
    conversation_id: UUID | str, user: Any, interrupt_id: str, payload: Any
) -> AcceptedMessage:
    """Record the user's answer to a pending interrupt and prepare the run that resumes it.

    The answer is kept as a user message (so reviewers see what was answered), the paused reply
    is closed as completed, and a new streaming reply carries the vendor's continuation.
    """
    answer = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    if len(answer) > CONTENT_MAX_CHARS:
        raise InvalidInput("too_large", _("The answer is too large."), status=413)
    with _locked(conversation_id, user) as locked:
        conversation = locked.conversation
        paused = next(
            (
                m
                for m in conversation.messages.filter(status=Message.Status.AWAITING_INPUT)
                if (m.extra or {}).get("pending_interrupt", {}).get("id") == interrupt_id
            ),
            None,
        )
        if paused is None:
            raise InvalidInput(
                "no_interrupt", _("There is no pending interrupt with that id.")
            )
        _refuse_if_busy(locked)
        paused.status = Message.Status.COMPLETED
        answer_record = {"id": interrupt_id, "payload": payload}
        paused.extra = {**paused.extra, "interrupt_answer": answer_record}
        paused.save(update_fields=["status", "extra"])
        # The paused reply counts in the history whether awaiting input or completed.
        history = locked.history()
        user_message, assistant, _changed = locked.start_reply(
            answer, extra={"answers_interrupt": interrupt_id})
    pending = paused.extra.get("pending_interrupt") or {}
    request = build_run_request(
        conversation,
        answer,
        history,
        resume={
            "interrupt_id": interrupt_id,
            "payload": payload,
            "reason": pending.get("reason", ""),
            "vendor_data": pending.get("vendor_data") or {},
        },
    )
    return AcceptedMessage(user_message, assistant, request, conversation)


def build_run_request(
    conversation: Conversation,
    content: str,
    history: list[ChatTurn],
    resume: dict[str, Any] | None = None,
    attachments: list[Attachment] | None = None,
) -> RunRequest:
    """The provider's request; `attachments` are read from storage here (FilePart bytes)."""
    return RunRequest(
        agent=agent_config(conversation.agent),
        conversation_id=str(conversation.id),
        message=content,
        history=history,
        title=conversation.title,
        external_user_id=conversation.external_user_id,
        metadata=dict(conversation.metadata or {}),
        vendor_conversation_id=conversation.vendor_conversation_id,
        resume=resume,
        attachments=attachments_service.file_parts(attachments or []),
    )


# The running reply ------------------------------------------------------------------------------

# The lease every reply starts with; a fence bumps it (Message.lease).
OWNER_LEASE = 0


def _owned(message_ids: list[str]) -> models.QuerySet[Message]:
    """The replies among `message_ids` still streaming under their owner's lease: every write
    of the process running a reply goes through this filter, so a reply that was reaped or
    canceled elsewhere (a fence) is never written again by its old owner."""
    return Message.objects.filter(pk__in=message_ids, status=Message.Status.STREAMING,
                                  lease=OWNER_LEASE)


def _write_time() -> Any:
    """The heartbeat a flush writes: the time the row is actually written. On PostgreSQL that is
    `clock_timestamp()`, evaluated after any row-lock wait; a time taken before the UPDATE (or
    `now()`, the statement's start) was already stale once a 5 s lock was released, and the
    reaper failed a live reply in the 0.3 s before the next flush (a CI run of test_faults).
    SQLite has no row locks (one writer at a time), so the app's time serves there."""
    if connection.vendor == "postgresql":
        return Func(template="clock_timestamp()", output_field=models.DateTimeField())
    return timezone.now()


def flush_runs(items: list[tuple[str, str]]) -> list[str]:
    """Persist the text so far of every (message_id, content) and prove their process is alive,
    in one statement (the relay's flush timer). Returns the ids that were fenced (no longer
    owned: reaped, canceled elsewhere); their owner must stop. The common case, nothing fenced,
    costs the one UPDATE."""
    ids = [message_id for message_id, _ in items]
    updated = _owned(ids).update(
        content=Case(
            *[When(pk=message_id, then=Value(content)) for message_id, content in items],
            output_field=models.TextField(),
        ),
        heartbeat_at=_write_time(),
    )
    if updated == len(ids):
        return []
    owned = {str(pk) for pk in _owned(ids).values_list("pk", flat=True)}
    return [message_id for message_id in ids if message_id not in owned]


@dataclass
class ToolCallRecord:
    call_id: str
    name: str = ""
    arguments: str = ""
    result: Any = None
    status: str = ToolCall.Status.STARTED
    created_at: Any = None
    completed_at: Any = None

    def parsed_arguments(self) -> Any:
        if not self.arguments:
            return None
        try:
            return json.loads(self.arguments)
        except ValueError:
            return None


@dataclass
class RunOutcome:
    status: str
    content: str
    error_code: str = ""
    error_message: str = ""
    usage: dict[str, Any] | None = None
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ttft_ms: int | None = None
    vendor_conversation_id: str = ""
    generated_titles: dict[str, str] | None = None
    # The reply span's trace id (chatsite/tracing.py), "" when tracing is off.
    trace_id: str = ""

    def tool_call_rows(self, message_id: UUID | str, now: Any) -> list[ToolCall]:
        return [
            ToolCall(
                message_id=message_id,
                index=i,
                call_id=call.call_id,
                name=call.name,
                arguments=call.arguments,
                arguments_json=call.parsed_arguments(),
                result=call.result,
                status=call.status,
                created_at=call.created_at or now,
                completed_at=call.completed_at,
            )
            for i, call in enumerate(self.tool_calls)
        ]


def finish_run(message_id: UUID | str, conversation_id: UUID | str,
               outcome: RunOutcome) -> Any:
    """Write the run's final state in 2-3 queries, whatever the number of deltas; returns the
    completion time, or None when the reply was fenced (reaped or canceled elsewhere: nothing
    is written, the owner must send nothing more). The reply's JSON is built by the relay from
    what it holds in memory."""
    now = timezone.now()
    with transaction.atomic():
        written = _owned([str(message_id)]).update(
            content=outcome.content,
            status=outcome.status,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
            usage=outcome.usage,
            extra=outcome.extra,
            ttft_ms=outcome.ttft_ms,
            trace_id=outcome.trace_id,
            completed_at=now,
            heartbeat_at=None,
        )
        if not written:
            return None
        if outcome.tool_calls:
            ToolCall.objects.bulk_create(outcome.tool_call_rows(message_id, now))
        changes: dict[str, Any] = {"updated_at": now}
        if outcome.vendor_conversation_id:
            changes["vendor_conversation_id"] = outcome.vendor_conversation_id
        if outcome.generated_titles:
            changes["generated_titles"] = outcome.generated_titles
        Conversation.objects.filter(pk=conversation_id).update(**changes)
    # After the transaction: a rule's own query can never break the reply's write.
    queue_rules.reply_finished(
        message_id, conversation_id, outcome.status, outcome.error_code,
        any(call.status == ToolCall.Status.FAILED for call in outcome.tool_calls))
    # reply.completed / reply.failed: queued on commit, sent by the worker, never here.
    webhooks.reply_finished(message_id, conversation_id, outcome.status)
    return now


def set_vendor_conversation_id(conversation_id: UUID | str, vendor_id: str) -> None:
    """Stored as soon as the vendor creates it, so a failed first run does not orphan it."""
    Conversation.objects.filter(pk=conversation_id).update(vendor_conversation_id=vendor_id)


def _orphaned_before() -> datetime:
    """A streaming reply whose heartbeat is older than this has lost its process."""
    return timezone.now() - timedelta(seconds=settings.RELAY_ORPHAN_AFTER)


def is_orphaned(message: Message) -> bool:
    """A reply still `streaming` whose heartbeat is older than RELAY_ORPHAN_AFTER: its process
    has stopped (reap_orphaned_runs' rule, for a message already read)."""
    if message.status != Message.Status.STREAMING:
        return False
    return message.heartbeat_at is not None and message.heartbeat_at < _orphaned_before()


def reap_orphaned_runs(*, all_streaming: bool = False,
                       conversation_id: UUID | str | None = None,
                       alive: Iterable[UUID | str] = ()) -> list[dict[str, Any]]:
    """Mark replies left `streaming` by a dead process as failed (`server_restart`).

    `all_streaming=True` is for a single-process start (`manage.py bootstrap`): nothing can be
    running yet. Otherwise only replies whose heartbeat is older than RELAY_ORPHAN_AFTER are
    reaped; `conversation_id` limits it to one conversation (a socket's handshake). `alive`
    are replies the caller's process is running: never reaped by it, whatever their heartbeat
    (a flush or a final save that the database keeps refusing leaves it stale while the reply
    is alive; another process's reaper still fences a process that really stalled).
    Returns `{"conversation_id", "message"}` for each reaped reply so sockets can be told.
    """
    from conversations.frames import message_json

    rows = Message.objects.streaming()
    if conversation_id is not None:
        rows = rows.filter(conversation_id=conversation_id)
    if alive := list(alive):
        rows = rows.exclude(pk__in=alive)
    if not all_streaming:
        rows = rows.filter(heartbeat_at__lt=_orphaned_before())
    now = timezone.now()
    with transaction.atomic():
        # SKIP LOCKED: a row someone holds a lock on (its owner's write, stuck or slow) is not
        # waited for: a handshake reaps inline, and must never wait on another's lock. It is
        # reaped on a later pass if it is still stale then.
        ids = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True)[:500])
        if not ids:
            return []
        # The same conditions again in the UPDATE: a run that finished, or whose owner flushed
        # (it was only stalled), between the two queries keeps its result. The lease bump
        # fences the old owner out if it comes back (Message.lease).
        rows.filter(pk__in=ids).update(
            status=Message.Status.FAILED,
            error_code=ErrorCode.SERVER_RESTART,
            error_message="The server process running this reply stopped; the text received "
            "before it stopped is kept.",
            completed_at=now,
            heartbeat_at=None,
            lease=models.F("lease") + 1,
        )
    reaped = list(
        Message.objects.filter(pk__in=ids, error_code=ErrorCode.SERVER_RESTART, completed_at=now)
        .prefetch_related("tool_calls")
    )
    logger.warning("marked %d orphaned streaming replies as failed (server_restart)", len(reaped))
    metrics.REAPED_RUNS.inc(len(reaped))
    for m in reaped:
        webhooks.reply_finished(m.pk, m.conversation_id, Message.Status.FAILED)
    return [{"conversation_id": str(m.conversation_id), "message": message_json(m)}
            for m in reaped]


def cancel_orphaned_run(conversation_id: UUID | str, stale_after: float) -> dict[str, Any] | None:
    """A stop for a reply no live process runs (its heartbeat is older than `stale_after`
    seconds, while a live owner flushes every RELAY_FLUSH_INTERVAL): end it now as canceled
    and fence its old owner out, rather than leave the user waiting for the reaper (15-20 s)
    with `run_active` on every new message. Returns the reply's JSON, or None when there is no
    such reply (it is live, or already ended)."""
    from conversations.frames import message_json

    stale = timezone.now() - timedelta(seconds=stale_after)
    rows = Message.objects.streaming().filter(conversation_id=conversation_id,
                                              heartbeat_at__lt=stale)
    message_id = rows.values_list("pk", flat=True).first()
    if message_id is None:
        return None
    if not rows.filter(pk=message_id).update(
        status=Message.Status.CANCELED, completed_at=timezone.now(), heartbeat_at=None,
        lease=models.F("lease") + 1,
    ):
        return None
    return message_json(Message.objects.prefetch_related("tool_calls").get(pk=message_id))
