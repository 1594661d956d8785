"""Reviewers' writes: a conversation's review status, labels and notes, each stamped with who
reviewed it and when (`reviewed_by`, `reviewed_at`), whichever admin page or action made it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from conversations.models import Conversation, Label
from conversations.services import queue_rules, webhooks
from conversations.services.audit import log_m2m, logged_update

# The fields a reviewer edits; changing any of them stamps the reviewer.
REVIEW_FIELDS = frozenset({"review_status", "labels", "review_notes"})


def _stamp(reviewer: Any) -> dict[str, Any]:
    return {"reviewed_by": reviewer, "reviewed_at": timezone.now()}


def stamp_review(conversation: Conversation, reviewer: Any, changed: Iterable[str]) -> None:
    """Stamp `conversation` (unsaved: the caller saves it) when a review field is in
    `changed`."""
    if REVIEW_FIELDS & set(changed):
        for name, value in _stamp(reviewer).items():
            setattr(conversation, name, value)
    if ("review_status" in changed
            and conversation.review_status == Conversation.ReviewStatus.FLAGGED):
        queue_rules.flagged([conversation.pk])  # on commit, after the caller's save


def set_review_status(
    conversations: QuerySet[Conversation], status: str, reviewer: Any
) -> int:
    """Set the status of every conversation of `conversations`; returns how many. Those that
become flagged go to the queues with that rule (services.queue_rules)."""
    flagging = status == Conversation.ReviewStatus.FLAGGED
    newly = queue_rules.not_yet_flagged(conversations) if flagging else None
    # The same "newly flagged" set for conversation.flagged, read only when someone listens.
    notify = (newly or _not_flagged(conversations)
              if flagging and webhooks.wants("conversation.flagged") else [])
    n = logged_update(Conversation.objects.filter(pk__in=conversations.values("pk")),
                      actor=reviewer, review_status=status, **_stamp(reviewer))
    if newly:
        queue_rules.flagged(newly)
    for pk in notify:
        webhooks.emit("conversation.flagged", {
            "conversation_id": str(pk), "reviewer": webhooks.user_json(reviewer)})
    return n


def _not_flagged(conversations: QuerySet[Conversation]) -> list[Any]:
    return list(conversations.exclude(review_status=Conversation.ReviewStatus.FLAGGED)
                .values_list("pk", flat=True))


def add_label(conversations: QuerySet[Conversation], label: Label, reviewer: Any) -> int:
    """Add `label` to every conversation of `conversations` (those that have it keep it once);
    returns how many."""
    pks = list(conversations.values_list("pk", flat=True))
    through = Conversation.labels.through
    had = set(through.objects.filter(label=label, conversation_id__in=pks)
              .values_list("conversation_id", flat=True))
    through.objects.bulk_create(
        [through(conversation_id=pk, label_id=label.pk) for pk in pks], ignore_conflicts=True,
    )
    # bulk_create sends no m2m_changed: the audit entry is written here, for those that gained it.
    log_m2m(Conversation.objects.filter(pk__in=[pk for pk in pks if pk not in had]),
            "labels", "add", [label], actor=reviewer)
    logged_update(Conversation.objects.filter(pk__in=pks), actor=reviewer, **_stamp(reviewer))
    return len(pks)
