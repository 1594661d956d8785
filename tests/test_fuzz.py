"""Hostile input never crashes a handler: hypothesis drives websocket frames and HTTP requests
(API and HTML forms) through the real ASGI consumer and the real Django stack, in process.

Per example: no 5xx, no close of the socket (in process, the consumer's exception is what
Daphne would turn into close 1011), no log record at WARNING or above carrying a traceback, the
socket still answers `ping`, every API error has the error shape and a status that
docs/openapi.yaml documents for that operation.

Examples are derandomized (the same ones on every run, no example database written); the
inputs behind issue 8 are explicit examples, so they run whatever hypothesis draws.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlencode

import pytest
import yaml
from django.conf import settings as django_settings
from django.test import Client
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from conversations import api
from conversations.models import Agent, Conversation, Message
from tests.wsclient import Socket, open_socket, wait_for_no_runs

# 3,000 frames + 2,200 requests: over the 5,000 examples issue 8 asks for, in ~25 s on SQLite
# or PostgreSQL (11 s + 14 s measured on a shared 2-core machine).
WS_EXAMPLES = 3000
HTTP_EXAMPLES = 2200
# A whole fuzz test must stay well inside the minute the suite gives it.
TIME_BUDGET_S = 60

COMMON = {"deadline": None, "derandomize": True, "database": None,
          "suppress_health_check": list(HealthCheck)}

CONVERSATION_ID = uuid.UUID("f022f022-0000-4000-8000-00000000c0de")
REPLY_ID = uuid.UUID("f022f022-0000-4000-8000-0000000feeed")
FOREIGN_ID = uuid.UUID("f022f022-0000-4000-8000-0000000b0b00")


@pytest.fixture(autouse=True)
def _no_rate_limits(settings: Any) -> None:
    """Thousands of writes a minute are the point here; the limits have their own tests."""
    settings.RATE_LIMIT_RUNS_PER_USER = 0
    settings.RATE_LIMIT_SENDS_PER_MINUTE = 0
    settings.RATE_LIMIT_WRITES_PER_MINUTE = 0
    settings.RATE_LIMIT_SOCKETS_PER_USER = 0


class Trap(logging.Handler):
    """Every record at WARNING or above, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        found = []
        for r in self.records:
            text = r.getMessage()
            if r.exc_info or r.exc_text or r.stack_info or "Traceback" in text:
                found.append(f"{r.name}: {text[:300]}")
        return found


@pytest.fixture
def trap() -> Iterator[Trap]:
    handler = Trap()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


# Strategies ------------------------------------------------------------------------------------

# Text that JSON can carry but nothing downstream can store: lone surrogates (json.dumps writes
# them as \\ud800 escapes, as a hostile client would), NUL.
BAD_TEXT = ["\ud800", "\udfff", "a\udc00b", "\ud83d", "\x00", "nul\x00byte", "\ud800\x00"]
SPECIAL_TEXT = ["", " ", "²", "-1", "0", "1e400", "NaN", "null", "true", "[]", "{}",
                "9999-12-31T23:59:59-14:00", "9999-12-31", "0001-01-01T00:00:00+14:00",
                "2025-02-30", "99999999999999999999", "demo", "export", "../..", "%00",
                "<script>", "=cmd|' /C calc'!A0", "\u202e", "a" * 300]

texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(categories=["Cs", "Cc"]), min_size=1, max_size=4),
    st.sampled_from(BAD_TEXT + SPECIAL_TEXT),
)
numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 1e308, -0.0, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def dumps(value: Any) -> str:
    # allow_nan: NaN/Infinity go out as the bare literals json.loads accepts.
    return json.dumps(value, allow_nan=True)


def nested(depth: int, kind: str, leaf: str = "1") -> str:
    if kind == "[":
        return "[" * depth + leaf + "]" * depth
    return '{"a":' * depth + leaf + "}" * depth


