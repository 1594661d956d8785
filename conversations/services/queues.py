"""Review queues: who may claim from which queue, claiming the next item (never the same item
to two reviewers), completing it with scores, skipping it, and putting targets in a queue
(by hand, or by the rules of services.queue_rules).

A claim lasts REVIEW_CLAIM_MINUTES: after that the item counts as pending again and the next
reviewer to ask gets it. Claiming locks the candidate row with `SELECT … FOR UPDATE SKIP LOCKED`
on PostgreSQL (SQLite serialises writers), and the claiming UPDATE repeats the conditions, so a
row taken meanwhile is never handed out twice.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import Conversation, Message, QueueItem, ReviewQueue
from conversations.services.errors import InvalidInput, NotFound
from conversations.services.scoring import (
    config_json,
    get_config,
    is_reviewer,
    manages_reviews,
    resolve_target,
    set_score,
)

Status = QueueItem.Status
# Why an item is in its queue (QueueItem.reason).
REASONS = ("thumbs_down", "failure", "tool_error", "flagged", "sample", "manual")


@dataclass
class QueueSummary:
    id: int
    name: str
    description: str
    pending: int = 0
    in_progress: int = 0
    done: int = 0
    skipped: int = 0
    # Items done per reviewer (username).
    done_by: dict[str, int] = field(default_factory=dict)


def claim_minutes() -> int:
    return max(1, int(getattr(settings, "REVIEW_CLAIM_MINUTES", 30)))


def _claim_expiry(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(minutes=claim_minutes())


def draw(key: Any, percent: float) -> bool:
    """A deterministic draw: true for about `percent` % of keys (0.01 % steps), the same answer
    every time for the same key, so tests and reruns agree."""
    if percent <= 0:
        return False
    bucket = int(hashlib.sha256(str(key).encode()).hexdigest(), 16) % 10_000
    return bucket < percent * 100


# Ids from a URL or a body: ASCII digits that fit a bigint (9,223,372,036,854,775,807 has 19),
# else NotFound, so no value reaches the database as an overflow.
_ID = re.compile(r"[1-9][0-9]{0,17}")


def _id(value: Any, missing: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise NotFound(missing)
    return int(value)


# Access ---------------------------------------------------------------------------------------


def _claimable_queues(user: Any) -> QuerySet[ReviewQueue]:
    queues = ReviewQueue.objects.filter(is_active=True)
    if not (user.is_authenticated and user.is_active):
        return queues.none()
    if manages_reviews(user):
        return queues
    rule = Q(assignees=user)
    if is_reviewer(user):
        rule |= Q(reviewer_group=True)
    return queues.filter(pk__in=ReviewQueue.objects.filter(rule).values("pk"))


def may_review(user: Any) -> bool:
    """Who may use the reviewer page (/review/): reviewers (`manage.py reviewers add`: the
    group and the staff flag), staff, and anyone a queue is assigned to, as the review API
    already lets them claim; which queues each may claim from is `may_claim`."""
    if not (user.is_authenticated and user.is_active):
        return False
    return bool(user.is_staff or is_reviewer(user) or _claimable_queues(user).exists())


def may_claim(user: Any, queue: ReviewQueue) -> bool:
    """Assignees, the reviewer group when the queue is open to it, and staff who manage
    reviews; only from an active queue."""
    return _claimable_queues(user).filter(pk=queue.pk).exists()


def queues_for(user: Any) -> list[QueueSummary]:
    """The active queues `user` may claim from, with their progress (an expired claim counts
    as pending). Three queries whatever the number of queues."""
    queues = list(_claimable_queues(user).order_by("name"))
    summaries = {q.pk: QueueSummary(q.pk, q.name, q.description) for q in queues}
    if not summaries:
        return []
    expired = Q(status=Status.IN_PROGRESS, claimed_at__lt=_claim_expiry())
    rows = (QueueItem.objects.filter(queue__in=summaries).order_by()
            .values("queue", "status").annotate(n=Count("pk"), stale=Count("pk", filter=expired)))
    for row in rows:
        summary = summaries[row["queue"]]
        if row["status"] == Status.IN_PROGRESS:
            summary.in_progress += row["n"] - row["stale"]
            summary.pending += row["stale"]
        else:
            setattr(summary, row["status"], getattr(summary, row["status"]) + row["n"])
    done = (QueueItem.objects.filter(queue__in=summaries, status=Status.DONE,
                                     completed_by__isnull=False).order_by()
            .values("queue", "completed_by__username").annotate(n=Count("pk")))
    per_queue: dict[int, dict[str, int]] = defaultdict(dict)
    for row in done:
        per_queue[row["queue"]][row["completed_by__username"]] = row["n"]
    for pk, counts in per_queue.items():
        summaries[pk].done_by = dict(sorted(counts.items()))
    return list(summaries.values())


def get_queue(user: Any, queue_id: Any) -> ReviewQueue:
    """An active queue the user may claim from: NotFound when there is none by that id,
    InvalidInput `forbidden` (403) when it is not theirs to claim from."""
    missing = _("No such review queue.")
    try:
        queue = ReviewQueue.objects.get(pk=_id(queue_id, missing), is_active=True)
    except ReviewQueue.DoesNotExist:
        raise NotFound(missing) from None
    if not may_claim(user, queue):
        raise InvalidInput("forbidden", _("You are not an assignee of this review queue."),
                           status=403)
    return queue


# Claiming -------------------------------------------------------------------------------------


def _scored_first_round(user: Any) -> Q:
    """Round-2 items whose round-1 item this user completed: a double review is two people."""
    first = QueueItem.objects.filter(queue=OuterRef("queue"), review_round=1,
                                     completed_by=user)
    reply = Q(message__isnull=False) & Exists(first.filter(message=OuterRef("message")))
    whole = Q(message__isnull=True) & Exists(
        first.filter(message__isnull=True, conversation=OuterRef("conversation")))
    return Q(review_round=2) & (reply | whole)


def _open(queue_id: int, now: datetime) -> Q:
    return Q(queue_id=queue_id) & (
        Q(status=Status.PENDING) | Q(status=Status.IN_PROGRESS, claimed_at__lt=_claim_expiry(now)))


def claim_next(queue_id: Any, user: Any) -> QueueItem | None:
    """The user's unfinished claim in this queue, else the oldest pending item (or one whose
    claim expired), now claimed by the user; None when nothing is left for them."""
    queue = get_queue(user, queue_id)
    now = timezone.now()
    mine = (QueueItem.objects.filter(queue=queue, status=Status.IN_PROGRESS, claimed_by=user,
                                     claimed_at__gte=_claim_expiry(now))
            .order_by("claimed_at", "pk").first())
    if mine is not None:
        return _with_target(mine.pk)
    # A few attempts: on SQLite (no row locks) another process may win the row between the
    # SELECT and the UPDATE; the UPDATE's conditions then match nothing and we look again.
    for _attempt in range(5):
        with transaction.atomic():
            candidates = (QueueItem.objects.filter(_open(queue.pk, now))
                          .exclude(_scored_first_round(user)).order_by("created_at", "pk"))
            pk = (candidates.select_for_update(skip_locked=True, of=("self",))
                  .values_list("pk", flat=True).first())
            if pk is None:
                return None
            taken = QueueItem.objects.filter(_open(queue.pk, now), pk=pk).update(
                status=Status.IN_PROGRESS, claimed_by=user, claimed_at=now)
        if taken:
            return _with_target(pk)
        now = timezone.now()
    return None


def _with_target(pk: Any) -> QueueItem:
    return (QueueItem.objects.select_related("queue", "conversation", "message", "claimed_by")
            .prefetch_related("queue__configs").get(pk=pk))


def item_for(user: Any, item_id: Any) -> QueueItem:
    """An item its claimer (or staff who manage reviews) may open; NotFound otherwise."""
    try:
        item = _with_target(_id(item_id, _("No such review item.")))
    except QueueItem.DoesNotExist:
        raise NotFound(_("No such review item.")) from None
    if item.claimed_by_id != user.pk and not manages_reviews(user):
        raise NotFound(_("No such review item."))
    return item


def _locked_claim(item_id: Any, user: Any) -> QueueItem:
    """The item, locked, when it is `user`'s claim in progress."""
    try:
        item = QueueItem.objects.select_for_update().get(pk=_id(item_id, _("No such review item.")))
    except QueueItem.DoesNotExist:
        raise NotFound(_("No such review item.")) from None
    if item.claimed_by_id != user.pk:
        if manages_reviews(user):
            raise InvalidInput("not_claimed", _("This item is not claimed by you."), status=409)
        raise NotFound(_("No such review item."))
    if item.status != Status.IN_PROGRESS:
        raise InvalidInput("not_claimed",
                           _("This item is already %(status)s.") % {
                               "status": item.get_status_display().lower()}, status=409)
    return item


