"""Scores against a rubric (`ScoreConfig`): one value per (config, author, target), where the
target is an assistant reply or a whole conversation. Changing a score keeps the earlier value
and comment in its `history`.

Who may score is the surface's check (`may_score` for the API; a claimed queue item for the
reviewer page, services.queues); these functions check the value and the target.
"""

from __future__ import annotations

import math
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import Conversation, Message, Score, ScoreConfig
from conversations.services import webhooks
from conversations.services.errors import InvalidInput, NotFound
from conversations.services.validation import InvalidJSON, check_text, format_count

# A comment explains one score: a paragraph, like a feedback comment (services.feedback).
SCORE_COMMENT_MAX_CHARS = 2_000
# The reviewer group (migration 0003, `manage.py reviewers`).
REVIEWER_GROUP = "reviewer"


def is_reviewer(user: Any) -> bool:
    """A member of the reviewer group with admin access (`manage.py reviewers add`)."""
    return bool(
        user.is_authenticated and user.is_active and user.is_staff
        and user.groups.filter(name=REVIEWER_GROUP).exists()
    )


def manages_reviews(user: Any) -> bool:
    """Staff who manage the review programme (superusers, or staff allowed to change queues):
    they see and claim from every active queue."""
    return bool(
        user.is_authenticated and user.is_active and user.is_staff
        and user.has_perm("conversations.change_reviewqueue")
    )


def may_score(user: Any) -> bool:
    """Reviewers and staff who manage reviews write and read scores over the API."""
    return manages_reviews(user) or is_reviewer(user)


def get_config(ref: Any, *, active: bool = True) -> ScoreConfig:
    """A config by id (an integer) or by name; InvalidInput `invalid` (field `config`)."""
    configs = ScoreConfig.objects.filter(is_active=True) if active else ScoreConfig.objects.all()
    config = None
    if isinstance(ref, ScoreConfig):
        config = configs.filter(pk=ref.pk).first()
    elif isinstance(ref, int) and not isinstance(ref, bool):
        config = configs.filter(pk=ref).first() if 0 < ref < 2**63 else None
    elif isinstance(ref, str) and ref.strip():
        config = configs.filter(name=ref.strip()[:80]).first()
    if config is None:
        raise InvalidInput("invalid", _("No such active score config."), field="config")
    return config


def validate_value(config: ScoreConfig, value: Any) -> Any:
    """The value, checked against the config's kind; InvalidInput `invalid` (field `value`)."""
    if config.kind == ScoreConfig.Kind.NUMERIC:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise InvalidInput("invalid", _("%(config)s needs a number.")
                               % {"config": config.name}, field="value")
        low, high = config.min_value, config.max_value
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidInput(
                "invalid", _("%(config)s must be between %(min)s and %(max)s.") % {
                    "config": config.name,
                    "min": "−∞" if low is None else f"{low:g}",
                    "max": "∞" if high is None else f"{high:g}",
                }, field="value")
        # A whole float (4.0) is stored as 4: the same answer compares equal in agreement.
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if config.kind == ScoreConfig.Kind.CATEGORICAL:
        options = [str(option) for option in config.options or []]
        if not isinstance(value, str) or value not in options:
            raise InvalidInput("invalid", _("%(config)s must be one of: %(options)s.") % {
                "config": config.name, "options": ", ".join(options)}, field="value")
        return value
    if config.kind == ScoreConfig.Kind.BOOLEAN:
        if not isinstance(value, bool):
            raise InvalidInput("invalid", _("%(config)s must be true or false.")
                               % {"config": config.name}, field="value")
        return value
    raise InvalidInput("invalid", _("%(config)s has an unknown kind.") % {"config": config.name},
                       field="config")


def clean_comment(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("comment must be a string."), field="comment")
    value = value.strip()
    try:
        check_text(value)
    except InvalidJSON as exc:
        raise InvalidInput("invalid", exc.message, field="comment") from None
    if len(value) > SCORE_COMMENT_MAX_CHARS:
        raise InvalidInput(
            "invalid", _("The comment must be at most %(max)s characters.")
            % {"max": format_count(SCORE_COMMENT_MAX_CHARS)}, field="comment")
    return value


def _pk(value: Any) -> Any:
    return value.pk if isinstance(value, (Conversation, Message)) else value