DEPTHS = [31, 32, 33, 100, 999, 1000, 1001, 5000, 50_000]
deep = st.builds(nested, st.sampled_from(DEPTHS), st.sampled_from(["[", "{"]))

# Client frames of docs/protocol.md and their fields.
FRAME_FIELDS = {
    "message.send": ["content", "client_id", "metadata"],
    "run.cancel": [],
    "interrupt.resume": ["interrupt_id", "payload"],
    "ping": [],
}


def frame_of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Every field of `kind` with any JSON at all (wrong types included), plus strays."""
    return st.fixed_dictionaries(
        {"type": st.just(kind)},
        optional={**{f: json_values for f in FRAME_FIELDS[kind]}, "extra": json_values},
    )


def with_raw(kind: str, field: str, raw: str) -> str:
    """A frame whose `field` is raw JSON text (deep nesting, NaN...) json.dumps cannot make."""
    return f'{{"type": {json.dumps(kind)}, "{field}": {raw}}}'


frames = st.one_of(
    st.sampled_from(list(FRAME_FIELDS)).flatmap(frame_of).map(dumps),
    st.fixed_dictionaries({"type": json_values}, optional={"content": json_values}).map(dumps),
    st.builds(lambda t: dumps({"type": t}), texts),  # unknown types
    json_values.map(dumps),  # not an object
    st.text(max_size=60),  # not JSON
    deep,
    st.builds(
        with_raw,
        st.sampled_from(["message.send", "interrupt.resume", "ping", "run.cancel"]),
        st.sampled_from(["metadata", "payload", "content", "client_id", "extra"]),
        st.one_of(deep, st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400",
                                         "1" * 5000, '"\\ud800"', '"\\u0000"', '"\\udfff"']))),
)


def cannot_be_stored(value: Any) -> bool:
    """The test's own oracle of issue 8: a lone surrogate or NUL in any text (keys too), a
    non-finite number, or arrays/objects nested more than 32 deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth > 32:
            return True
        if isinstance(item, str):
            if "\x00" in item or any("\ud800" <= c <= "\udfff" for c in item):
                return True
        elif isinstance(item, float) and not math.isfinite(item):
            return True
        elif isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def expected_refusal(text: str) -> str | None:
    """The error code a JSON text must be refused with, or None when it is storable."""
    if len(text.encode("utf-8", "surrogatepass")) > 256 * 1024:  # protocol.md's frame limit
        return "too_large"
    try:
        value = json.loads(text)
    except RecursionError:
        return "invalid"
    except ValueError:
        return "bad_json"
    return "invalid" if cannot_be_stored(value) else None


# Websocket -------------------------------------------------------------------------------------


