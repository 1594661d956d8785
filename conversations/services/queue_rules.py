"""Rules that fill review queues as things happen: a thumbs-down (services.feedback), a failed
reply and a tool call that failed, a sample of completed replies (services.runs.finish_run),
a conversation flagged (services.review).

Each hook decides from the active queues' rules, cached in the process for RULES_TTL seconds
(one query per process per window; nothing more when no queue has a rule), and enqueues on
commit. A rule never fails what triggered it: its error is logged once and dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from functools import partial
from typing import Any, NamedTuple

from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.signals import m2m_changed, post_delete, post_save

from conversations.models import Conversation, Message, ReviewQueue

logger = logging.getLogger(__name__)

# 5 s: a queue changed in the admin applies everywhere within 5 s (this process at once),
# while a busy process still reads the rules once per 5 s, not once per reply.
RULES_TTL = 5.0


class Rule(NamedTuple):
    queue_id: int
    on_thumbs_down: bool
    on_failure: bool
    failure_codes: tuple[str, ...]
    on_tool_error: bool
    on_flagged: bool
    sample_percent: float


_lock = threading.Lock()
_cache: tuple[float, tuple[Rule, ...]] | None = None


def rules() -> tuple[Rule, ...]:
    """The active queues that have a rule, cached for RULES_TTL seconds."""
    global _cache
    cached = _cache
    if cached is not None and time.monotonic() - cached[0] < RULES_TTL:
        return cached[1]
    rows = ReviewQueue.objects.filter(is_active=True).filter(
        Q(on_thumbs_down=True) | Q(on_failure=True) | Q(on_tool_error=True)
        | Q(on_flagged=True) | Q(sample_percent__gt=0)
    ).values_list("pk", "on_thumbs_down", "on_failure", "failure_codes", "on_tool_error",
                  "on_flagged", "sample_percent")
    found = tuple(
        Rule(pk, down, failure, tuple(str(c) for c in codes or []) if isinstance(codes, list)
             else (), tool, flagged, float(sample or 0))
        for pk, down, failure, codes, tool, flagged, sample in rows
    )
    with _lock:
        _cache = (time.monotonic(), found)
    return found


def forget_rules(**_kwargs: Any) -> None:
    """A queue changed: the next hook reads the rules again (this process; others within
    RULES_TTL)."""
    global _cache
    with _lock:
        _cache = None


post_save.connect(forget_rules, sender=ReviewQueue, dispatch_uid="queue_rules_save")
post_delete.connect(forget_rules, sender=ReviewQueue, dispatch_uid="queue_rules_delete")
m2m_changed.connect(forget_rules, sender=ReviewQueue.configs.through,
                    dispatch_uid="queue_rules_configs")


def _enqueue(conversation_id: Any, message_id: Any, matches: list[tuple[int, str]]) -> None:
    from conversations.services.queues import _create

    try:
        for queue_id, reason in matches:
            _create(ReviewQueue(pk=queue_id), conversation_id, message_id, reason)
    except Exception as exc:  # noqa: BLE001 - a rule never fails what triggered it
        logger.warning("review queue rule failed for conversation %s: %s: %s",
                       conversation_id, type(exc).__name__, exc)


def _later(conversation_id: Any, message_id: Any, matches: list[tuple[int, str]]) -> None:
    if matches:
        transaction.on_commit(partial(_enqueue, conversation_id, message_id, matches))


def _safely(hook: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return hook(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - e.g. the rules' query failed
            logger.warning("review queue rules skipped: %s: %s", type(exc).__name__, exc)
            return None
    run.__doc__ = hook.__doc__
    return run


@_safely
def reply_finished(message_id: Any, conversation_id: Any, status: str, error_code: str,
                   tool_failed: bool) -> None:
    """A reply ended (finish_run): a failure (matching the queue's codes, if any), a tool call
    that failed, or the sample's draw of a completed reply (from the reply's id)."""
    from conversations.services.queues import draw

    matches = []
    for rule in rules():
        if (status == Message.Status.FAILED and rule.on_failure
                and (not rule.failure_codes or error_code in rule.failure_codes)):
            matches.append((rule.queue_id, "failure"))
        elif tool_failed and rule.on_tool_error:
            matches.append((rule.queue_id, "tool_error"))
        elif (status == Message.Status.COMPLETED and rule.sample_percent > 0
              and draw(message_id, rule.sample_percent)):
            matches.append((rule.queue_id, "sample"))
    _later(conversation_id, message_id, matches)


@_safely
def thumbs_down(message: Message) -> None:
    """The reply got a thumbs-down (services.feedback)."""
    matches = [(r.queue_id, "thumbs_down") for r in rules() if r.on_thumbs_down]
    _later(message.conversation_id, message.pk, matches)


def _flag_queues() -> list[int]:
    return [r.queue_id for r in rules() if r.on_flagged]


@_safely
def not_yet_flagged(conversations: QuerySet[Conversation]) -> list[Any]:
    """Before a bulk flag: which of `conversations` are not flagged yet (no query when no
    queue has the rule)."""
    if not _flag_queues():
        return []
    return list(conversations.exclude(review_status=Conversation.ReviewStatus.FLAGGED)
                .values_list("pk", flat=True))


@_safely
def flagged(conversation_ids: Iterable[Any]) -> None:
    """Conversations became flagged: each goes, as a whole, to the queues with the rule."""
    queue_ids = _flag_queues()
    for conversation_id in conversation_ids if queue_ids else ():
        _later(conversation_id, None, [(q, "flagged") for q in queue_ids])