def resolve_target(*, message: Any = None, conversation: Any = None
                   ) -> tuple[Conversation, Message | None]:
    """The conversation and (for a reply) the message a score or queue item is about: a
    message must be an assistant reply of that conversation. NotFound for what does not exist
    (reviewers see every conversation: no ownership check here)."""
    if message is None and conversation is None:
        raise InvalidInput("invalid", _("Give message_id or conversation_id."),
                           field="message_id")
    try:
        if message is not None:
            reply = message if isinstance(message, Message) else (
                Message.objects.select_related("conversation").get(pk=message))
            if reply.role != Message.Role.ASSISTANT:
                raise InvalidInput("invalid", _("Only an assistant reply can be scored."),
                                   field="message_id")
            if conversation is not None and str(_pk(conversation)) != str(
                    reply.conversation_id):
                raise InvalidInput("invalid",
                                   _("The reply is not in that conversation."),
                                   field="message_id")
            return reply.conversation, reply
        if isinstance(conversation, Conversation):
            return conversation, None
        return Conversation.objects.get(pk=conversation), None
    except (Message.DoesNotExist, Conversation.DoesNotExist, ValidationError, ValueError,
            TypeError):
        raise NotFound(_("No such reply or conversation.")) from None


def _target_filter(conversation: Conversation, message: Message | None) -> dict[str, Any]:
    if message is None:
        return {"conversation": conversation, "message__isnull": True}
    return {"message": message}


def set_score(user: Any, *, config: ScoreConfig, value: Any, comment: Any = "",
              message: Any = None, conversation: Any = None, source: str = "human") -> Score:
    """Create or change `user`'s score for `config` on the reply `message` (an assistant reply)
    or, without one, on `conversation`. A change keeps the earlier value and comment, with
    when they were set, in `history`."""
    if not isinstance(config, ScoreConfig):
        config = get_config(config)
    elif not config.is_active:
        raise InvalidInput("invalid", _("No such active score config."), field="config")
    value = validate_value(config, value)
    comment = clean_comment(comment)
    if source not in Score.Source.values:
        raise InvalidInput("invalid", _("Unknown score source."), field="source")
    conv, reply = resolve_target(message=message, conversation=conversation)
    lookup = {"config": config, "author": user, **_target_filter(conv, reply)}
    now = timezone.now()
    with transaction.atomic():
        score = Score.objects.select_for_update().filter(**lookup).first()
        if score is None:
            try:
                with transaction.atomic():
                    created = Score.objects.create(
                        config=config, author=user, conversation=conv, message=reply,
                        value=value, comment=comment, source=source, created_at=now,
                        updated_at=now)
                    webhooks.emit("score.created", partial(score_created_data, created))
                    return created
            except IntegrityError:
                # The same author's concurrent first write won: change that one.
                score = Score.objects.select_for_update().get(**lookup)
        if score.value == value and score.comment == comment and score.source == source:
            return score
        score.history = [*score.history, {
            "value": score.value, "comment": score.comment, "at": _iso(score.updated_at)}]
        score.value, score.comment, score.source, score.updated_at = value, comment, source, now
        score.save(update_fields=["value", "comment", "source", "history", "updated_at"])
    return score


def score_created_data(score: Score) -> dict[str, Any]:
    """The `data` of a score.created webhook (docs/webhooks.md)."""
    return {
        "score_id": score.pk,
        "config": {"id": score.config_id, "name": score.config.name, "kind": score.config.kind},
        "value": score.value,
        "comment": score.comment,
        "source": score.source,
        "conversation_id": str(score.conversation_id),
        "message_id": str(score.message_id) if score.message_id else None,
        "author": webhooks.user_json(score.author),
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def scores_for(*, conversation: Any = None, message: Any = None, author: Any = None,
               config: Any = None) -> QuerySet[Score]:
    """Scores, newest change first. `conversation`: every score in it (its replies' and its
    own; add `.filter(message__isnull=True)` for the conversation's own); `message`: that
    reply's. Each argument is an instance or an id; None does not filter."""
    scores = Score.objects.select_related("config", "author")
    if conversation is not None:
        scores = scores.filter(conversation_id=_pk(conversation))
    if message is not None:
        scores = scores.filter(message_id=_pk(message))
    if author is not None:
        scores = scores.filter(author_id=getattr(author, "pk", author))
    if config is not None:
        scores = scores.filter(config_id=getattr(config, "pk", config))
    return scores


def score_json(score: Score) -> dict[str, Any]:
    """A score as the API answers it (docs/openapi.yaml `Score`)."""
    return {
        "id": score.pk,
        "config": {"id": score.config_id, "name": score.config.name},
        "value": score.value,
        "comment": score.comment,
        "conversation_id": str(score.conversation_id),
        "message_id": str(score.message_id) if score.message_id else None,
        "author": score.author.get_username() if score.author else None,
        "source": score.source,
        "history": score.history,
        "created_at": _iso(score.created_at),
        "updated_at": _iso(score.updated_at),
    }


def config_json(config: ScoreConfig) -> dict[str, Any]:
    return {
        "id": config.pk, "name": config.name, "kind": config.kind,
        "description": config.description, "min": config.min_value, "max": config.max_value,
        "options": list(config.options or []),
    }


def parse_uuid(value: Any, field: str) -> UUID:
    try:
        return UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidInput("invalid", _("%(field)s must be a UUID.") % {"field": field},
                           field=field) from None