class Exchange:
    """One socket for every example: send the hostile frame, then a ping, and read up to the
    pong. Frames of a reply the fuzz started are read past (the next example drains them)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: Socket) -> None:
        self.loop = loop
        self.sock = sock
        self.count = 0

    def __call__(self, text: str | None, data: bytes | None = None) -> list[dict[str, Any]]:
        self.count += 1
        return self.loop.run_until_complete(self._exchange(text, data))

    async def _exchange(self, text: str | None, data: bytes | None) -> list[dict[str, Any]]:
        comm = self.sock.comm
        if data is not None:
            await comm.send_to(bytes_data=data)
        else:
            await comm.send_input({"type": "websocket.receive", "text": text})
        await comm.send_to(text_data='{"type": "ping"}')
        replies = await self._until_pong(text)
        if is_ping(text) and not any(f.get("type") == "error" for f in replies):
            # The hostile frame was a ping the server answered: that pong came first.
            replies += await self._until_pong(text)
        return replies

    async def _until_pong(self, text: str | None) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        while True:
            # A consumer that raised re-raises here; a close is an output of its own.
            out = await self.sock.comm.receive_output(timeout=10)
            assert out["type"] == "websocket.send", f"socket closed after {text!r:.200}: {out}"
            frame = json.loads(out["text"])
            if frame == {"type": "pong"}:
                return replies
            if frame.get("type") != "presence":  # a socket opened or closed: not a reply
                replies.append(frame)


def is_ping(text: str | None) -> bool:
    try:
        value = json.loads(text or "")
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("type") == "ping"


REFUSALS = {"bad_json", "invalid", "unknown_type", "too_large", "run_active", "no_run",
            "no_interrupt"}


def check_replies(text: str | None, replies: list[dict[str, Any]]) -> None:
    for frame in replies:
        if frame.get("type") == "error":
            assert frame["code"] in REFUSALS, (text, frame)
        if frame.get("type") == "message.failed":
            assert frame["message"]["error"]["code"] != "internal_error", (text, frame)


@pytest.mark.django_db(transaction=True)
def test_it_survives_hostile_websocket_frames(
    alice_client: Client, conversation: Conversation, trap: Trap
):
    # A Runner, not a bare loop: closing it cancels what the run left (the relay's flusher
    # sleeps until its next tick), as asyncio.run does. A bare loop.close() left that task
    # pending; it was destroyed later, logging an error inside whichever test was running.
    runner = asyncio.Runner()
    loop = runner.get_loop()
    connected, sock = loop.run_until_complete(open_socket(alice_client, conversation.id))
    assert connected
    exchange = Exchange(loop, sock)
    started = time.monotonic()

    # Binary frames and a frame over the 256 KiB limit, once each.
    replies = exchange(None, b"\x00\xff{}")
    assert replies[0]["code"] == "bad_json"
    replies = exchange(dumps({"type": "message.send", "content": "x" * 300_000}))
    assert replies[0]["code"] == "too_large"

    @given(text=frames)
    @hsettings(max_examples=WS_EXAMPLES, **COMMON)
    @example(text='{"type": "message.send", "content": "hi \\ud800"}')
    @example(text='{"type": "message.send", "content": "ok", "metadata": {"a": NaN}}')
    @example(text='{"type": "message.send", "content": "ok", "metadata": {"a": Infinity}}')
    @example(text='{"type": "interrupt.resume", "interrupt_id": "i", "payload": -Infinity}')
    @example(text=with_raw("message.send", "metadata", nested(1000, "{")))
    @example(text=with_raw("interrupt.resume", "payload", nested(1000, "[")))
    @example(text=nested(100_000, "["))
    @example(text='{"type": "message.send", "content": "nul \\u0000", "client_id": "\\udfff"}')
    @example(text='{"type": "ping", "x": 1e400}')
    @example(text='{"type": 1}')
    @example(text='{"type": "nope\\ud800"}')
    def fuzz(text: str) -> None:
        replies = exchange(text)
        check_replies(text, replies)
        if expected := expected_refusal(text):
            codes = [f.get("code") for f in replies if f.get("type") == "error"]
            assert codes == [expected], (text[:200], replies)

    try:
        fuzz()
        elapsed = time.monotonic() - started
        # The socket is whole: once the replies the fuzz started are over and read, it still
        # answers a ping alone, and still takes a real message.
        loop.run_until_complete(wait_for_no_runs(timeout=10))
        exchange('{"type": "ping"}')
        loop.run_until_complete(sock.assert_usable())
        replies = exchange(dumps({"type": "message.send", "content": "still here?"}))
        assert [f["type"] for f in replies][:1] == ["message.created"], replies
        loop.run_until_complete(wait_for_no_runs(timeout=10))
    finally:
        loop.run_until_complete(sock.close())
        runner.close()
    assert exchange.count >= WS_EXAMPLES
    assert trap.tracebacks() == []
    assert elapsed < TIME_BUDGET_S, elapsed


# HTTP ------------------------------------------------------------------------------------------


def documented_statuses() -> dict[tuple[str, str], set[int]]:
    """(METHOD, OpenAPI path) -> the statuses docs/openapi.yaml lists for that operation."""
    with open(django_settings.BASE_DIR / "docs" / "openapi.yaml", encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return {
        (method.upper(), path): {int(s) for s in operation["responses"]}
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }


DOCUMENTED = documented_statuses()
API_PATHS = sorted({path for _, path in DOCUMENTED})
HTML_PATHS = [
    "/", "/conversations/new", "/c/{conversation_id}/", "/c/{conversation_id}/rename",
    "/c/{conversation_id}/archive", "/c/{conversation_id}/delete", "/stats/", "/i18n/setlang/",
]
# Query parameters any of those views reads, so fuzzed values reach the code behind them.
QUERY_NAMES = ["q", "archived", "page", "external_user_id", "format", "agent", "owner",
               "review_status", "label", "since", "until", "customer", "start", "end"]
BODY_FIELDS = ["agent", "title", "external_user_id", "metadata", "archived", "score",
               "comment", "language", "next"]

path_ids = st.one_of(
    st.sampled_from([str(CONVERSATION_ID), str(REPLY_ID), str(FOREIGN_ID),
                     "00000000-0000-4000-8000-000000000000"]),
    texts.map(lambda t: quote(t, safe="", errors="surrogatepass") or "x"),
)


def ids(own: uuid.UUID) -> st.SearchStrategy[str]:
    """Half the time the user's own object, so requests get past the 404."""
    return st.one_of(st.just(str(own)), path_ids)
