"""Structured logs: `LOG_FORMAT=json` renders every stdlib log record as one JSON object per line
(structlog's ProcessorFormatter), with the ids of what the line is about where known:

- `request_id`: bound by RequestIdMiddleware for an HTTP request (an incoming `X-Request-ID`
  when it is sane, else a new one; echoed in the response's `X-Request-ID`), and by the
  websocket consumer for a socket's handshake;
- `user_id`: the socket's user, or the request's once the view has loaded it (never a query
  of its own: a log line must not cost a database round trip);
- `conversation_id`: bound by the websocket consumer; `message_id`: by the relay for a reply.

The ids live in context variables, so they follow a socket's or a reply's asyncio task and the
threads `sync_to_async` runs code in, and never leak from one task to another.

Redaction: conversations.providers.redact redacts each record's message and traceback when it
is made; `_redact` here does it again for every string field of the line, so nothing bound or
added later escapes it. The default text format (settings.LOGGING) is unchanged.
"""

from __future__ import annotations

import re
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from structlog.contextvars import bind_contextvars, bound_contextvars, merge_contextvars
from structlog.typing import EventDict, WrappedLogger

from conversations.providers.redact import redact_log_text

REQUEST_ID_HEADER = "X-Request-ID"
# A client's or proxy's request id is kept when it is 1-128 of these characters (a UUID, a
# proxy's hex id, "trace:span"); anything else (a newline, a JSON fragment, 10 kB) is replaced
# by a new id, so a header can never forge or break a log line.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

_request: ContextVar[Any] = ContextVar("chatsite_log_request", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def sane_request_id(value: str | None) -> str:
    """`value` when it is a sane request id, else a new one."""
    if value and SANE_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


def bind(**ids: Any) -> None:
    """Attach ids to every log line of the current task (and of what it starts from now on)."""
    bind_contextvars(**{k: str(v) for k, v in ids.items() if v is not None})


@contextmanager
def request_context(request: Any, request_id: str) -> Iterator[None]:
    token = _request.set(request)
    try:
        with bound_contextvars(request_id=request_id):
            yield
    finally:
        _request.reset(token)


class RequestIdMiddleware:
    """Gives each HTTP request an id (see the module docstring) and echoes it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _id(self, request: Any) -> str:
        request_id = sane_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        return request_id

    def __call__(self, request: Any) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        request_id = self._id(request)
        with request_context(request, request_id):
            response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def __acall__(self, request: Any) -> Any:
        request_id = self._id(request)
        with request_context(request, request_id):
            response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


# Processors -----------------------------------------------------------------------------------


def _logger_name(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    record = event.get("_record")
    if record is not None:
        event["logger"] = record.name
    return event


def _request_ids(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """The request's id and user id: from the record's own `request` (Django's request log
    lines, made after the middleware returned) or the current request. The user only if the
    view already loaded it: no query here."""
    record = event.get("_record")
    request = getattr(record, "request", None) or _request.get()
    if request is None:
        return event
    request_id = getattr(request, "request_id", None)
    if "request_id" not in event and isinstance(request_id, str):
        event["request_id"] = request_id
    if "user_id" not in event:
        user = getattr(request, "_cached_user", None) or getattr(request, "_acached_user", None)
        if user is not None and getattr(user, "is_authenticated", False) is True:
            event["user_id"] = str(user.pk)
    return event


def _exception(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """`exc_info` as the traceback's text: the one the redacting record factory already made
    (record.exc_text), else formatted here."""
    exc_info = event.pop("exc_info", None)
    if not exc_info:
        return event
    record = event.get("_record")
    text = getattr(record, "exc_text", None) if record is not None else None
    if not text:
        if exc_info is True:
            return event
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        text = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    event["exc_info"] = text
    return event


def _redact(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    for key, value in event.items():
        if isinstance(value, str) and not key.startswith("_"):
            event[key] = redact_log_text(value)
    return event


class JSONFormatter(structlog.stdlib.ProcessorFormatter):
    """settings.LOGGING's formatter when LOG_FORMAT=json."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pre_chain = [
            merge_contextvars,
            structlog.stdlib.add_log_level,
            _logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            _request_ids,
            _exception,
        ]
        super().__init__(
            processors=[
                _redact,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
            foreign_pre_chain=pre_chain,
        )
