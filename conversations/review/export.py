"""Conversation exports for reviewers: CSV (one row per message) and JSONL (one conversation per
line), streamed so a large export never sits in memory.

Shared by the admin's export actions and `GET /api/v1/conversations/export` (views.py). The
generators read conversations in chunks with `.iterator(chunk_size=...)`; Django prefetches the
labels, messages, feedback, tool calls and scores of each chunk, so the number of queries grows
with the number of chunks, never with the number of conversations or messages.

Review scores (docs/review.md): the JSONL gives every score in full, on its message and on the
conversation; the CSV adds, per active score config, `score:<name>` (the row's message) and
`conversation_score:<name>` (the conversation's own, repeated on each of its rows), holding the
mean of the authors' values for a numeric config and the first score's value otherwise.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpRequest, QueryDict, StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

from conversations.frames import message_json
from conversations.models import (
    Agent,
    Conversation,
    Label,
    Message,
    QueueItem,
    ReviewQueue,
    Score,
    ScoreConfig,
)
from conversations.services import InvalidInput, audit
from conversations.services.scoring import validate_value

logger = logging.getLogger(__name__)

# 100 conversations per chunk: six queries fetch a chunk (conversations, labels, messages with
# their feedback, tool calls, scores), and a chunk of long transcripts stays a few MB in memory.
EXPORT_CHUNK_SIZE = 100
# Lines handed to the ASGI server per thread hop: one hop per line would spend more time
# switching threads than writing.
ASYNC_BATCH_LINES = 50

CSV_COLUMNS = [
    "conversation_id", "title", "owner", "agent", "external_user_id", "review_status", "labels",
    "message_id", "seq", "role", "status", "content", "error_code", "created_at",
    "completed_at", "ttft_ms", "trace_id", "feedback_score", "feedback_comment", "tool_calls",
]
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection");
# tab and carriage return are on the list because some spreadsheets strip them first.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_FILTERS = frozenset({
    "agent", "owner", "review_status", "label", "since", "until", "external_user_id", "q",
    "queue", "score_config", "score_value",
})
# A queue id above this is no row's (and past SQLite's 64-bit integers).
MAX_ID = 2**63 - 1
# score_value for a numeric config: a plain decimal number ("4", "-0.5", "1e2"), not Python's
# wider float() syntax ("nan", "inf", "4_0").
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
TRUE_WORDS, FALSE_WORDS = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


# Filtering -------------------------------------------------------------------------------


def _day_bound(value: str, name: str, *, end: bool) -> datetime:
    """`since`/`until`: a date (the whole day, in the site's time zone) or an ISO datetime."""
    # The date first: parse_datetime would read "2025-01-31" as midnight, losing "whole day".
    try:
        day = parse_date(value)
        moment = None if day else parse_datetime(value)
    except ValueError:
        moment = day = None
    try:
        if moment is not None:
            moment = moment if timezone.is_aware(moment) else timezone.make_aware(moment)
        elif day is not None:
            if end:
                day += timedelta(days=1)
            moment = timezone.make_aware(datetime.combine(day, time.min))
        if moment is not None:
            # Compared in UTC by the database: 9999-12-31T23:59:59-14:00 is past year 9999
            # there, and failed mid-stream, after the headers were sent.
            moment.astimezone(UTC)
            return moment
    except (OverflowError, ValueError):
        pass
    raise InvalidInput(
        "invalid", _("%(name)s must be a date such as 2025-01-31 or an ISO datetime.")
        % {"name": name}, field=name, status=422,
    )


def filter_conversations(params: QueryDict | dict[str, str]) -> QuerySet[Conversation]:
    """The export API's filters; an unknown parameter or value is refused (InvalidInput, 422)
    rather than ignored, so a typo never exports everything."""
    unknown = sorted(set(params) - EXPORT_FILTERS - {"format"})
    if unknown:
        raise InvalidInput(
            "invalid", _("Unknown filter(s): %(names)s.") % {"names": ", ".join(unknown)},
            field=unknown[0], status=422,
        )
    qs = Conversation.objects.all()
    value = (params.get("agent") or "").strip()
    if value:
        agent = Agent.objects.filter(slug=value).first()
        if agent is None:
            raise InvalidInput("invalid", _('Unknown agent "%(slug)s".') % {"slug": value},
                               field="agent", status=422)
        qs = qs.filter(agent=agent)
    value = (params.get("owner") or "").strip()
    if value:
        user_model = get_user_model()
        owner = user_model.objects.filter(**{user_model.USERNAME_FIELD: value}).first()
        if owner is None:
            raise InvalidInput("invalid", _('Unknown owner "%(name)s".') % {"name": value},
                               field="owner", status=422)
        qs = qs.filter(owner=owner)
    value = (params.get("review_status") or "").strip()
    if value:
        if value not in Conversation.ReviewStatus.values:
            raise InvalidInput(
                "invalid", _("review_status must be one of: %(choices)s.")
                % {"choices": ", ".join(Conversation.ReviewStatus.values)},
                field="review_status", status=422,
            )
        qs = qs.filter(review_status=value)
    value = (params.get("label") or "").strip()
    if value:
        label = Label.objects.filter(name__iexact=value).first()
        if label is None:
            raise InvalidInput("invalid", _('Unknown label "%(name)s".') % {"name": value},
                               field="label", status=422)
        qs = qs.filter(labels=label)
    since = until = None
    if params.get("since"):
        since = _day_bound(params["since"].strip(), "since", end=False)
        qs = qs.filter(created_at__gte=since)
    if params.get("until"):
        until = _day_bound(params["until"].strip(), "until", end=True)
        qs = qs.filter(created_at__lt=until)
    if since and until and since >= until:
        raise InvalidInput("invalid", _("since must be before until."), field="since",
                           status=422)
    value = (params.get("external_user_id") or "").strip()
    if value:
        qs = qs.filter(external_user_id=value)
    value = (params.get("queue") or "").strip()
    if value:
        queue = _queue(value)
        qs = qs.filter(pk__in=QueueItem.objects.filter(queue=queue).values("conversation_id"))
    qs = _score_filter(qs, (params.get("score_config") or "").strip(),
                       (params.get("score_value") or "").strip())
    q = (params.get("q") or "")[:200]
    return qs.search(q, everywhere=True)


def _queue(value: str) -> ReviewQueue:
    """`queue`: an id, else a name."""
    queue = None
    if value.isascii() and value.isdigit() and int(value) <= MAX_ID:
        queue = ReviewQueue.objects.filter(pk=int(value)).first()
    queue = queue or ReviewQueue.objects.filter(name=value).first()
    if queue is None:
        raise InvalidInput("invalid", _('Unknown queue "%(name)s".') % {"name": value},
                           field="queue", status=422)
    return queue


def _score_filter(qs: QuerySet[Conversation], name: str, raw: str) -> QuerySet[Conversation]:
    """`score_config` (a config's name): conversations with a score for it, on a reply or on
    the conversation; with `score_value`, a score of that value."""
    if not name:
        if raw:
            raise InvalidInput("invalid", _("score_value needs score_config."),
                               field="score_value", status=422)
        return qs
    config = ScoreConfig.objects.filter(name=name).first()
    if config is None:
        raise InvalidInput("invalid", _('Unknown score config "%(name)s".') % {"name": name},
                           field="score_config", status=422)
    scores = Score.objects.filter(config=config)
    if raw:
        value = _score_value(config, raw)
        if (isinstance(value, int | float) and not isinstance(value, bool)
                and abs(value) < 2**53 and value == int(value)):
            # 4 and 4.0 are the same answer, whichever way the JSON holds it (below 2^53,
            # where floats still hold every integer).
            scores = scores.filter(Q(value=int(value)) | Q(value=float(value)))
        else:
            scores = scores.filter(value=value)
    return qs.filter(pk__in=scores.values("conversation_id"))


def _score_value(config: ScoreConfig, raw: str) -> Any:
    """`score_value` as the config's kind reads it: a number, true/false, or an option."""
    value: Any = raw
    if config.kind == ScoreConfig.Kind.NUMERIC:
        value = float(raw) if NUMBER.fullmatch(raw) else None
    elif config.kind == ScoreConfig.Kind.BOOLEAN:
        word = raw.lower()
        value = True if word in TRUE_WORDS else False if word in FALSE_WORDS else None
    if value is None:
        message = (_("%(config)s needs a number.") if config.kind == ScoreConfig.Kind.NUMERIC
                   else _("%(config)s must be true or false.")) % {"config": config.name}
        raise InvalidInput("invalid", message, field="score_value", status=422)
    try:
        # The kind's own checks: the range ("1e999" is infinity, not a number), the options.
        return validate_value(config, value)
    except InvalidInput as exc:
        raise InvalidInput("invalid", exc.message, field="score_value", status=422) from None


# Generators ----------------------------------------------------------------------------------


def _for_export(conversations: QuerySet[Conversation]) -> Iterator[Conversation]:
    # Re-selected by primary key: the admin hands over its changelist queryset, whose count
    # annotations would otherwise be computed again for every exported row.
    messages = Message.objects.order_by("seq").select_related("feedback").prefetch_related(
        "tool_calls"
    )
    qs = (
        Conversation.objects.filter(pk__in=conversations.values("pk"))
        .select_related("owner", "agent", "reviewed_by")
        .prefetch_related(
            "labels", Prefetch("messages", queryset=messages),
            # Every score of the conversation, its replies' and its own: one query per chunk.
            Prefetch("scores", queryset=Score.objects.select_related("config", "author")
                     .order_by("created_at", "pk"), to_attr="export_scores"),
        )
        .order_by("created_at", "pk")
    )
    return qs.iterator(chunk_size=EXPORT_CHUNK_SIZE)


def csv_safe(value: Any) -> Any:
    """Neutralize spreadsheet formulas: text starting with = + - @ gets a leading quote.
    Numbers are left alone (a -1 feedback score stays a number)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class _Echo:
    """csv.writer wants a file; this one hands each formatted row back instead."""

    def write(self, value: str) -> str:
        return value


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _username(user: Any) -> str:
    return user.get_username() if user is not None else ""


def _scores(conversation: Conversation) -> list[Score]:
    """Oldest first; prefetched by _for_export."""
    if hasattr(conversation, "export_scores"):
        return conversation.export_scores
    return list(conversation.scores.select_related("config", "author").order_by("created_at",
                                                                                 "pk"))


def score_record(score: Score) -> dict[str, Any]:
    return {
        "config": score.config.name,
        "value": score.value,
        "comment": score.comment,
        "author": _username(score.author) or None,
        "source": score.source,
        "updated_at": _iso(score.updated_at),
    }


def score_cell(config: ScoreConfig, values: list[Any]) -> Any:
    """One CSV cell for one config on one target: the mean of the authors' values (numeric),
    else the first score's value (a category has no mean); "" without a score."""
    if config.kind == ScoreConfig.Kind.NUMERIC:
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if not numbers:
            return ""
        mean = sum(numbers) / len(numbers)
        return int(mean) if float(mean).is_integer() else round(mean, 4)
    if not values:
        return ""
    first = values[0]
    if isinstance(first, bool):
        return "true" if first else "false"
    return first if isinstance(first, str) else json.dumps(first, ensure_ascii=False)


def _score_cells(configs: list[ScoreConfig], values: dict[tuple[Any, int], list[Any]],
                 message_id: Any) -> list[Any]:
    """The `score:` cells of a message, or with None the `conversation_score:` ones."""
    return [score_cell(c, values.get((message_id, c.pk), [])) for c in configs]


def csv_columns(configs: list[ScoreConfig]) -> list[str]:
    """CSV_COLUMNS, then `score:<name>` per active config (the row's message), then
    `conversation_score:<name>` (the conversation's own score, on every row)."""
    return [*CSV_COLUMNS, *(f"score:{c.name}" for c in configs),
            *(f"conversation_score:{c.name}" for c in configs)]


def csv_lines(conversations: QuerySet[Conversation]) -> Iterator[str]:
    """The header, then one row per message (a conversation without messages gets one row with
    empty message columns, so it is not missing from the export). One string per
    conversation."""
    writer = csv.writer(_Echo())
    configs = list(ScoreConfig.objects.filter(is_active=True).order_by("name", "pk"))
    yield writer.writerow([csv_safe(name) for name in csv_columns(configs)])
    for conversation in _for_export(conversations):
        values: dict[tuple[Any, int], list[Any]] = {}
        for score in _scores(conversation):
            values.setdefault((score.message_id, score.config_id), []).append(score.value)
        own = _score_cells(configs, values, None)
        head = [
            str(conversation.pk),
            conversation.title or conversation.generated_title() or conversation.auto_title,
            _username(conversation.owner),
            conversation.agent.slug,
            conversation.external_user_id,
            conversation.review_status,
            "; ".join(label.name for label in conversation.labels.all()),
        ]
        rows = []
        for message in conversation.messages.all():
            feedback = getattr(message, "feedback", None) if message.role == "assistant" else None
            rows.append(head + [
                str(message.pk), message.seq, message.role, message.status, message.content,
                message.error_code, _iso(message.created_at), _iso(message.completed_at),
                message.ttft_ms if message.ttft_ms is not None else "",
                message.trace_id,
                feedback.score if feedback else "",
                feedback.comment if feedback else "",
                "; ".join(call.name or call.call_id for call in message.tool_calls.all()),
                *_score_cells(configs, values, message.pk), *own,
            ])
        if not rows:
            rows.append(head + [""] * (len(CSV_COLUMNS) - len(head)) + [""] * len(configs) + own)
        yield "".join(writer.writerow([csv_safe(cell) for cell in row]) for row in rows)


def conversation_record(conversation: Conversation) -> dict[str, Any]:
    """One JSONL line: the conversation, its review fields and scores, and its full transcript
    with each message's scores."""
    by_message: dict[Any, list[dict[str, Any]]] = {}
    for score in _scores(conversation):
        by_message.setdefault(score.message_id, []).append(score_record(score))
    return {
        "id": str(conversation.pk),
        "title": conversation.title,
        "auto_title": conversation.auto_title,
        "generated_titles": conversation.generated_titles,
        "owner": _username(conversation.owner),
        "agent": conversation.agent.slug,
        "agent_name": conversation.agent.name,
        "external_user_id": conversation.external_user_id,
        "metadata": conversation.metadata,
        "vendor_conversation_id": conversation.vendor_conversation_id,
        "archived": conversation.archived,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "review": {
            "status": conversation.review_status,
            "labels": [label.name for label in conversation.labels.all()],
            "notes": conversation.review_notes,
            "reviewed_by": _username(conversation.reviewed_by) or None,
            "reviewed_at": _iso(conversation.reviewed_at) or None,
        },
        "scores": by_message.get(None, []),
        "messages": [
            {**message_json(message), "seq": message.seq,
             "scores": by_message.get(message.pk, [])}
            for message in conversation.messages.all()
        ],
    }


def jsonl_lines(conversations: QuerySet[Conversation]) -> Iterator[str]:
    for conversation in _for_export(conversations):
        yield json.dumps(
            conversation_record(conversation), cls=DjangoJSONEncoder, ensure_ascii=False,
            separators=(",", ":"),
        ) + "\n"


# Responses -----------------------------------------------------------------------------------


def _guarded(lines: Iterator[str], failure_line: str) -> Iterator[str]:
    """Nothing raises out of a streamed body: once the headers are sent, an exception there
    left Daphne's error path broken for the whole process. A failure ends the stream with
    `failure_line` (so the download is visibly incomplete) and is logged once."""
    try:
        yield from lines
    except Exception:
        logger.exception("export failed mid-stream")
        yield failure_line


def _failure_line(export_format: str) -> str:
    message = _("The export failed before it was complete; the rows above are partial.")
    if export_format == "csv":
        return csv.writer(_Echo()).writerow(["#error", "export_failed", message])
    return json.dumps({"error": {"code": "export_failed", "message": message}},
                      ensure_ascii=False) + "\n"


async def _async_lines(lines: Iterator[str]) -> AsyncIterator[str]:
    """Hand a sync generator to the ASGI server batch by batch.

    Given a sync iterator, Django's ASGI handler first reads it whole into a list, which defeats
    streaming. thread_sensitive keeps every batch on the request's own thread, hence on the
    database connection (and server-side cursor) the generator started with.
    """
    take = sync_to_async(lambda: "".join(itertools.islice(lines, ASYNC_BATCH_LINES)))
    close = sync_to_async(getattr(lines, "close", lambda: None))
    try:
        while chunk := await take():
            yield chunk
    finally:
        # A client that disconnects stops the loop; the generator's cursor is closed on the
        # thread that opened it.
        await close()


def export_counts(conversations: QuerySet[Conversation], export_format: str) -> dict[str, int]:
    """What an export holds, counted before it streams (for the audit trail): its conversations,
    and its data rows (CSV: one per message, one for a conversation without any; JSONL: one per
    conversation)."""
    selection = Conversation.objects.filter(pk__in=conversations.values("pk"))
    n = selection.count()
    if export_format != "csv" or not n:
        return {"conversations": n, "rows": n}
    rows = (Message.objects.filter(conversation__in=selection).count()
            + selection.filter(messages__isnull=True).count())
    return {"conversations": n, "rows": rows}


def export_response(
    request: HttpRequest, conversations: QuerySet[Conversation], export_format: str, *,
    source: str = "api", filters: dict[str, Any] | None = None,
) -> StreamingHttpResponse:
    """A streamed download of `conversations` as "csv" or "jsonl", recorded in the audit trail
    (`export.downloaded`) with `filters`, the `source` (api, admin) and the counts."""
    audit.record("export.downloaded", request=request, details={
        "format": export_format, "source": source, "filters": filters or {},
        **export_counts(conversations, export_format)})
    if export_format == "csv":
        lines, content_type = csv_lines(conversations), "text/csv; charset=utf-8"
    else:
        lines, content_type = jsonl_lines(conversations), "application/x-ndjson; charset=utf-8"
    # The failure line is made now, in the request's language (the stream runs later).
    lines = _guarded(lines, _failure_line(export_format))
    content: Iterator[str] | AsyncIterator[str] = (
        _async_lines(lines) if isinstance(request, ASGIRequest) else lines
    )
    response = StreamingHttpResponse(content, content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = (
        f'attachment; filename="conversations-{stamp}.{export_format}"'
    )
    # Transcripts are private: no shared cache may keep a copy.
    response["Cache-Control"] = "no-store"
    return response
