"""A user's conversations: create, list, read, change, delete, and their transcript."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import (
    Agent,
    Attachment,
    Conversation,
    Message,
    Team,
    ToolCall,
    search_snippets,
)
from conversations.providers.base import VendorError, error_for_exception
from conversations.services.agents import agent_config, resolve_agent, vendor_timeouts
from conversations.services.branches import ActivePath, active_path
from conversations.services.errors import InvalidInput, NotFound
from conversations.services.teams import check_agent, resolve_team, user_teams
from conversations.services.validation import (
    clean_external_user_id,
    clean_metadata,
    clean_title,
)

logger = logging.getLogger(__name__)

# 30 rows fill a sidebar on a large screen; pages stay cheap with the (owner, archived,
# -updated_at) index.
PAGE_SIZE = 30

# Sent once the transaction that deleted a conversation commits, with `conversation_id`. The
# relay connects to it (stop the reply, close the sockets with 4404 in every process), so this
# layer never imports the relay: a rolled-back delete tells nobody.
conversation_deleted = Signal()


def get_conversation(user: Any, conversation_id: UUID | str) -> Conversation:
    """The user's own conversation, or NotFound (also for other users' conversations)."""
    try:
        return Conversation.objects.for_user(user).select_related(
            "agent", "team", "assignee").get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValidationError, ValueError):
        raise NotFound(_("No such conversation.")) from None


def may_open(user: Any, conversation_id: UUID | str) -> bool:
    return Conversation.objects.for_user(user).filter(pk=conversation_id).exists()


def load_conversation(conversation_id: UUID | str) -> Conversation:
    """A conversation with no access check: for the relay's announcements, which go only to
    sockets that passed the check when they opened."""
    return Conversation.objects.select_related("agent", "team", "assignee").get(
        pk=conversation_id)


def create_conversation(
    user: Any,
    *,
    agent: Agent | str | None = None,
    title: Any = "",
    external_user_id: Any = "",
    metadata: Any = None,
    team: Any = None,
) -> Conversation:
    """A new conversation of `user`'s, in `team` (a slug of one of their teams; default: their
    default team, none for a user in no team) with an agent that team may use."""
    agent_obj = agent if isinstance(agent, Agent) else resolve_agent(agent)
    team_obj = team if isinstance(team, Team) else resolve_team(user, team)
    check_agent(agent_obj, team_obj)
    return Conversation.objects.create(
        owner=user,
        team=team_obj,
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
    view: str = "",
    team: str = "",
) -> Page:
    """One page of what `user` may see, most recent first, or best match first with `q` (each
    conversation then carries `search_snippet`, a list of (text, is_match) parts, or None).
    `view` narrows it (LIST_VIEWS); a bad view or a team the user is not in is InvalidInput
    (422)."""
    qs = Conversation.objects.for_user(user).filter(archived=archived).select_related(
        "agent", "team", "assignee")
    qs = _in_view(qs, user, view, team)
    if external_user_id:
        # "All conversations about this customer".
        qs = qs.filter(external_user_id=external_user_id)
    if not q.strip():
        page_obj = Paginator(qs.order_by("-updated_at", "-pk"), per_page).get_page(page)
        page_obj.object_list = rows = list(page_obj.object_list)
        snippets = {}
    else:
        # Ranked ids, then the page's rows: ranking needs every match, a page only 30 rows.
        page_obj = Paginator(qs.search_ranking(q), per_page).get_page(page)
        by_pk = {c.pk: c for c in qs.filter(pk__in=page_obj.object_list)}
        page_obj.object_list = rows = [by_pk[pk] for pk in page_obj.object_list if pk in by_pk]
        snippets = search_snippets(rows, q)
    for c in rows:
        c.search_snippet = snippets.get(c.pk)  # type: ignore[attr-defined]
    return page_obj


# The conversation list's views: "" (everything the user may see), their own, assigned to them,
# one team's (`team`, a slug of one of theirs), and their teams' unassigned ones.
LIST_VIEWS = ("", "mine", "assigned", "team", "unassigned")


def _in_view(qs: Any, user: Any, view: str, team: str) -> Any:
    if team and not view:
        view = "team"
    if view not in LIST_VIEWS:
        raise InvalidInput("invalid", _("Unknown view “%(view)s”: use mine, assigned, team or "
                           "unassigned.") % {"view": str(view)[:32]}, field="view", status=422)
    if team and view != "team":
        raise InvalidInput("invalid", _("team only goes with view=team."), field="team",
                           status=422)
    if view == "mine":
        return qs.filter(owner=user)
    if view == "assigned":
        return qs.filter(assignee=user)
    if view == "unassigned":
        return qs.filter(team__in=user_teams(user), assignee=None)
    if view == "team":
        if not team:
            raise InvalidInput("invalid", _("Name the team: view=team needs team=<slug>."),
                               field="team", status=422)
        return qs.filter(team=resolve_team(user, team))
    return qs


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
    with transaction.atomic():
        conversation.delete()
        transaction.on_commit(partial(
            conversation_deleted.send, sender=Conversation, conversation_id=conversation_id))
    return vendor_error


async def _delete_at_vendor(conversation: Conversation) -> None:
    from conversations.providers import get_provider

    provider = get_provider(conversation.agent.provider, vendor_timeouts())
    await provider.delete(
        agent_config(conversation.agent), conversation.vendor_conversation_id
    )


def transcript(conversation: Conversation) -> list[Message]:
    """Every message, every branch, in position order (the API, exports)."""
    return _with_tool_calls(list(conversation.messages.order_by("seq").select_related(
        "feedback", "author")))


def stored_message(message_id: Any) -> Message:
    """One message as the transcript has it (tool calls, files, feedback): the answer to a
    repeated frame."""
    message = Message.objects.select_related("feedback", "author").get(pk=message_id)
    return _with_tool_calls([message])[0]


def path_transcript(conversation: Conversation, leaf: Any = None,
                    limit: int | None = None) -> tuple[list[Message], ActivePath]:
    """The messages of the active path (or of the branch through message `leaf`), oldest first,
    the last `limit` of them when given, with the path itself (services.branches)."""
    path = active_path(conversation, leaf)
    keep = path.ids[-limit:] if limit is not None else path.ids
    by_pk = {m.pk: m for m in conversation.messages.filter(pk__in=keep)
             .select_related("feedback", "author")}
    return _with_tool_calls([by_pk[pk] for pk in keep if pk in by_pk]), path


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
    return _with_attachments(messages)


def _with_attachments(messages: list[Message]) -> list[Message]:
    """Attach user messages' files (`attachment_rows`, read by frames.message_json) with one
    query, as for tool calls."""
    by_message: dict[Any, list[Attachment]] = {m.pk: [] for m in messages}
    ids = [m.pk for m in messages if m.role == Message.Role.USER]
    if ids:
        for attachment in Attachment.objects.filter(message_id__in=ids).order_by("created_at"):
            by_message[attachment.message_id].append(attachment)
    for m in messages:
        m.attachment_rows = by_message[m.pk]  # type: ignore[attr-defined]
    return messages


def recent_messages(conversation: Conversation, limit: int) -> tuple[list[Message], bool]:
    """The latest `limit` messages of the active path, oldest first, and whether that is the
    whole path."""
    messages, path = path_transcript(conversation, limit=limit)
    return messages, len(path.ids) <= limit
