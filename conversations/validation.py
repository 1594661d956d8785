"""One gate for every JSON value entering the system: API bodies, websocket frames, form fields.

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

from django.utils.translation import gettext as _

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
