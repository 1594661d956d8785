"""Regenerate a reply, edit a message: a new sibling in the tree (services.branches), or, for a
vendor that keeps its own history, a fork.

Both are idempotent by `client_id` and refused with `run_active` while a reply streams, like
`message.send`.

A vendor that keeps the conversation itself (Capabilities.branches_in_place false: Dimedove,
Dynamiq, Loop Health, AG-Kit) cannot be rewound to an earlier point. There the action forks: a
new conversation, linked back by `forked_from`, holding a copy of the path up to the point of
the change, whose vendor conversation is created afresh by the first reply; it is sent the
path as history when the vendor takes history in the request (`fork_primes_history`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import Conversation, Message
from conversations.providers import capabilities as provider_capabilities
from conversations.providers.base import Capabilities
from conversations.services.attachments import message_attachments
from conversations.services.branches import _uuid
from conversations.services.errors import InvalidInput
from conversations.services.runs import (
    AcceptedMessage,
    Row,
    _Locked,
    _locked,
    _refuse_if_busy,
    _turns,
    build_run_request,
)
from conversations.services.validation import clean_client_id, clean_content

# A reply may be regenerated once it has ended; a streaming or paused one is still the vendor's.
REGENERABLE = (Message.Status.COMPLETED, Message.Status.FAILED, Message.Status.CANCELED)


def capabilities(conversation: Conversation) -> Capabilities:
    return provider_capabilities(conversation.agent.provider, conversation.agent.options)


def regenerate_reply(conversation_id: UUID | str, user: Any, *, message_id: Any,
                     client_id: Any = None) -> AcceptedMessage:
    """A new reply to the user message that assistant message `message_id` answered."""
    client_id = clean_client_id(client_id)
    pk = _uuid(message_id)
    with _locked(conversation_id, user) as locked:
        if (repeat := _repeat(locked, client_id)) is not None:
            return repeat
        _refuse_if_busy(locked)
        target = locked.by_pk.get(pk)
        if target is None or target.role != Message.Role.ASSISTANT:
            raise InvalidInput("invalid", _("Only a reply of this conversation can be "
                                            "regenerated."))
        if target.status not in REGENERABLE:
            raise InvalidInput("invalid", _("Only a reply that has ended can be regenerated."))
        question = locked.by_pk.get(locked.tree.parent.get(pk))
        if question is None or question.role != Message.Role.USER:
            raise InvalidInput("invalid", _("This reply answers no message of yours."))
        _refuse_interrupt_answer(question)
        before = locked.tree.parent.get(question.pk)
        extra = {"regenerated_from": str(pk)}
        if not capabilities(locked.conversation).branches_in_place:
            return _fork(locked, before, question.content, client_id, extra)
        history = locked.history(before) if before is not None else []
        _none, assistant, _changed = locked.start_reply(
            None, parent=question.pk, client_id=client_id, extra=extra)
        conversation = locked.conversation
    # The question's files go again with it: the new reply answers the same message.
    request = build_run_request(conversation, question.content, history,
                                attachments=message_attachments(question.pk))
    user_message = Message.objects.get(pk=question.pk)
    return AcceptedMessage(user_message, assistant, request, conversation, history=history,
                           announce_user=False)


def edit_message(conversation_id: UUID | str, user: Any, *, message_id: Any, content: Any,
                 client_id: Any = None) -> AcceptedMessage:
    """A new user message in place of user message `message_id` (its sibling), then a reply."""
    content = clean_content(content)
    client_id = clean_client_id(client_id)
    pk = _uuid(message_id)
    with _locked(conversation_id, user) as locked:
        if (repeat := _repeat(locked, client_id)) is not None:
            return repeat
        _refuse_if_busy(locked)
        target = locked.by_pk.get(pk)
        if target is None or target.role != Message.Role.USER:
            raise InvalidInput("invalid", _("Only a message of yours in this conversation can "
                                            "be edited."))
        _refuse_interrupt_answer(target)
        before = locked.tree.parent.get(pk)
        extra = {"edited_from": str(pk)}
        if not capabilities(locked.conversation).branches_in_place:
            return _fork(locked, before, content, client_id, extra)
        history = locked.history(before) if before is not None else []
        user_message, assistant, _changed = locked.start_reply(
            content, parent=before, client_id=client_id, extra=extra)
        conversation = locked.conversation
    request = build_run_request(conversation, content, history)
    return AcceptedMessage(user_message, assistant, request, conversation, history=history)


def _refuse_interrupt_answer(row: Row) -> None:
    # Resuming an interrupt is the vendor's continuation of a paused run: it cannot be replayed.
    if Message.objects.filter(pk=row.pk, extra__has_key="answers_interrupt").exists():
        raise InvalidInput("invalid", _("An answer to an agent's question cannot be edited or "
                                        "answered again; send a new message instead."))


def _repeat(locked: _Locked, client_id: str | None) -> AcceptedMessage | None:
    """The answer to a repeated frame: the message it created here, or the fork it started."""
    if not client_id:
        return None
    if (existing := locked.repeat(client_id)) is not None:
        return AcceptedMessage(existing, None, None, locked.conversation)
    forked = (Message.objects.filter(conversation__forked_from=locked.conversation,
                                     client_id=client_id)
              .select_related("conversation").first())
    if forked is not None:
        return AcceptedMessage(forked, None, None, forked.conversation, forked=True)
    return None


def _fork(locked: _Locked, before: Any, content: str, client_id: str | None,
          extra: dict[str, Any]) -> AcceptedMessage:
    """A new conversation with a copy of the path up to `before` (inclusive), then `content`
    and a reply to it, whose vendor conversation starts afresh."""
    source = locked.conversation
    path = locked.path(before) if before is not None else []
    now = timezone.now()
    with transaction.atomic():
        fork = Conversation.objects.create(
            owner=source.owner, agent=source.agent, title=source.title,
            generated_titles=source.generated_titles, auto_title=source.auto_title,
            external_user_id=source.external_user_id, metadata=source.metadata,
            team=source.team, assignee=source.assignee, forked_from=source,
            created_at=now, updated_at=now,
        )
        copies = []
        parent = None
        originals = {m.pk: m for m in Message.objects.filter(pk__in=[r.pk for r in path])}
        for seq, row in enumerate(path, start=1):
            original = originals[row.pk]
            copy = Message(
                conversation=fork, seq=seq, parent_id=parent, role=original.role,
                content=original.content,
                # A reply still paused for input is closed: the fork's vendor never asked.
                status=(Message.Status.COMPLETED if original.status
                        == Message.Status.AWAITING_INPUT else original.status),
                error_code=original.error_code, error_message=original.error_message,
                usage=original.usage, extra={**original.extra, "copied_from": str(original.pk)},
                author_id=original.author_id,
                created_at=original.created_at, completed_at=original.completed_at,
                ttft_ms=original.ttft_ms,
            )
            copies.append(copy)
            parent = copy.pk
        Message.objects.bulk_create(copies)
        forked = _Locked(fork, [Row(c.pk, c.parent_id, c.seq, c.role, c.content, c.status,
                                    None, None) for c in copies], locked.user)
        forked.conversation.active_leaf_id = parent
        user_message, assistant, _changed = forked.start_reply(
            content, client_id=client_id, extra={**extra, "forked_from": str(source.pk)})
    history = _turns([(c.role, c.content, c.status) for c in copies])
    if not capabilities(source).fork_primes_history:
        history = []
    request = build_run_request(fork, content, history)
    return AcceptedMessage(user_message, assistant, request, fork, history=history, forked=True)