query_values = st.one_of(texts, st.sampled_from(["csv", "jsonl", "1", "reviewed", "alice"]))
DATES = ["2025-01-31", "2025-01-31T09:30:00+01:00", "9999-12-31T23:59:59-14:00", "9999-12-31",
         "0001-01-01", "0001-01-01T00:00:00+14:00", "2025-02-30", "²", ""]
# Mostly well-formed filters, so the export gets past validation and streams.
export_queries = st.fixed_dictionaries(
    {"format": st.sampled_from(["csv", "jsonl"])},
    optional={"since": st.sampled_from(DATES), "until": st.sampled_from(DATES),
              "q": texts, "review_status": st.sampled_from(["", "reviewed", "flagged"]),
              "agent": st.sampled_from(["", "demo"]), "owner": st.sampled_from(["", "root"])},
).map(lambda d: urlencode(d, quote_via=quote, errors="surrogatepass"))
queries = st.one_of(
    st.just(""),
    export_queries,
    st.dictionaries(st.one_of(st.sampled_from(QUERY_NAMES), texts), query_values, max_size=4)
    .map(lambda d: urlencode(d, quote_via=quote, errors="surrogatepass")),
    st.text(max_size=40).map(lambda t: quote(t, safe="=&", errors="surrogatepass")),
)
json_bodies = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(BODY_FIELDS), texts), json_values, max_size=4)
    .map(dumps),
    json_values.map(dumps),
    deep,
    st.builds(with_raw, st.just("x"), st.sampled_from(BODY_FIELDS),
              st.one_of(deep, st.sampled_from(["NaN", "Infinity", "1e400", '"\\ud800"',
                                               '"\\u0000"', "1" * 5000]))),
    st.text(max_size=60),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)
form_bodies = st.dictionaries(
    st.sampled_from(BODY_FIELDS), st.one_of(texts, json_values.map(dumps)), max_size=4
).map(lambda d: urlencode(d, quote_via=quote, errors="surrogatepass"))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """(method, path with query, content type, body)."""
    if draw(st.integers(0, 4)):
        template = draw(st.sampled_from(API_PATHS))
        content_type, body = "application/json", draw(st.one_of(st.just(""), json_bodies))
    else:
        template = draw(st.sampled_from(HTML_PATHS))
        content_type, body = "application/x-www-form-urlencoded", draw(form_bodies)
    method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
    path = template.replace("{conversation_id}", draw(ids(CONVERSATION_ID))).replace(
        "{message_id}", draw(ids(REPLY_ID))).replace("{attachment_id}", draw(ids(REPLY_ID)))
    for name in ("{queue_id}", "{item_id}"):  # review queues and items: integer ids
        path = path.replace(name, draw(st.one_of(
            st.sampled_from(["1", "2", "0", "99999999999999999999"]), path_ids)))
    query = draw(queries)
    return method, path + ("?" + query if query else ""), content_type, body


