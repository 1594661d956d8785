"""The reviewer page (`/review/`): the queues a reviewer may claim from, then one item at a time
with its transcript, the customer context and the score form (static/review/reviewer.js drives
it from the keyboard). Thin: claiming, scoring and skipping are `services.queues` and
`services.scoring`; labels and the note go through `services.review`."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from conversations import ratelimit, services
from conversations.models import Conversation, Label, QueueItem, ReviewQueue, ScoreConfig
from conversations.review.transcript import pretty_json, transcript_views
from conversations.services import queues, scoring

# A review note is free text, but one form post stays bounded: 10,000 characters is several
# pages of notes.
NOTE_MAX_CHARS = 10_000
# The score fields' names in the form: "score-<config id>" and "comment-<config id>".
SCORE_FIELD = re.compile(r"score-(.{1,100})\Z", re.S)
INTEGER = re.compile(r"[+-]?\d{1,15}\Z")
BOOLEAN_VALUES = {"yes": True, "no": False}


def reviewer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Everyone else gets 404, as for another user's conversation: nobody learns the page
    exists."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not queues.may_review(request.user):
            raise Http404(_("No such page."))
        return view(request, *args, **kwargs)

    return login_required(wrapper)


# The queues ----------------------------------------------------------------------------------


@require_GET
@reviewer_required
def queue_list(request: HttpRequest) -> HttpResponse:
    summaries = []
    for summary in queues.queues_for(request.user):
        total = summary.pending + summary.in_progress + summary.done + summary.skipped
        summaries.append({
            "queue": summary,
            "total": total,
            "finished": summary.done + summary.skipped,
            "done_by": sorted(summary.done_by.items(), key=lambda kv: (-kv[1], kv[0])),
        })
    return render(request, "review/reviewer_queues.html", {"summaries": summaries})


@require_POST
@reviewer_required
@ratelimit.limit_form_writes
def queue_start(request: HttpRequest, queue_id: int) -> HttpResponse:
    queue = ReviewQueue.objects.filter(pk=queue_id, is_active=True).first()
    if queue is None or not queues.may_claim(request.user, queue):
        raise Http404(_("No such queue."))
    return _next_item(request, queue)


def _next_item(request: HttpRequest, queue: ReviewQueue) -> HttpResponse:
    """The user's next item of `queue`, or the queue list saying there is nothing left."""
    try:
        item = queues.claim_next(queue.pk, request.user)
    except (services.InvalidInput, services.NotFound) as exc:
        messages.error(request, exc.message)
        return redirect("reviewer_queues")
    if item is None:
        messages.success(request, _("Queue “%(queue)s” is done: nothing is pending.")
                         % {"queue": queue.name})
        return redirect("reviewer_queues")
    return redirect("reviewer_item", item_id=item.pk)


# One item ------------------------------------------------------------------------------------


