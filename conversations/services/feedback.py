"""Thumbs up / down with a comment on a finished reply."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from conversations.models import Conversation, Feedback, Message
from conversations.services import queue_rules, webhooks
from conversations.services.errors import InvalidInput, NotFound
from conversations.services.validation import format_count

# A comment is a sentence or a paragraph about one reply; 2,000 characters is plenty.
FEEDBACK_COMMENT_MAX_CHARS = 2_000


def set_feedback(user: Any, message_id: UUID | str, score: Any, comment: Any = "") -> Feedback:
    """Thumbs up (1) / down (-1) with an optional comment on one of the user's assistant replies;
    calling again changes it. Other users' replies are `NotFound`."""
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
            % {"max": format_count(FEEDBACK_COMMENT_MAX_CHARS)},
            field="comment",
        )
    try:
        message = Message.objects.select_related("conversation").get(
            pk=message_id, conversation__in=Conversation.objects.for_user(user),
            role=Message.Role.ASSISTANT
        )
    except (Message.DoesNotExist, ValidationError, ValueError):
        raise NotFound(_("No such reply.")) from None
    if message.status == Message.Status.STREAMING:
        raise InvalidInput("invalid", _("Wait for the reply to finish before rating it."),
                           status=409)
    feedback, created = Feedback.objects.update_or_create(
        message=message, defaults={"author": user, "score": score, "comment": comment}
    )
    if created:
        webhooks.emit("feedback.created", lambda: {
            "feedback_id": feedback.pk,
            "conversation_id": str(message.conversation_id),
            "message_id": str(message.pk),
            "agent": message.conversation.agent.slug,
            "score": feedback.score,
            "comment": feedback.comment,
            "author": webhooks.user_json(user),
        })
    if score == -1:
        queue_rules.thumbs_down(message)
    return feedback


def clear_feedback(user: Any, message_id: UUID | str) -> None:
    deleted, _per_model = Feedback.objects.filter(
        message_id=message_id, message__conversation__in=Conversation.objects.for_user(user)
    ).delete()
    if not deleted and not Message.objects.filter(
        pk=message_id, conversation__in=Conversation.objects.for_user(user)
    ).exists():
        raise NotFound(_("No such reply."))
