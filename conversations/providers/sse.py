"""HTTP plumbing shared by every provider: the client, SSE streams and JSON calls.

Every vendor stream goes through `open_sse`, so the SSE edge cases (docs/providers.md) are
handled once: the status and content type are checked before any event is read (httpx-sse yields
events whatever the status, §C.12/14), the body is decoded as UTF-8 with an optional BOM whatever
`charset=` says (§C.6/7), events without data are dropped (§C.5) and one event's size is capped
(§C.19). Nothing here retries: every vendor stream is a POST that creates a message or a run, and
sending it twice would send the user's message twice (§C.10).

Transport faults (`httpx.TimeoutException`, `httpx.ConnectError`, ...) escape unchanged; the relay
maps them with `base.error_for_exception`, so that mapping lives in one place.
"""

from __future__ import annotations

import json as jsonlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

# httpx-sse's public iterator has no hook to bound an event while it is being read; its decoders
# (unchanged since 0.4.2, pinned >= 0.4.3 in pyproject.toml) are driven directly so the cap below
# applies while bytes arrive, not after an unbounded event has been buffered.
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from conversations.events import ErrorCode
from conversations.providers.base import AgentConfig, Timeouts, VendorError, error_for_status

DONE = "[DONE]"

# One event's text (all its lines) may not exceed 1 MiB of characters. The largest legitimate
# event is a vendor repeating a whole reply in its terminal event: a 128k-token reply is ~512 KiB,
# so this leaves 2x headroom while bounding what a runaway stream can make one run buffer.
MAX_EVENT_CHARS = 1024 * 1024

# Vendor messages quoted to the user are cut to 300 characters: enough for any real error
# sentence, short enough that an HTML error page does not flood the chat.
MAX_VENDOR_MESSAGE_CHARS = 300

# Error and unexpected bodies are read up to 64 KiB: the message is cut to 300 characters anyway,
# and a proxy answering with a huge (or endless) page must not stall the run.
MAX_ERROR_BODY_BYTES = 64 * 1024


@cache
def _ssl_context() -> ssl.SSLContext:
    # Building a context loads the CA bundle: ~20 ms of blocking CPU per client, measured. Sharing
    # one keeps per-run clients cheap; an SSLContext is safe to share between connections.
    return httpx.create_ssl_context()


def build_client(timeouts: Timeouts, *, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """A client for one provider call, used as `async with build_client(self.timeouts) as c:`.

    Timeouts are always explicit: httpx's default of 5 s per read kills streams during long tool
    or thinking gaps (§C.18). httpx retries nothing by default and we add nothing; redirects are not
    followed, since a redirected POST loses its body and usually means a wrong base URL.
    """
    return httpx.AsyncClient(
        timeout=timeouts.httpx(),
        follow_redirects=False,
        verify=_ssl_context(),
        headers=headers,
    )


class SSEStream:
    """An open, checked SSE body, read from its decoded text chunks. Iterate `events()` once.

    The chunks are any async iterator of text, so a provider can adjust the body before it is
    parsed (dynamiq.py adds the blank line its vendor's last event lacks).
    """

    def __init__(self, chunks: AsyncIterator[str], json_body: Any = None) -> None:
        self.chunks = chunks
        # Set only when `open_sse(allow_json=True)` received a JSON answer instead of a stream.
        self.json_body = json_body

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        """Events with non-empty data, `[DONE]` included (see `is_done`).

        Comments (heartbeats) never reach here; the client's read timeout is the idle timeout and
        each heartbeat resets it. An event cut off by the end of the stream is dropped, as the
        spec says (§C.9): providers see the stream end without their terminal event.
        """
        if self.json_body is not None:
            return
        lines = SSELineDecoder()
        decoder = SSEDecoder()
        event_chars = 0
        partial_chars = 0
        async for text in self.chunks:
            decoded = lines.decode(text)
            if decoded:
                partial_chars = len(text) - 1 - max(text.rfind("\n"), text.rfind("\r"))
            else:
                partial_chars += len(text)
            for line in decoded:
                event_chars = event_chars + len(line) if line else 0
                if event_chars > MAX_EVENT_CHARS:
                    raise _oversized()
                sse = decoder.decode(line)
                if sse is not None and sse.data:
                    yield sse
            if event_chars + partial_chars > MAX_EVENT_CHARS:
                raise _oversized()
        for line in lines.flush():
            sse = decoder.decode(line)
            if sse is not None and sse.data:
                yield sse


def _oversized() -> VendorError:
    return VendorError(
        ErrorCode.VENDOR_PROTOCOL,
        f"The vendor sent a single event larger than {MAX_EVENT_CHARS} characters.",
    )


def is_done(sse: ServerSentEvent) -> bool:
    """The `[DONE]` sentinel (OpenAI Chat Completions, AG-Kit): not JSON, check it first."""
    return sse.data.strip() == DONE


def parse_json(sse: ServerSentEvent) -> Any:
    try:
        return jsonlib.loads(sse.data)
    except ValueError:
        raise VendorError(
            ErrorCode.VENDOR_PROTOCOL,
            f"The vendor sent an event that is not valid JSON: {_truncate(sse.data)!r}",
        ) from None


@asynccontextmanager
async def open_sse(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    agent: AgentConfig,
    json: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    allow_json: bool = False,
) -> AsyncIterator[SSEStream]:
    """Send a request and yield the checked stream; leaving the block closes the connection.

    Raises `VendorError`: the `error_for_status` code for a status >= 400 (with the vendor's own
    message), `agent_misconfigured` for a redirect, `vendor_protocol` for a 2xx that is not an
    event stream. With `allow_json=True` a 2xx JSON answer is parsed into `stream.json_body`
    instead (for vendors that may ignore `"stream": true`).
    """
    request_headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
    request_headers.update(headers or {})
    async with client.stream(
        method, url, json=json, headers=request_headers, params=params
    ) as response:
        await _raise_for_status(response, agent)
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" in content_type.lower():
            yield SSEStream(_text_chunks(response))
            return
        body = await read_capped(response)
        parsed = _json_or_none(body)
        if allow_json and parsed is not None:
            yield SSEStream(_text_chunks(response), json_body=parsed)
            return
        kind = "JSON" if parsed is not None else repr(content_type.partition(";")[0] or "no type")
        said = vendor_error_message(parsed if parsed is not None else body)
        raise VendorError(
            ErrorCode.VENDOR_PROTOCOL,
            f"The vendor answered {response.status_code} with {kind} instead of an event stream"
            + (f": {said}" if said else "."),
            status=response.status_code,
            details={"content_type": content_type, "body": parsed if parsed is not None else said},
        )


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    agent: AgentConfig,
    json: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """A plain JSON call with the same error mapping as `open_sse`; `None` for an empty body."""
    request_headers = {"Accept": "application/json"}
    request_headers.update(headers or {})
    response = await client.request(method, url, json=json, headers=request_headers, params=params)
    await _raise_for_status(response, agent)
    if not response.content.strip():
        return None
    try:
        return jsonlib.loads(response.content)
    except ValueError:
        raise VendorError(
            ErrorCode.VENDOR_PROTOCOL,
            f"The vendor answered {response.status_code} with something that is not JSON: "
            f"{_truncate(response.content.decode('utf-8', 'replace'))!r}",
            status=response.status_code,
        ) from None


async def delete_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    agent: AgentConfig,
    headers: dict[str, str] | None = None,
) -> Any:
    """`DELETE url` with `request_json`'s error mapping, except that a 404 answers None: the vendor
    already has no such thing, which is what deleting wanted, and telling the user "the vendor
    copy could not be deleted" would be false."""
    try:
        return await request_json(client, "DELETE", url, agent=agent, headers=headers)
    except VendorError as exc:
        if exc.status == 404:
            return None
        raise


