"""Conversation exports for reviewers: CSV (one row per message) and JSONL (one conversation per
line), streamed so a large export never sits in memory.

Shared by the admin's export actions and `GET /api/v1/conversations/export` (views.py). The
generators read conversations in chunks with `.iterator(chunk_size=...)`; Django prefetches the
labels, messages, feedback and tool calls of each chunk, so the number of queries grows with the
number of chunks, never with the number of conversations or messages.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, QueryDict, StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

from conversations.frames import message_json
from conversations.models import Agent, Conversation, Label, Message
from conversations.services import InvalidInput

logger = logging.getLogger(__name__)

# 100 conversations per chunk: five queries fetch a chunk (conversations, labels, messages with
# their feedback, tool calls), and a chunk of long transcripts stays a few MB in memory.
EXPORT_CHUNK_SIZE = 100
# Lines handed to the ASGI server per thread hop: one hop per line would spend more time
# switching threads than writing.
ASYNC_BATCH_LINES = 50

CSV_COLUMNS = [
    "conversation_id", "title", "owner", "agent", "external_user_id", "review_status", "labels",
    "message_id", "seq", "role", "status", "content", "error_code", "created_at",
    "completed_at", "ttft_ms", "feedback_score", "feedback_comment", "tool_calls",
]
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection");
# tab and carriage return are on the list because some spreadsheets strip them first.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_FILTERS = frozenset({
    "agent", "owner", "review_status", "label", "since", "until", "external_user_id", "q",
})


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
    q = (params.get("q") or "")[:200]
    return qs.search(q, everywhere=True)


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
        .prefetch_related("labels", Prefetch("messages", queryset=messages))
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


def csv_lines(conversations: QuerySet[Conversation]) -> Iterator[str]:
    """The header, then one row per message (a conversation without messages gets one row with
    empty message columns, so it is not missing from the export). One string per
    conversation."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for conversation in _for_export(conversations):
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
                feedback.score if feedback else "",
                feedback.comment if feedback else "",
                "; ".join(call.name or call.call_id for call in message.tool_calls.all()),
            ])
        if not rows:
            rows.append(head + [""] * (len(CSV_COLUMNS) - len(head)))
        yield "".join(writer.writerow([csv_safe(cell) for cell in row]) for row in rows)


def conversation_record(conversation: Conversation) -> dict[str, Any]:
    """One JSONL line: the conversation, its review fields and its full transcript."""
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
        "messages": [
            {**message_json(message), "seq": message.seq}
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


def export_response(
    request: HttpRequest, conversations: QuerySet[Conversation], export_format: str
) -> StreamingHttpResponse:
    """A streamed download of `conversations` as "csv" or "jsonl"."""
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
