"""Use cases shared by the HTML views, the JSON API, the websocket consumer, the relay and admin.

Everything here is synchronous ORM code; async callers wrap it with `database_sync_to_async`.
Input problems raise `InvalidInput` with a stable code, so each surface renders the same error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db import models, transaction
from django.db.models import Case, Max, Value, When
from django.http import Http404
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from conversations import validation
from conversations.events import ErrorCode
from conversations.models import (
    METADATA_MAX_BYTES,
    Agent,
    Conversation,
    Feedback,
    Message,
    ToolCall,
    metadata_size,
)
from conversations.providers.base import (
    AgentConfig,
    ChatTurn,
    RunRequest,
    VendorError,
    error_for_exception,
)

logger = logging.getLogger(__name__)

# 32,000 characters: a long pasted log or document fits; anything bigger is almost certainly a
# mistake and would blow most vendors' context anyway.
CONTENT_MAX_CHARS = 32_000
CLIENT_ID_MAX_CHARS = 64
TITLE_MAX_CHARS = 200
EXTERNAL_USER_ID_MAX_CHARS = 255
# 30 rows fill a sidebar on a large screen; pages stay cheap with the (owner, archived,
# -updated_at) index.
PAGE_SIZE = 30


def _count(value: int) -> str:
    """A count for people, grouped the active language's way (32,000 / 32 000)."""
    return number_format(value, force_grouping=True)