def json_or_text(data: str) -> Any:
    """An `event: error`'s data, parsed when it is JSON: it fails the run whatever it holds."""
    try:
        return jsonlib.loads(data)
    except ValueError:
        return data


def vendor_error_message(body: Any) -> str:
    """The human part of a vendor error body, from the shapes our vendors use (§A5):
    `{"error": {"message"}}`, `{"error": "x", "message": "y"}`, `{"message"}`, `{"detail"}`
    (FastAPI, also as a list of `{"msg"}`), `{"errors": [{"message"}]}`, or plain text."""
    if isinstance(body, bytes):
        parsed = _json_or_none(body)
        body = parsed if parsed is not None else body.decode("utf-8", "replace")
    return _truncate(_message_in(body))


def _message_in(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return " ".join(body.split())
    if isinstance(body, list):
        return "; ".join(filter(None, (_message_in(item) for item in body)))
    if not isinstance(body, dict):
        return str(body)
    for key in ("message", "detail", "msg", "error_description", "title"):
        if body.get(key):
            return _message_in(body[key])
    for key in ("error", "errors"):
        if body.get(key):
            return _message_in(body[key])
    return jsonlib.dumps(body, ensure_ascii=False)


def _truncate(text: str) -> str:
    if len(text) <= MAX_VENDOR_MESSAGE_CHARS:
        return text
    return text[: MAX_VENDOR_MESSAGE_CHARS - 1] + "…"


def _json_or_none(body: bytes) -> Any:
    try:
        return jsonlib.loads(body)
    except ValueError:
        return None


async def _text_chunks(response: httpx.Response) -> AsyncIterator[str]:
    # httpx's incremental "utf-8-sig" decoder strips one leading BOM even when its three bytes
    # arrive in separate reads, and replaces whatever `charset=` the vendor announced (§C.6/7).
    response.encoding = "utf-8-sig"
    async for text in response.aiter_text():
        yield text


async def read_capped(response: httpx.Response) -> bytes:
    """The body's first MAX_ERROR_BODY_BYTES, for an error or unexpected answer."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_ERROR_BODY_BYTES:
            break
    return bytes(body[:MAX_ERROR_BODY_BYTES])


async def _raise_for_status(response: httpx.Response, agent: AgentConfig) -> None:
    status = response.status_code
    if response.is_redirect:
        location = response.headers.get("location", "")
        raise VendorError(
            ErrorCode.AGENT_MISCONFIGURED,
            f"The vendor redirected the request ({status}) to {location or 'another address'}; "
            "check the agent's base URL.",
            status=status,
        )
    if status >= 400:
        body = await read_capped(response)
        # Quote what a vendor API says (JSON or plain text), never another service's page: a
        # misconfigured base URL must not turn the chat or "Test connection" into a reader of
        # internal web pages.
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        quotable = kind in ("", "text/plain") or kind.endswith(("/json", "+json"))
        raise error_for_status(status, vendor_error_message(body) if quotable else "", agent)