def operation_of(path: str) -> str | None:
    """The documented path a request path routes to; None for HTML pages and unknown paths."""
    try:
        match = resolve(unquote(path.split("?", 1)[0]))
    except Resolver404:
        return None
    if match.func is api.not_found or not match.route.startswith("api/v1/"):
        return None
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", match.route)


def restore(owner: Any, other: Any, agent: Agent) -> None:
    """Fuzzed DELETEs remove the fixed objects; put them back so the next example finds them."""
    conversation, _ = Conversation.objects.get_or_create(
        pk=CONVERSATION_ID, defaults={"owner": owner, "agent": agent, "title": "Fuzzed"})
    Message.objects.get_or_create(
        pk=REPLY_ID, defaults={"conversation": conversation, "role": "assistant",
                               "content": "Hello", "seq": 1})
    Conversation.objects.get_or_create(
        pk=FOREIGN_ID, defaults={"owner": other, "agent": agent, "title": "Not yours"})


def send(client: Client, token: str, method: str, path: str, content_type: str,
         body: str) -> Any:
    response = client.generic(
        method, path, body.encode("utf-8", "surrogatepass"), content_type=content_type,
        HTTP_X_CSRFTOKEN=token,
    )
    if response.streaming:
        # The export fails, if at all, inside its body: read all of it.
        b"".join(response.streaming_content)
    return response


def check_response(request: tuple[str, str, str, str], response: Any,
                   seen: dict[tuple[str, str], set[int]]) -> None:
    method, path, _, _ = request
    status = response.status_code
    assert status < 500, (request, status)
    operation = operation_of(path)
    if not path.startswith("/api/"):
        return
    if status >= 400:
        assert response["Content-Type"] == "application/json", (request, response.content[:300])
        body = json.loads(response.content)
        assert set(body) == {"error"}, (request, body)
        assert set(body["error"]) == {"code", "message", "details"}, (request, body)
        assert isinstance(body["error"]["code"], str), (request, body)
        assert isinstance(body["error"]["message"], str), (request, body)
        assert isinstance(body["error"]["details"], dict), (request, body)
    if operation is None:
        assert status in (400, 404), (request, status)
        return
    documented = DOCUMENTED.get((method, operation))
    if documented is None:
        # 400: a NUL in the query string is refused before any view.
        assert status in (400, 405), (request, status)
        return
    seen.setdefault((method, operation), set()).add(status)
    if status < 300 and method in ("POST", "PUT", "PATCH"):
        # A blank body (ASCII whitespace, as bytes.strip sees it) is no body: `{}`.
        assert not expected_refusal(request[3].strip(" \t\n\r\x0b\x0c") or "{}"), (
            request, status)
    assert status in documented, (request, status, sorted(documented))


