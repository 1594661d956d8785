"""JSON API v1 (session auth + CSRF, or a personal API token: api_auth.py). Every error is
`{"error": {"code": str, "message": str, "details": {...}}}` with a fitting status; `code` is a
stable English identifier, `message` is for people, in the request's language."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote
from uuid import UUID

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from conversations import ratelimit, services
from conversations.frames import attachment_json, conversation_json, message_json
from conversations.review.export import _day_bound as day_bound
from conversations.services import validation

# 64 KiB: the largest legitimate body is 16 KB of metadata plus a title; bigger is refused
# with 413 before it is parsed.
MAX_BODY_BYTES = 64 * 1024
# Up to 9 digits: a page number, not a 5,000-digit integer for int() to chew on.
PAGE_RE = re.compile(r"[0-9]{1,9}")

View = Callable[..., HttpResponse]


def api_error(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": code, "message": message, "details": details or {}}}, status=status
    )


def _rate_limited(request: HttpRequest) -> HttpResponse | None:
    """A 429 once the user's writes (API and HTML forms together, RATE_LIMIT_WRITES_PER_MINUTE)
    are used up for this minute."""
    refusal = ratelimit.hit_writes(request.user.pk)
    if refusal is None:
        return None
    response = api_error(429, "rate_limited", refusal.message,
                         {"retry_after": refusal.retry_after})
    response["Retry-After"] = str(refusal.retry_after)
    return response


def api_view(*methods: str, review: bool = False) -> Callable[[View], View]:
    """`review`: a review endpoint, which an API token reaches only with the `review` scope
    (services/tokens.py); otherwise GET needs `read` and the other methods `write`."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                response = api_error(
                    401, "unauthenticated",
                    _("Log in, or send a personal API token as “Authorization: Bearer …”."))
                response["WWW-Authenticate"] = 'Bearer realm="chatsite"'
                return response
            handler = methods_map.get(request.method or "")
            if handler is None:
                response = api_error(
                    405, "method_not_allowed",
                    _("%(method)s is not allowed here.") % {"method": request.method},
                )
                response["Allow"] = ", ".join(methods)
                return response
            token = getattr(request, "api_token", None)
            if token is not None:
                try:
                    services.tokens.require_scope(token, services.tokens.required_scope(
                        request.method or "", review=review))
                except services.MissingScope as exc:
                    return api_error(exc.status, exc.code, exc.message, exc.details)
            if request.method in ("POST", "PATCH", "PUT", "DELETE") and (
                limited := _rate_limited(request)
            ):
                return limited
            try:
                return handler(request, *args, **kwargs)
            except services.NotFound as exc:
                return api_error(404, exc.code, exc.message)
            except services.InvalidInput as exc:
                status = exc.status
                if exc.code == "invalid" and exc.field and status == 400:
                    status = 422  # well-formed JSON whose field value is refused
                return api_error(status, exc.code, exc.message, exc.details)

        methods_map = {m: getattr(view, m.lower()) for m in methods}
        return wrapper

    return decorator