class InvalidInput(Exception):
    """Bad input from a user: `code` is stable (API/websocket), `message` is for people, in the
    active language (the request's, or the websocket user's)."""

    def __init__(
        self, code: str, message: str, *, field: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status

    @property
    def details(self) -> dict[str, Any]:
        return {"field": self.field} if self.field else {}


# Validation ----------------------------------------------------------------------------------


def clean_metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        try:
            value = validation.loads(text)
        except validation.InvalidJSON as exc:
            message = exc.message if exc.syntax is None else (
                _("Metadata is not valid JSON: %(error)s (line %(line)s).")
                % {"error": exc.syntax.msg, "line": exc.syntax.lineno})
            raise InvalidInput("invalid", message, field="metadata") from None
    if not isinstance(value, dict):
        raise InvalidInput("invalid", _("Metadata must be a JSON object."), field="metadata")
    if metadata_size(value) > METADATA_MAX_BYTES:
        raise InvalidInput(
            "too_large",
            _("Metadata must be at most %(size)s KB when serialized.")
            % {"size": METADATA_MAX_BYTES // 1024},
            field="metadata",
            status=413,
        )
    return value


def clean_title(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("Title must be a string."), field="title")
    value = " ".join(value.split())
    if len(value) > TITLE_MAX_CHARS:
        raise InvalidInput(
            "invalid",
            _("Title must be at most %(max)s characters.") % {"max": _count(TITLE_MAX_CHARS)},
            field="title",
        )
    return value


def clean_external_user_id(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(
            "invalid", _("external_user_id must be a string."), field="external_user_id"
        )
    value = value.strip()
    if len(value) > EXTERNAL_USER_ID_MAX_CHARS:
        raise InvalidInput(
            "invalid",
            _("external_user_id must be at most %(max)s characters.")
            % {"max": _count(EXTERNAL_USER_ID_MAX_CHARS)},
            field="external_user_id",
        )
    return value


def clean_content(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("content must be a string."), field="content")
    value = value.strip()
    if not value:
        raise InvalidInput("invalid", _("The message is empty."), field="content")
    if len(value) > CONTENT_MAX_CHARS:
        raise InvalidInput(
            "too_large",
            _("The message is %(count)s characters; the limit is %(max)s.")
            % {"count": _count(len(value)), "max": _count(CONTENT_MAX_CHARS)},
            field="content",
            status=413,
        )
    return value


def clean_client_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > CLIENT_ID_MAX_CHARS:
        raise InvalidInput(
            "invalid",
            _("client_id must be a string of at most %(max)s characters.")
            % {"max": _count(CLIENT_ID_MAX_CHARS)},
            field="client_id",
        )
    return value


# Agents --------------------------------------------------------------------------------------


def resolve_agent(slug: Any) -> Agent:
    if slug in (None, ""):
        agent = Agent.objects.default()
        if agent is None:
            raise InvalidInput(
                "invalid", _("No agent is configured."), field="agent", status=422
            )
        return agent
    if not isinstance(slug, str):
        raise InvalidInput("invalid", _("agent must be an agent slug."), field="agent")
    agent = Agent.objects.active().filter(slug=slug).first()
    if agent is None:
        raise InvalidInput(
            "invalid", _("Unknown agent “%(slug)s”.") % {"slug": slug}, field="agent",
            status=422,
        )
    return agent


def agent_config(agent: Agent) -> AgentConfig:
    return AgentConfig(
        slug=agent.slug,
        provider=agent.provider,
        name=agent.name,
        base_url=agent.base_url,
        token_env=agent.token_env,
        options=dict(agent.options or {}),
    )


def ensure_demo_agent() -> Agent:
    agent, _created = Agent.objects.get_or_create(
        slug="demo",
        defaults={"name": "Demo agent", "provider": "demo", "is_active": True},
    )
    if not Agent.objects.filter(is_default=True).exists():
        agent.is_default = True
        agent.save(update_fields=["is_default"])
    return agent


# Conversations -------------------------------------------------------------------------------


def get_conversation(user: Any, conversation_id: UUID | str) -> Conversation:
    """The user's own conversation, or Http404 (also for other users' conversations)."""
    try:
        return Conversation.objects.for_user(user).select_related("agent").get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValidationError, ValueError):
        raise Http404(_("No such conversation.")) from None


def create_conversation(
    user: Any,
    *,
    agent: Agent | str | None = None,
    title: Any = "",
    external_user_id: Any = "",
    metadata: Any = None,
) -> Conversation:
    agent_obj = agent if isinstance(agent, Agent) else resolve_agent(agent)
    return Conversation.objects.create(
        owner=user,
        agent=agent_obj,
        title=clean_title(title),
        external_user_id=clean_external_user_id(external_user_id),
        metadata=clean_metadata(metadata if metadata is not None else {}),
    )


def list_conversations(
    user: Any,
    *,
    q: str = "",
    archived: bool = False,
    page: Any = 1,
    per_page: int = PAGE_SIZE,
    external_user_id: str = "",
) -> Page:
    qs = Conversation.objects.for_user(user).filter(archived=archived).select_related("agent")
    if external_user_id:
        # "All conversations about this customer".
        qs = qs.filter(external_user_id=external_user_id)
    qs = qs.search(q).order_by("-updated_at", "-pk")
    return Paginator(qs, per_page).get_page(page)


def update_conversation(conversation: Conversation, **changes: Any) -> Conversation:
    fields: list[str] = []
    if "title" in changes:
        conversation.title = clean_title(changes["title"])
        fields.append("title")
    if "metadata" in changes:
        conversation.metadata = clean_metadata(changes["metadata"])
        fields.append("metadata")
    if "external_user_id" in changes:
        conversation.external_user_id = clean_external_user_id(changes["external_user_id"])
        fields.append("external_user_id")
    if "archived" in changes:
        if not isinstance(changes["archived"], bool):
            raise InvalidInput(
                "invalid", _("archived must be true or false."), field="archived"
            )
        conversation.archived = changes["archived"]
        fields.append("archived")
    if fields:
        conversation.updated_at = timezone.now()
        conversation.save(update_fields=[*fields, "updated_at"])
    return conversation


def delete_conversation(conversation: Conversation) -> VendorError | None:
    """Delete locally and at the vendor. The local delete always happens; a vendor failure is
    returned (and logged) so every surface can tell the user, never silently dropped."""
    from asgiref.sync import async_to_sync

    from conversations.relay import notify_deleted

    vendor_error = None
    if conversation.vendor_conversation_id:
        try:
            async_to_sync(_delete_at_vendor)(conversation)
        except Exception as exc:
            vendor_error = error_for_exception(exc)
            logger.warning(
                "vendor delete of conversation %s (%s) failed: %s",
                conversation.pk, conversation.agent.provider, vendor_error.message,
            )
    conversation_id = conversation.pk
    conversation.delete()
    async_to_sync(notify_deleted)(conversation_id)
    return vendor_error


async def _delete_at_vendor(conversation: Conversation) -> None:
    from conversations.providers import get_provider

    provider = get_provider(conversation.agent.provider)
    await provider.delete(
        agent_config(conversation.agent), conversation.vendor_conversation_id
    )


def transcript(conversation: Conversation) -> list[Message]:
    return _with_tool_calls(list(conversation.messages.order_by("seq").select_related(
        "feedback")))


def _with_tool_calls(messages: list[Message]) -> list[Message]:
    """Attach tool calls with one query. prefetch_related builds a queryset per message, which
    was 42% of the time of a 2,000-message chat page (`make bench`)."""
    by_message: dict[Any, list[ToolCall]] = {m.pk: [] for m in messages}
    if messages:
        ids = [m.pk for m in messages if m.role == Message.Role.ASSISTANT]
        for call in ToolCall.objects.filter(message_id__in=ids).order_by("message_id", "index"):
            by_message[call.message_id].append(call)
    for m in messages:
        m.tool_call_rows = by_message[m.pk]  # type: ignore[attr-defined]
    return messages


def recent_messages(conversation: Conversation, limit: int) -> tuple[list[Message], bool]:
    """The latest `limit` messages, oldest first, and whether that is the whole transcript."""
    rows = list(conversation.messages.select_related("feedback").order_by("-seq")[: limit + 1])
    complete = len(rows) <= limit
    return _with_tool_calls(rows[:limit][::-1]), complete


# Runs ----------------------------------------------------------------------------------------


@dataclass
class AcceptedMessage:
    user_message: Message
    # None when the send was a repeat of an earlier client_id (acknowledged, not run again).
    assistant_message: Message | None
    request: RunRequest | None
    conversation: Conversation
    metadata_changed: bool = False
    history: list[ChatTurn] = field(default_factory=list)


def active_run_message(conversation: Conversation) -> Message | None:
    return conversation.messages.filter(status=Message.Status.STREAMING).first()


def _next_seq(conversation: Conversation) -> int:
    top = conversation.messages.aggregate(top=Max("seq"))["top"]
    return (top or 0) + 1


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


def history_for(conversation: Conversation) -> list[ChatTurn]:
    """What the vendor needs to continue the conversation."""
    return _turns(list(conversation.messages.order_by("seq").values_list(
        "role", "content", "status")))


def accept_user_message(
    conversation_id: UUID | str,
    user: Any,
    *,
    content: Any,
    client_id: Any = None,
    metadata: Any = None,
) -> AcceptedMessage:
    """Commit the user's message and the streaming assistant placeholder, before any vendor call.

    Idempotent on `client_id`: a repeat returns the original message and no run. Raises
    `InvalidInput("run_active")` when the conversation already has a streaming reply.
    """
    content = clean_content(content)
    client_id = clean_client_id(client_id)
    new_metadata = clean_metadata(metadata) if metadata is not None else None
    with transaction.atomic():
        # The row lock serialises concurrent sends to one conversation (PostgreSQL; SQLite
        # serialises writers anyway), so two tabs can never start two runs.
        conversation = (
            Conversation.objects.for_user(user)
            .select_for_update()
            .select_related("agent")
            .filter(pk=conversation_id)
            .first()
        )
        if conversation is None:
            raise InvalidInput("not_found", _("No such conversation."), status=404)
        # One read gives the idempotency check, the active-run check, the history and the next
        # position: the queries per reply stay few whatever the conversation's length.
        rows = list(conversation.messages.order_by("seq").values_list(
            "pk", "seq", "role", "content", "status", "client_id"))
        if client_id:
            repeat = next((r[0] for r in rows if r[5] == client_id), None)
            if repeat is not None:
                existing = Message.objects.get(pk=repeat)
                return AcceptedMessage(existing, None, None, conversation)
        if any(r[4] == Message.Status.STREAMING for r in rows):
            raise InvalidInput(
                "run_active",
                _("The agent is still replying; stop it or wait for it to finish."),
                status=409,
            )
        if not conversation.agent.is_active:
            raise InvalidInput(
                "invalid", _("This conversation's agent has been deactivated."), status=422
            )
        history = _turns([(r[2], r[3], r[4]) for r in rows])
        seq = (rows[-1][1] if rows else 0) + 1
        now = timezone.now()
        # The row lock above serialises sends to this conversation, so the client_id checked
        # above cannot race in between: both rows go in one INSERT.
        user_message, assistant = Message.objects.bulk_create([
            Message(conversation=conversation, seq=seq, role=Message.Role.USER,
                    content=content, client_id=client_id, created_at=now),
            Message(conversation=conversation, seq=seq + 1, role=Message.Role.ASSISTANT,
                    status=Message.Status.STREAMING, created_at=now, heartbeat_at=now),
        ])
        fields = ["updated_at"]
        conversation.updated_at = now
        metadata_changed = new_metadata is not None and new_metadata != conversation.metadata
        if metadata_changed:
            conversation.metadata = new_metadata
            fields.append("metadata")
        conversation.save(update_fields=fields)
    request = build_run_request(conversation, content, history)
    return AcceptedMessage(
        user_message, assistant, request, conversation, metadata_changed, history
    )


def build_run_request(
    conversation: Conversation,
    content: str,
    history: list[ChatTurn],
    resume: dict[str, Any] | None = None,
) -> RunRequest:
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
    )


# The lease every reply starts with; a fence bumps it (Message.lease).
OWNER_LEASE = 0


def _owned(message_ids: list[str]) -> models.QuerySet[Message]:
    """The replies among `message_ids` still streaming under their owner's lease: every write
    of the process running a reply goes through this filter, so a reply that was reaped or
    canceled elsewhere (a fence) is never written again by its old owner."""
    return Message.objects.filter(pk__in=message_ids, status=Message.Status.STREAMING,
                                  lease=OWNER_LEASE)


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
        heartbeat_at=timezone.now(),
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
    return now


def set_vendor_conversation_id(conversation_id: UUID | str, vendor_id: str) -> None:
    """Stored as soon as the vendor creates it, so a failed first run does not orphan it."""
    Conversation.objects.filter(pk=conversation_id).update(vendor_conversation_id=vendor_id)


def reap_orphaned_runs(*, all_streaming: bool = False) -> list[dict[str, Any]]:
    """Mark replies left `streaming` by a dead process as failed (`server_restart`).

    `all_streaming=True` is for a single-process start (`manage.py bootstrap`): nothing can be
    running yet. Otherwise only replies whose heartbeat is older than RELAY_ORPHAN_AFTER are
reaped.
    Returns `{"conversation_id", "message"}` for each reaped reply so sockets can be told.
    """
    from conversations.frames import message_json

    rows = Message.objects.streaming()
    if not all_streaming:
        stale = timezone.now() - timedelta(seconds=settings.RELAY_ORPHAN_AFTER)
        rows = rows.filter(heartbeat_at__lt=stale)
    ids = list(rows.values_list("pk", flat=True)[:500])
    if not ids:
        return []
    now = timezone.now()
    # The same conditions again in the UPDATE: a run that finished, or whose owner flushed
    # (it was only stalled), between the two queries keeps its result. The lease bump fences
    # the old owner out if it comes back (Message.lease).
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
    with transaction.atomic():
        conversation = (
            Conversation.objects.for_user(user).select_for_update().select_related("agent")
            .filter(pk=conversation_id).first()
        )
        if conversation is None:
            raise InvalidInput("not_found", _("No such conversation."), status=404)
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
        if active_run_message(conversation) is not None:
            raise InvalidInput("run_active", _("The agent is still replying."), status=409)
        now = timezone.now()
        paused.status = Message.Status.COMPLETED
        answer_record = {"id": interrupt_id, "payload": payload}
        paused.extra = {**paused.extra, "interrupt_answer": answer_record}
        paused.save(update_fields=["status", "extra"])
        history = history_for(conversation)
        seq = _next_seq(conversation)
        user_message = Message.objects.create(
            conversation=conversation, seq=seq, role=Message.Role.USER, content=answer,
            extra={"answers_interrupt": interrupt_id}, created_at=now,
        )
        assistant = Message.objects.create(
            conversation=conversation, seq=seq + 1, role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING, created_at=now, heartbeat_at=now,
        )
        conversation.updated_at = now
        conversation.save(update_fields=["updated_at"])
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



# Feedback ------------------------------------------------------------------------------------

# A comment is a sentence or a paragraph about one reply; 2,000 characters is plenty.
FEEDBACK_COMMENT_MAX_CHARS = 2_000


def set_feedback(user: Any, message_id: UUID | str, score: Any, comment: Any = "") -> Feedback:
    """Thumbs up (1) / down (-1) with an optional comment on one of the user's assistant replies;
    calling again changes it. Other users' replies answer 404."""
    if score not in (1, -1) or isinstance(score, bool):
        raise InvalidInput("invalid", _("score must be 1 (thumbs up) or -1 (thumbs down)."),
                           field="score")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidInput("invalid", _("comment must be a string."), field="comment")
    comment = comment.strip()
    if len(comment) > FEEDBACK_COMMENT_MAX_CHARS:
        raise InvalidInput(
            "invalid",
            _("The comment must be at most %(max)s characters.")
            % {"max": _count(FEEDBACK_COMMENT_MAX_CHARS)},
            field="comment",
        )
    try:
        message = Message.objects.select_related("conversation").get(
            pk=message_id, conversation__owner=user, role=Message.Role.ASSISTANT
        )
    except (Message.DoesNotExist, ValidationError, ValueError):
        raise Http404(_("No such reply.")) from None
    if message.status == Message.Status.STREAMING:
        raise InvalidInput("invalid", _("Wait for the reply to finish before rating it."),
                           status=409)
    feedback, _created = Feedback.objects.update_or_create(
        message=message, defaults={"author": user, "score": score, "comment": comment}
    )
    return feedback


def clear_feedback(user: Any, message_id: UUID | str) -> None:
    deleted, _per_model = Feedback.objects.filter(
        message_id=message_id, message__conversation__owner=user
    ).delete()
    if not deleted and not Message.objects.filter(
        pk=message_id, conversation__owner=user
    ).exists():
        raise Http404(_("No such reply."))