@pytest.mark.django_db
def test_it_survives_hostile_http_requests(
    staff: Any, bob: Any, demo_agent: Agent, trap: Trap
):
    """As a superuser, so the reviewers' export is reached too."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    client.get("/")
    token = client.cookies["csrftoken"].value
    seen: dict[tuple[str, str], set[int]] = {}
    count = 0
    deleted = True  # the fixed objects are created by the first example
    started = time.monotonic()

    @given(request=requests())
    @hsettings(max_examples=HTTP_EXAMPLES, **COMMON)
    # Well-formed requests, so each write is seen to succeed whatever hypothesis draws.
    @example(request=("POST", "/api/v1/conversations", "application/json", '{"title": "t"}'))
    @example(request=("PATCH", f"/api/v1/conversations/{CONVERSATION_ID}", "application/json",
                      '{"archived": true}'))
    @example(request=("PUT", f"/api/v1/messages/{REPLY_ID}/feedback", "application/json",
                      '{"score": -1}'))
    @example(request=("GET", "/api/v1/conversations/export?format=jsonl", "", ""))
    # Every operation is reached whatever hypothesis draws (the review API of issue 13 too).
    @example(request=("POST", f"/api/v1/conversations/{CONVERSATION_ID}/attachments",
                      "application/json", "{}"))
    @example(request=("POST", "/api/v1/scores", "application/json",
                      f'{{"config": "x", "value": 1, "message_id": "{REPLY_ID}"}}'))
    @example(request=("GET", "/api/v1/scores?author=root", "", ""))
    @example(request=("GET", "/api/v1/review/queues", "", ""))
    @example(request=("POST", "/api/v1/review/queues/1/claim", "application/json", ""))
    @example(request=("POST", "/api/v1/review/items/1/complete", "application/json",
                      '{"scores": []}'))
    @example(request=("POST", "/api/v1/review/items/1/skip", "application/json", ""))
    # The inputs of issue 8.
    @example(request=("GET", "/api/v1/conversations?page=%C2%B2", "", ""))
    @example(request=("GET", "/?page=%C2%B2", "", ""))
    @example(request=("GET", "/api/v1/conversations/export?format=jsonl"
                      "&since=9999-12-31T23:59:59-14:00", "", ""))
    @example(request=("GET", "/api/v1/conversations/export?format=csv&until=9999-12-31", "",
                      ""))
    @example(request=("GET", "/api/v1/conversations/export?format=jsonl"
                      "&since=0001-01-01T00:00:00%2B14:00", "", ""))
    @example(request=("GET", "/api/v1/conversations?q=%00", "", ""))
    @example(request=("GET", "/api/v1/conversations/%0A", "", ""))  # newline in a path
    @example(request=("POST", "/api/v1/conversations", "application/json",
                      '{"title": "hi \\ud800"}'))
    @example(request=("POST", "/api/v1/conversations", "application/json",
                      '{"metadata": {"a": NaN}}'))
    @example(request=("PATCH", f"/api/v1/conversations/{CONVERSATION_ID}", "application/json",
                      '{"metadata": {"a": Infinity}, "title": "x\\u0000"}'))
    @example(request=("PATCH", f"/api/v1/conversations/{CONVERSATION_ID}", "application/json",
                      with_raw("x", "metadata", nested(1000, "{"))))
    @example(request=("PUT", f"/api/v1/messages/{REPLY_ID}/feedback", "application/json",
                      '{"score": 1, "comment": "\\udfff"}'))
    @example(request=("POST", "/conversations/new", "application/x-www-form-urlencoded",
                      urlencode({"title": "t", "metadata": '{"a": "\\ud800", "b": NaN}'})))
    @example(request=("POST", "/conversations/new", "application/x-www-form-urlencoded",
                      urlencode({"metadata": nested(1000, "[")})))
    def fuzz(request: tuple[str, str, str, str]) -> None:
        nonlocal count, deleted
        count += 1
        if deleted:
            restore(staff, bob, demo_agent)
        method, path = request[:2]
        deleted = method == "DELETE" or "/delete" in path
        check_response(request, send(client, token, *request), seen)

    fuzz()
    elapsed = time.monotonic() - started
    assert count >= HTTP_EXAMPLES
    # Every documented operation was reached, and the writes went through at least once.
    assert set(seen) == set(DOCUMENTED), sorted(set(DOCUMENTED) - set(seen))
    for operation in [("POST", "/api/v1/conversations"),
                      ("PATCH", "/api/v1/conversations/{conversation_id}"),
                      ("GET", "/api/v1/conversations/export")]:
        assert min(seen[operation]) < 300, (operation, seen[operation])
    assert trap.tracebacks() == []
    assert elapsed < TIME_BUDGET_S, elapsed