def _clean_scores(item: QueueItem, scores: Any) -> list[tuple[Any, Any, Any]]:
    if not isinstance(scores, list):
        raise InvalidInput("invalid", _("scores must be a list."), field="scores")
    configs = {c.pk: c for c in item.queue.configs.filter(is_active=True)}
    cleaned: dict[int, tuple[Any, Any, Any]] = {}
    for entry in scores:
        if not isinstance(entry, dict) or not {"config", "value"} <= set(entry) or (
                set(entry) - {"config", "value", "comment"}):
            raise InvalidInput(
                "invalid", _("Each score is {\"config\", \"value\", \"comment\"}."),
                field="scores")
        config = get_config(entry["config"])
        if config.pk not in configs:
            raise InvalidInput("invalid", _("%(config)s is not scored in this queue.")
                               % {"config": config.name}, field="scores")
        if config.pk in cleaned:
            raise InvalidInput("invalid", _("%(config)s is scored twice.")
                               % {"config": config.name}, field="scores")
        cleaned[config.pk] = (config, entry["value"], entry.get("comment", ""))
    missing = [c.name for pk, c in configs.items() if pk not in cleaned]
    if missing:
        raise InvalidInput("invalid", _("Score every config of the queue; missing: %(names)s.")
                           % {"names": ", ".join(sorted(missing))}, field="scores")
    return list(cleaned.values())