def _number(raw: str) -> Any:
    """The typed number, or the text itself for scoring.validate_value to refuse clearly."""
    text = raw.strip()
    if INTEGER.match(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw


def _value(config: ScoreConfig | None, raw: str | None) -> Any:
    """A posted value as the service takes it; None when nothing was chosen."""
    if raw is None or raw.strip() == "":
        return None
    if config is not None and config.kind == ScoreConfig.Kind.NUMERIC:
        return _number(raw)
    if config is not None and config.kind == ScoreConfig.Kind.BOOLEAN:
        return BOOLEAN_VALUES.get(raw, raw)
    return raw


def _as_config_ref(key: str) -> int | str:
    return int(key) if key.isdigit() and len(key) < 12 else key


def _scores_posted(post: QueryDict, configs: list[ScoreConfig]) -> list[dict[str, Any]]:
    """Every score the form posted (a field for a config outside the queue too: the service
    refuses it), each queue config's even when left empty (the service says it is needed)."""
    by_ref = {str(c.pk): c for c in configs}
    refs = [str(c.pk) for c in configs]
    refs += [m.group(1) for key in post if (m := SCORE_FIELD.match(key))
             and m.group(1) not in by_ref]
    return [{"config": by_ref[ref].pk if ref in by_ref else _as_config_ref(ref),
             "value": _value(by_ref.get(ref), post.get(f"score-{ref}")),
             "comment": post.get(f"comment-{ref}", "")}
            for ref in refs]


def _field_errors(scores: list[dict[str, Any]], configs: list[ScoreConfig]
                  ) -> dict[int, str]:
    """Each queue config's problem, so the form shows them all at once beside their fields."""
    errors: dict[int, str] = {}
    by_pk = {c.pk: c for c in configs}
    for score in scores:
        config = by_pk.get(score["config"])  # type: ignore[call-overload]
        if config is None:
            continue
        if score["value"] is None:
            errors[config.pk] = _("A value is needed.")
            continue
        try:
            scoring.validate_value(config, score["value"])
            scoring.clean_comment(score["comment"])
        except services.InvalidInput as exc:
            errors[config.pk] = exc.message
    return errors


def _fields(configs: list[ScoreConfig], typed: dict[str, dict[str, Any]],
            errors: dict[int, str]) -> list[dict[str, Any]]:
    """What the template shows per config: the value and comment (typed, or the reviewer's
    stored score), the choices with their digit, the error."""
    fields = []
    for config in configs:
        current = typed.get(str(config.pk), {})
        value = current.get("value")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if config.kind == ScoreConfig.Kind.BOOLEAN:
            value = {True: "yes", False: "no"}.get(value, value)  # type: ignore[call-overload]
            choices = [("yes", _("Yes")), ("no", _("No"))]
        elif config.kind == ScoreConfig.Kind.CATEGORICAL:
            choices = [(str(o), str(o)) for o in (config.options or [])]
        else:
            choices = []
        fields.append({
            "config": config,
            "value": "" if value is None else str(value),
            "comment": current.get("comment", ""),
            # Digits 1..9 pick the n-th choice (static/review/reviewer.js).
            "choices": [{"value": v, "label": label, "key": i + 1 if i < 9 else None}
                        for i, (v, label) in enumerate(choices)],
            "error": errors.get(config.pk, ""),
        })
    return fields


def _stored(item: QueueItem, user: Any) -> dict[str, dict[str, Any]]:
    """The reviewer's own earlier scores on this target (never another reviewer's: a double
    review is blind)."""
    found = scoring.scores_for(conversation=item.conversation, message=item.message,
                               author=user)
    return {str(s.config_id): {"value": s.value, "comment": s.comment}
            for s in found if s.message_id == item.message_id}


def _typed(post: QueryDict, configs: list[ScoreConfig]) -> dict[str, dict[str, Any]]:
    return {str(c.pk): {"value": post.get(f"score-{c.pk}", ""),
                        "comment": post.get(f"comment-{c.pk}", "")} for c in configs}


def _clean_review(post: QueryDict, conversation: Conversation
                  ) -> tuple[Label | None, str | None, dict[str, str]]:
    """The label to add (None: none) and the note (None: unchanged), or their errors."""
    errors: dict[str, str] = {}
    label = None
    raw = post.get("label", "").strip()
    if raw:
        label = Label.objects.filter(pk=int(raw)).first() if raw.isdigit() and len(raw) < 12 \
            else None
        if label is None:
            errors["label"] = _("Choose a label from the list.")
    note = post.get("note")
    if note is not None:
        note = note.replace("\r\n", "\n")
        if len(note) > NOTE_MAX_CHARS:
            errors["note"] = _("Keep the note under %(n)s characters.") % {"n": NOTE_MAX_CHARS}
        elif note == conversation.review_notes:
            note = None
    return label, note, errors


def _save_review(conversation: Conversation, user: Any, label: Label | None,
                 note: str | None) -> None:
    one = Conversation.objects.filter(pk=conversation.pk)
    if label is not None:
        services.add_label(one, label, user)
    if note is not None:
        conversation.review_notes = note
        services.stamp_review(conversation, user, ["review_notes"])
        conversation.save(update_fields=["review_notes", "reviewed_by", "reviewed_at"])


def _item(request: HttpRequest, item_id: int) -> QueueItem:
    try:
        return queues.item_for(request.user, item_id)
    except services.NotFound as exc:
        raise Http404(exc.message) from None


@require_http_methods(["GET", "POST"])
@reviewer_required
@ratelimit.limit_form_writes
def item_page(request: HttpRequest, item_id: int) -> HttpResponse:
    item = _item(request, item_id)
    queue = item.queue
    # The configs services.queues.complete asks for: the queue's active ones.
    configs = [c for c in queue.configs.all() if c.is_active]
    if request.method == "GET":
        services.audit.record_transcript_view(request, item.conversation, "review")
        return _render_item(request, item, configs, _stored(item, request.user))

    action = request.POST.get("action", "save")
    if action == "skip":
        try:
            queues.skip(item.pk, request.user)
        except services.InvalidInput as exc:
            return _render_item(request, item, configs, _typed(request.POST, configs),
                                error=exc.message, status=exc.status)
        except services.NotFound as exc:
            raise Http404(exc.message) from None
        return _next_item(request, queue)
    typed = _typed(request.POST, configs)
    if action != "save":
        return _render_item(request, item, configs, typed,
                            error=_("Unknown action."), status=400)

    scores = _scores_posted(request.POST, configs)
    field_errors = _field_errors(scores, configs)
    label, note, review_errors = _clean_review(request.POST, item.conversation)
    if field_errors or review_errors:
        return _render_item(request, item, configs, typed, field_errors=field_errors,
                            review_errors=review_errors,
                            error=_("Nothing was saved: correct the fields marked below."),
                            status=400)
    try:
        with transaction.atomic():
            queues.complete(item.pk, request.user, scores)
            _save_review(item.conversation, request.user, label, note)
    except services.InvalidInput as exc:
        return _render_item(request, item, configs, typed,
                            error=_("Nothing was saved: %(reason)s") % {"reason": exc.message},
                            status=exc.status)
    except services.NotFound as exc:
        raise Http404(exc.message) from None
    return _next_item(request, queue)


def _render_item(request: HttpRequest, item: QueueItem, configs: list[ScoreConfig],
                 typed: dict[str, dict[str, Any]], *, error: str = "",
                 field_errors: dict[int, str] | None = None,
                 review_errors: dict[str, str] | None = None,
                 status: int = 200) -> HttpResponse:
    conversation = item.conversation
    post = request.POST if request.method == "POST" else None
    labels = list(conversation.labels.all())
    context = {
        "item": item,
        "queue": item.queue,
        "conversation": conversation,
        # The branch through the reply under review, unless the reviewer picked another.
        "transcript": transcript_views(conversation,
                                       request.GET.get("branch") or item.message_id),
        "highlight": f"msg-{item.message_id}" if item.message_id else "",
        "metadata": pretty_json(conversation.metadata) if conversation.metadata else "",
        "fields": _fields(configs, typed, field_errors or {}),
        "labels": labels,
        "label_choices": Label.objects.exclude(pk__in=[lb.pk for lb in labels]),
        "chosen_label": post.get("label", "") if post is not None else "",
        "note": post.get("note", conversation.review_notes) if post is not None
        else conversation.review_notes,
        "error": error,
        "review_errors": review_errors or {},
        "can_open_admin": request.user.has_perm("conversations.view_conversation"),
        "item_url": reverse("reviewer_item", args=[item.pk]),
    }
    return render(request, "review/reviewer_item.html", context, status=status)
