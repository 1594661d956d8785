"""Every value entering the system is checked here: the JSON gate for API bodies, websocket
frames and form fields (`loads`, `RequestTextMiddleware`), and the rules of each field a user
writes (`clean_*`, raising `InvalidInput`).

`json.loads` accepts values that cannot be stored or sent on: lone surrogates ("\\ud800": no
UTF-8 encoding, so PostgreSQL and the websocket refuse them), NUL in text (PostgreSQL refuses
it), NaN/Infinity (not JSON to anyone else) and nesting that overflows a recursive encoder.
Each crashed a handler before this module (close 1011, HTTP 500). `loads` refuses them with
`InvalidJSON`, whose `code` and `message` the API and the websocket turn into their error shape.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.utils.formats import number_format
from django.utils.translation import gettext as _

from conversations.models import METADATA_MAX_BYTES, metadata_size
from conversations.services.errors import InvalidInput

# 32 levels: the deepest legitimate value (metadata, an interrupt answer) nests a handful;
# json.loads itself overflows the stack near 1,000.
MAX_DEPTH = 32
_BAD_TEXT = re.compile("[\ud800-\udfff\x00]")


class InvalidJSON(ValueError):
    def __init__(self, code: str, message: str,
                 syntax: json.JSONDecodeError | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Where the text stopped being JSON (for messages that point at the line).
        self.syntax = syntax


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON("invalid", _("Numbers must be finite (%(name)s is not JSON).")
                      % {"name": name})


def loads(text: str | bytes) -> Any:
    """Parse and check: `InvalidJSON` with code `bad_json` (not JSON) or `invalid` (JSON that
    cannot be stored)."""
    value = parse(text)
    check(value)
    return value


def parse(text: str | bytes) -> Any:
    """Parse only (NaN/Infinity and overflowing nesting are refused here already); `check`
    does the rest."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except InvalidJSON:
        raise
    except RecursionError:
        raise too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        syntax = exc if isinstance(exc, json.JSONDecodeError) else None
        raise InvalidJSON("bad_json", _("The body is not valid JSON."), syntax) from None
    return value


def too_deep() -> InvalidJSON:
    return InvalidJSON("invalid", _("JSON may nest at most %(depth)s levels.")
                       % {"depth": MAX_DEPTH})


def check(value: Any) -> None:
    """Refuse a parsed value holding what cannot be stored (see the module's docstring).
    Iterative, so a deep value cannot overflow the stack here either."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise InvalidJSON("invalid", _("Numbers must be finite."))
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise too_deep()
            if isinstance(item, dict):
                for key, child in item.items():
                    check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def check_text(text: str) -> None:
    match = _BAD_TEXT.search(text)
    if match is None:
        return
    if match.group() == "\x00":
        raise InvalidJSON("invalid", _("Text must not contain NUL characters."))
    raise InvalidJSON("invalid", _("Text must be valid Unicode (a lone surrogate was sent)."))


# Fields ---------------------------------------------------------------------------------------

# 32,000 characters: a long pasted log or document fits; anything bigger is almost certainly a
# mistake and would blow most vendors' context anyway.
CONTENT_MAX_CHARS = 32_000
CLIENT_ID_MAX_CHARS = 64
TITLE_MAX_CHARS = 200
EXTERNAL_USER_ID_MAX_CHARS = 255


def format_count(value: int) -> str:
    """A count for people, grouped the active language's way (32,000 / 32 000)."""
    return number_format(value, force_grouping=True)


def clean_metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        try:
            value = loads(text)
        except InvalidJSON as exc:
            message = exc.message if exc.syntax is None else (
                _("Metadata is not valid JSON: %(error)s (line %(line)s).")
                % {"error": exc.syntax.msg, "line": exc.syntax.lineno})
            raise InvalidInput("invalid", message, field="metadata") from None
    if not isinstance(value, dict):
        raise InvalidInput("invalid", _("Metadata must be a JSON object."), field="metadata")
    if metadata_size(value) > METADATA_MAX_BYTES:
        raise InvalidInput(
            "too_large",
            _("Metadata must be at most %(size)s KB when serialized.")
            % {"size": METADATA_MAX_BYTES // 1024},
            field="metadata",
            status=413,
        )
    return value


def clean_title(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("Title must be a string."), field="title")
    value = " ".join(value.split())
    if len(value) > TITLE_MAX_CHARS:
        raise InvalidInput(
            "invalid",
            _("Title must be at most %(max)s characters.")
            % {"max": format_count(TITLE_MAX_CHARS)},
            field="title",
        )
    return value


def clean_external_user_id(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(
            "invalid", _("external_user_id must be a string."), field="external_user_id"
        )
    value = value.strip()
    if len(value) > EXTERNAL_USER_ID_MAX_CHARS:
        raise InvalidInput(
            "invalid",
            _("external_user_id must be at most %(max)s characters.")
            % {"max": format_count(EXTERNAL_USER_ID_MAX_CHARS)},
            field="external_user_id",
        )
    return value


def clean_content(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("content must be a string."), field="content")
    value = value.strip()
    if not value:
        raise InvalidInput("invalid", _("The message is empty."), field="content")
    if len(value) > CONTENT_MAX_CHARS:
        raise InvalidInput(
            "too_large",
            _("The message is %(count)s characters; the limit is %(max)s.")
            % {"count": format_count(len(value)), "max": format_count(CONTENT_MAX_CHARS)},
            field="content",
            status=413,
        )
    return value


def clean_client_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > CLIENT_ID_MAX_CHARS:
        raise InvalidInput(
            "invalid",
            _("client_id must be a string of at most %(max)s characters.")
            % {"max": format_count(CLIENT_ID_MAX_CHARS)},
            field="client_id",
        )
    return value


# Query strings and form fields ----------------------------------------------------------------


class RequestTextMiddleware:
    """Query strings and form fields are text entering the system too: a NUL in `?q=` or a
    form field reaches PostgreSQL ("string literal cannot contain NUL") as a 500. Refused here
    with 400, before any view, in the API's error shape under /api/."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        problem = self._problem(request)
        if problem is None:
            return self.get_response(request)
        from django.http import HttpResponseBadRequest, JsonResponse

        if request.path.startswith("/api/"):
            return JsonResponse({"error": {"code": problem.code, "message": problem.message,
                                           "details": {}}}, status=400)
        return HttpResponseBadRequest(problem.message, content_type="text/plain; charset=utf-8")

    @staticmethod
    def _problem(request: Any) -> InvalidJSON | None:
        sources = [request.GET]
        if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"
        ):
            sources.append(request.POST)
        try:
            for data in sources:
                for key, values in data.lists():
                    check_text(key)
                    for value in values:
                        check_text(value)
        except InvalidJSON as exc:
            return exc
        return None