def complete(item_id: Any, user: Any, scores: Any) -> QueueItem:
    """Write the user's scores for every config of the item's queue (each {"config": id or
    name, "value", "comment"}) and mark the item done. When the queue's double-review share
    draws it, the target gets a round-2 item for another reviewer."""
    with transaction.atomic():
        item = _locked_claim(item_id, user)
        item.queue = ReviewQueue.objects.get(pk=item.queue_id)
        for config, value, comment in _clean_scores(item, scores):
            set_score(user, config=config, value=value, comment=comment,
                      message=item.message_id, conversation=item.conversation_id)
        item.status, item.completed_by, item.completed_at = Status.DONE, user, timezone.now()
        item.save(update_fields=["status", "completed_by", "completed_at"])
        if item.review_round == 1 and draw(f"double:{item.pk}",
                                           item.queue.double_review_percent):
            _create(item.queue, item.conversation_id, item.message_id, item.reason, 2)
    return _with_target(item.pk)


def skip(item_id: Any, user: Any) -> QueueItem:
    """The user passes on their claimed item: it is skipped, for everyone."""
    with transaction.atomic():
        item = _locked_claim(item_id, user)
        item.status, item.completed_by, item.completed_at = Status.SKIPPED, user, timezone.now()
        item.save(update_fields=["status", "completed_by", "completed_at"])
    return _with_target(item.pk)


# Enqueueing -----------------------------------------------------------------------------------


def _create(queue: ReviewQueue, conversation_id: Any, message_id: Any, reason: str,
            review_round: int = 1) -> QueueItem | None:
    try:
        with transaction.atomic():
            return QueueItem.objects.create(queue=queue, conversation_id=conversation_id,
                                            message_id=message_id, reason=reason,
                                            review_round=review_round)
    except IntegrityError:
        return None  # already there for this round (a unique constraint per target)


def enqueue(queue: ReviewQueue, *, conversation: Any, message: Any = None,
            reason: str) -> QueueItem | None:
    """Put the reply `message` (an assistant reply of `conversation`), or the conversation as
    a whole, in `queue`; None when it is already there (idempotent)."""
    if reason not in REASONS:
        raise InvalidInput("invalid", _("Unknown reason."), field="reason")
    conv, reply = resolve_target(message=message, conversation=conversation)
    return _create(queue, conv.pk, reply.pk if reply else None, reason)


def latest_reply(conversation: Conversation) -> Message | None:
    """A conversation's newest assistant reply that has ended (what "send to queue" sends)."""
    return (Message.objects.filter(conversation=conversation, role=Message.Role.ASSISTANT)
            .exclude(status=Message.Status.STREAMING).order_by("-seq", "-created_at").first())


def send_to_queue(queue: ReviewQueue, conversation: Conversation) -> QueueItem | None:
    """By hand: the conversation's latest assistant reply, or the conversation itself when it
    has none."""
    return enqueue(queue, conversation=conversation, message=latest_reply(conversation),
                   reason="manual")


def item_json(item: QueueItem) -> dict[str, Any]:
    """A queue item as the API answers it (docs/openapi.yaml `QueueItem`)."""
    return {
        "id": item.pk,
        "queue": {"id": item.queue_id, "name": item.queue.name},
        "conversation_id": str(item.conversation_id),
        "message_id": str(item.message_id) if item.message_id else None,
        "reason": item.reason,
        "review_round": item.review_round,
        "status": item.status,
        "claimed_by": item.claimed_by.get_username() if item.claimed_by else None,
        "claimed_at": item.claimed_at.isoformat() if item.claimed_at else None,
        "configs": [config_json(c) for c in item.queue.configs.all() if c.is_active],
    }