def _json_body(request: HttpRequest) -> dict[str, Any]:
    length = int(request.headers.get("Content-Length") or 0)
    if length > MAX_BODY_BYTES:
        raise services.InvalidInput(
            "too_large",
            _("The body must be at most %(size)s KiB.") % {"size": MAX_BODY_BYTES // 1024},
            status=413,
        )
    try:
        raw = request.body
    except RequestDataTooBig:
        raise services.InvalidInput(
            "too_large", _("The body is too large."), status=413
        ) from None
    if len(raw) > MAX_BODY_BYTES:
        raise services.InvalidInput(
            "too_large",
            _("The body must be at most %(size)s KiB.") % {"size": MAX_BODY_BYTES // 1024},
            status=413,
        )
    if not raw.strip():
        return {}
    try:
        body = validation.loads(raw)
    except validation.InvalidJSON as exc:
        # Parsed but unstorable (a lone surrogate, NaN, nesting past 32): 422, like any refused
        # field value; not JSON at all: 400.
        status = 400 if exc.code == "bad_json" else 422
        raise services.InvalidInput(exc.code, exc.message, status=status) from None
    if not isinstance(body, dict):
        raise services.InvalidInput("bad_json", _("The body must be a JSON object."))
    return body


def _unknown_fields(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise services.InvalidInput(
            "invalid", _("Unknown field(s): %(fields)s.") % {"fields": ", ".join(extra)},
            field=extra[0],
        )


def _lang() -> str:
    return get_language() or "en"


class Conversations:
    @staticmethod
    def get(request: HttpRequest) -> HttpResponse:
        archived = request.GET.get("archived", "0").lower() in ("1", "true", "yes")
        page = request.GET.get("page", "1")
        # ASCII digits only: "²".isdigit() is true, int("²") raises (a 500 before).
        if not PAGE_RE.fullmatch(page) or int(page) < 1:
            raise services.InvalidInput(
                "invalid", _("page must be a positive integer."), field="page"
            )
        page_obj = services.list_conversations(
            request.user, q=request.GET.get("q", "")[:200], archived=archived, page=int(page),
            external_user_id=request.GET.get("external_user_id", "")[:255],
            view=request.GET.get("view", ""), team=request.GET.get("team", ""),
        )
        return JsonResponse(
            {
                "data": [conversation_json(c, _lang()) for c in page_obj.object_list],
                "page": page_obj.number,
                "has_more": page_obj.has_next(),
            }
        )

    @staticmethod
    def post(request: HttpRequest) -> HttpResponse:
        body = _json_body(request)
        _unknown_fields(body, {"agent", "team", "title", "external_user_id", "metadata"})
        conversation = services.create_conversation(
            request.user,
            agent=body.get("agent"),
            team=body.get("team"),
            title=body.get("title", ""),
            external_user_id=body.get("external_user_id", ""),
            metadata=body.get("metadata", {}),
        )
        return JsonResponse(conversation_json(conversation, _lang()), status=201)


class ConversationDetail:
    @staticmethod
    def get(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
        conversation = services.get_conversation(request.user, conversation_id)
        services.audit.record_transcript_view(request, conversation, "api")
        data = conversation_json(conversation, _lang())
        # Every branch; `active_path` says which messages the chat shows and the vendor is sent.
        data["messages"] = [message_json(m) for m in services.transcript(conversation)]
        data.update(services.active_path(conversation).json())
        return JsonResponse(data)

    @staticmethod
    def patch(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
        conversation = services.get_conversation(request.user, conversation_id)
        body = _json_body(request)
        desk = {"assignee", "team", "note"}
        _unknown_fields(body, {"title", "metadata", "archived", "external_user_id"} | desk)
        services.update_conversation(
            conversation, **{k: v for k, v in body.items() if k not in desk})
        # Assignment and handoff write events into the transcript (services.desk).
        if desk & set(body):
            services.apply_assignment(conversation, request.user,
                                      {k: v for k, v in body.items() if k in desk})
            if not services.may_open(request.user, conversation.pk):
                # Handed to a team this user is not in: done, and no longer theirs to read.
                return JsonResponse({"id": str(conversation.pk), "transferred": True})
        return JsonResponse(conversation_json(conversation, _lang()))

    @staticmethod
    def delete(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
        conversation = services.get_conversation(request.user, conversation_id)
        vendor_error = services.delete_conversation(conversation)
        if vendor_error is None:
            return HttpResponse(status=204)
        # Deleted here, but the vendor kept its copy: say so instead of a bare 204.
        return JsonResponse(
            {"deleted": True,
             "vendor_error": {"code": vendor_error.code, "message": vendor_error.message}}
        )


conversations = api_view("GET", "POST")(Conversations)  # type: ignore[arg-type]
conversation_detail = api_view("GET", "PATCH", "DELETE")(ConversationDetail)  # type: ignore[arg-type]


class ConversationBranch:
    @staticmethod
    def put(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
        """The branch through `message_id` (its newest descendant) becomes the active path."""
        conversation = services.get_conversation(request.user, conversation_id)
        body = _json_body(request)
        _unknown_fields(body, {"message_id"})
        return JsonResponse(services.select_branch(conversation, body.get("message_id")).json())


conversation_branch = api_view("PUT")(ConversationBranch)  # type: ignore[arg-type]


class MessageFeedback:
    @staticmethod
    def put(request: HttpRequest, message_id: UUID) -> HttpResponse:
        body = _json_body(request)
        _unknown_fields(body, {"score", "comment"})
        feedback = services.set_feedback(
            request.user, message_id, body.get("score"), body.get("comment", "")
        )
        return JsonResponse({"score": feedback.score, "comment": feedback.comment})

    @staticmethod
    def delete(request: HttpRequest, message_id: UUID) -> HttpResponse:
        services.clear_feedback(request.user, message_id)
        return HttpResponse(status=204)


message_feedback = api_view("PUT", "DELETE")(MessageFeedback)  # type: ignore[arg-type]


# The multipart envelope around the one file part: boundaries and part headers are a few
# hundred bytes; 64 KiB leaves room for a long file name. A larger body is refused from its
# Content-Length without reading the file. (The CSRF and text middlewares have parsed the body
# by then, spooling a large one to a temporary file: in production nginx's
# client_max_body_size bounds it, docs/deploy.md.)
MULTIPART_OVERHEAD = 64 * 1024


def _content_length(request: HttpRequest) -> int:
    value = request.headers.get("Content-Length") or "0"
    return int(value) if value.isascii() and value.isdigit() else 0


class ConversationAttachments:
    @staticmethod
    def post(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
        """Upload one file (multipart, exactly one part named `file`) into the conversation,
        to be sent with a later `message.send` (docs/protocol.md)."""
        services.get_conversation(request.user, conversation_id)  # 404 before anything else
        limit = services.attachment_max_bytes()
        if _content_length(request) > limit + MULTIPART_OVERHEAD:
            raise services.attachment_too_large(limit)
        if request.content_type != "multipart/form-data":
            raise services.InvalidInput(
                "invalid", _("Send the file as multipart/form-data, in one part named “file”."),
                field="file", status=415)
        try:
            files, fields = request.FILES, request.POST
        except (MultiPartParserError, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent):
            raise services.InvalidInput(
                "invalid", _("The multipart body could not be read."), field="file",
            ) from None
        parts = files.getlist("file")
        if len(parts) != 1 or len(files) != 1 or len(fields):
            raise services.InvalidInput(
                "invalid", _("Send exactly one part, named “file”."), field="file")
        attachment = services.upload_attachment(request.user, conversation_id, parts[0])
        return JsonResponse(attachment_json(attachment), status=201)


conversation_attachments = api_view("POST")(ConversationAttachments)  # type: ignore[arg-type]


def content_disposition(name: str, *, inline: bool) -> str:
    """RFC 6266: an ASCII `filename` for old clients and the exact name in `filename*`."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in name) or "file"
    return (f"{'inline' if inline else 'attachment'}; filename=\"{fallback}\"; "
            f"filename*=UTF-8''{quote(name, safe='')}")


class AttachmentFile:
    @staticmethod
    def get(request: HttpRequest, attachment_id: UUID) -> HttpResponse:
        """The file, to those who may see its conversation (its owner, reviewers); images
        inline (thumbnails), everything else as a download."""
        attachment = services.get_attachment(request.user, attachment_id)
        content_type = attachment.content_type
        if content_type.startswith("text/") or content_type == "application/json":
            content_type += "; charset=utf-8"
        response = FileResponse(services.open_attachment(attachment), content_type=content_type)
        response["Content-Length"] = str(attachment.size)
        response["Content-Disposition"] = content_disposition(
            attachment.name, inline=attachment.content_type in services.ATTACHMENT_IMAGE_TYPES)
        # The sniffed type is the only one: no browser may guess another from the bytes.
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        return response


attachment_file = api_view("GET")(AttachmentFile)  # type: ignore[arg-type]


class CannedReplies:
    @staticmethod
    def get(request: HttpRequest) -> HttpResponse:
        """The composer's `/` picker: the replies the user may use, rendered against the
        conversation's customer (404 for a conversation the user may not open)."""
        data = services.canned.picker_replies(
            request.user, request.GET.get("conversation"), request.GET.get("q", ""))
        return JsonResponse({"data": data})


canned_replies = api_view("GET")(CannedReplies)  # type: ignore[arg-type]


# Review workspace: scores and queues (issue 13) -------------------------------------------------

# The newest 1,000 scores per answer: narrow with since/until (or config, conversation) for more.
SCORES_MAX = 1_000


def _forbidden_unless_scorer(request: HttpRequest) -> None:
    if not services.scoring.may_score(request.user):
        raise services.InvalidInput(
            "forbidden", _("Only reviewers and staff may read or write scores."), status=403)


class Scores:
    @staticmethod
    def get(request: HttpRequest) -> HttpResponse:
        _forbidden_unless_scorer(request)
        params = request.GET
        _unknown_fields(dict(params), {"config", "conversation_id", "message_id", "author",
                                       "since", "until"})
        scores = services.scores_for()
        if params.get("config"):
            ref = params["config"]
            config = services.scoring.get_config(
                int(ref) if PAGE_RE.fullmatch(ref) else ref, active=False)
            scores = scores.filter(config=config)
        for name in ("conversation_id", "message_id"):
            if params.get(name):
                scores = scores.filter(**{name: services.scoring.parse_uuid(params[name], name)})
        if params.get("author"):
            scores = scores.filter(author__username=params["author"][:150])
        since = until = None
        if params.get("since"):
            since = day_bound(params["since"].strip(), "since", end=False)
            scores = scores.filter(updated_at__gte=since)
        if params.get("until"):
            until = day_bound(params["until"].strip(), "until", end=True)
            scores = scores.filter(updated_at__lt=until)
        rows = list(scores[:SCORES_MAX + 1])
        return JsonResponse({"data": [services.scoring.score_json(s) for s in rows[:SCORES_MAX]],
                             "has_more": len(rows) > SCORES_MAX})

    @staticmethod
    def post(request: HttpRequest) -> HttpResponse:
        _forbidden_unless_scorer(request)
        body = _json_body(request)
        _unknown_fields(body, {"config", "value", "comment", "message_id", "conversation_id"})
        if "config" not in body or "value" not in body:
            raise services.InvalidInput("invalid", _("config and value are required."),
                                        field="config" if "config" not in body else "value")
        ids = {name: services.scoring.parse_uuid(body[name], name)
               for name in ("message_id", "conversation_id") if body.get(name) is not None}
        score = services.set_score(
            request.user, config=services.scoring.get_config(body["config"]),
            value=body["value"], comment=body.get("comment", ""),
            message=ids.get("message_id"), conversation=ids.get("conversation_id"),
            source="api")
        return JsonResponse(services.scoring.score_json(score), status=201)


scores = api_view("GET", "POST", review=True)(Scores)  # type: ignore[arg-type]


class ReviewQueues:
    @staticmethod
    def get(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"queues": [
            {"id": q.id, "name": q.name, "pending": q.pending, "in_progress": q.in_progress,
             "done": q.done, "skipped": q.skipped}
            for q in services.queues_for(request.user)
        ]})


class QueueClaim:
    @staticmethod
    def post(request: HttpRequest, queue_id: int) -> HttpResponse:
        _unknown_fields(_json_body(request), set())
        item = services.claim_next(queue_id, request.user)
        if item is None:
            return HttpResponse(status=204)
        return JsonResponse({"item": services.queues.item_json(item)})


class ItemComplete:
    @staticmethod
    def post(request: HttpRequest, item_id: int) -> HttpResponse:
        body = _json_body(request)
        _unknown_fields(body, {"scores"})
        item = services.complete(item_id, request.user, body.get("scores"))
        return JsonResponse({"item": services.queues.item_json(item)})


class ItemSkip:
    @staticmethod
    def post(request: HttpRequest, item_id: int) -> HttpResponse:
        _unknown_fields(_json_body(request), set())
        return JsonResponse({"item": services.queues.item_json(
            services.skip(item_id, request.user))})


review_queues = api_view("GET", review=True)(ReviewQueues)  # type: ignore[arg-type]
review_queue_claim = api_view("POST", review=True)(QueueClaim)  # type: ignore[arg-type]
review_item_complete = api_view("POST", review=True)(ItemComplete)  # type: ignore[arg-type]
review_item_skip = api_view("POST", review=True)(ItemSkip)  # type: ignore[arg-type]


def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return api_error(404, "not_found", _("No such API endpoint."))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """JSON for API clients, Django's page for forms."""
    if request.path.startswith("/api/"):
        return api_error(
            403, "csrf_failed",
            _("CSRF check failed: send the csrftoken cookie's value in the X-CSRFToken header."),
            {"reason": reason},
        )
    from django.views.csrf import csrf_failure as default

    return default(request, reason)
