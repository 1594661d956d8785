"""Dimedove Apps API: vendor-side conversations, SSE replies with `event:` names, client tools.

Wire format: docs/providers/dimedove.md (from Dimedove's OpenAPI document). A run
creates the vendor conversation when we have none yet (`POST /v1/apps/{app_id}/conversations`),
then sends the user's message to it (`POST /v1/apps/{app_id}/conversations/{id}`). The reply is
either an SSE stream whose events are named by `event:` (`response.created`, `.output_text.*`,
`.function_call*`, `.data_spec`, `.completed`, `.failed`) or, with the `stream` option off, one
`ResponseSchema` JSON object. Dimedove keeps the history itself, so only the new message is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent

from conversations.events import (
    ErrorCode,
    ProviderEvent,
    RunCompleted,
    RunFailed,
    TextDelta,
    TitleGenerated,
    VendorConversation,
    VendorExtra,
)
from conversations.providers.base import (
    AgentConfig,
    Capabilities,
    Provider,
    RunRequest,
    VendorError,
)
from conversations.providers.sse import (
    build_client,
    is_done,
    open_sse,
    request_json,
    vendor_error_message,
)
from conversations.providers.toolcalls import ToolCalls, arguments_text

logger = logging.getLogger(__name__)

# The documented paths all start with /v1 (OpenAPI `servers`: https://api.dimedove.com/v1).
API_PREFIX = "/v1"

# Dimedove "will auto-generate a title after the first exchange" (create-conversation docs), and
# returns it only on conversation objects, never on a response. So the provider reads the
# conversation back after a completed reply while the conversation is this young: 4 earlier
# turns = the first two exchanges, one more chance if the title was not ready after the first.
# Later runs never pay the extra request.
TITLE_FETCH_MAX_HISTORY = 4
# The title read happens before the reply is reported complete, so it is capped well below the
# stream's read timeout: a slow title must not hold a finished reply for long.
TITLE_FETCH_SECONDS = 5.0

CONVERSATION_LOST = "Dimedove no longer knows this conversation; start a new conversation."


class DimedoveProvider(Provider):
    kind = "dimedove"
    # Dimedove keeps the history by conversation id and takes no files.
    capabilities = Capabilities(branches_in_place=False)
    default_base_url = "https://api.dimedove.com"
    required_options: ClassVar[dict[str, str]] = {
        "app_id": "the Dimedove app id from the dashboard, as in /v1/apps/{app_id}",
    }
    # Optional boolean options and their defaults.
    flag_options: ClassVar[dict[str, bool]] = {
        # false: ask for the whole reply as one JSON object (`"stream": false`).
        "stream": True,
        # false: never read the conversation back for Dimedove's generated title.
        "fetch_title": True,
    }

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> list[str]:
        problems = super().validate_options(options)
        problems.extend(
            f"option {name!r} must be true or false, not {options[name]!r}"
            for name in cls.flag_options
            if name in options and _flag(options[name]) is None
        )
        return problems

    async def stream(self, request: RunRequest) -> AsyncIterator[ProviderEvent]:
        agent = request.agent
        app_url = self._app_url(agent)
        streaming = self._option(agent, "stream")
        reader = _ReplyReader()
        async with build_client(self.timeouts) as client:
            conversation_id = request.vendor_conversation_id
            if not conversation_id:
                conversation = await self._create_conversation(client, request, app_url)
                conversation_id = conversation["id"]
                yield VendorConversation(conversation_id)
                for event in reader.titles_in(conversation):
                    yield event
            url = f"{app_url}/conversations/{quote(conversation_id, safe='')}"
            body = {
                "message": {"role": "user", "content": request.message},
                # Always explicit: "If omitted, the app's configured default is used" (OpenAPI
                # SendMessageRequest.stream), and the overview page even says omitted = JSON.
                "stream": streaming,
                # "Pass the latest snapshot on any message ... it will be persisted as the
                # conversation's latest metadata" (SendMessageRequest.metadata). Sent even when
                # empty: leaving it out would keep a snapshot the user has since cleared.
                "metadata": dict(request.metadata),
            }
            terminal: RunCompleted | RunFailed | None = None
            if streaming:
                # aclosing: leaving the loop at the terminal event closes the vendor stream now,
                # not whenever the inner generator is garbage-collected.
                async with contextlib.aclosing(
                    self._send_streaming(client, agent, url, body, reader)
                ) as events:
                    async for event in events:
                        if isinstance(event, RunCompleted | RunFailed):
                            terminal = event
                            break
                        yield event
            else:
                reply = await self._send_json(client, agent, url, body)
                for event in reader.response(reply):
                    if isinstance(event, RunCompleted | RunFailed):
                        terminal = event
                        break
                    yield event
            if terminal is None:
                # The stream ended without response.completed/failed: no terminal event, so the
                # relay reports the reply as truncated.
                return
            if (
                isinstance(terminal, RunCompleted)
                and reader.titles is None
                and self._wants_title(request)
            ):
                titles = await self._fetch_titles(client, agent, url)
                if titles:
                    yield TitleGenerated(titles)
            yield terminal

    async def delete_conversation(self, agent: AgentConfig, vendor_conversation_id: str) -> None:
        """Soft delete at Dimedove ("no longer appear in list requests", OpenAPI DELETE)."""
        url = f"{self._app_url(agent)}/conversations/{quote(vendor_conversation_id, safe='')}"
        async with build_client(self.timeouts) as client:
            try:
                await request_json(
                    client, "DELETE", url, agent=agent, headers=self.auth_headers(agent)
                )
            except VendorError as exc:
                if exc.status != 404:
                    raise
                # The conversation is already gone there (deleted from the dashboard), or the
                # agent's app_id changed since it was created: either way nothing was deleted,
                # which the user is told rather than silently reassured.
                raise VendorError(
                    ErrorCode.VENDOR_NOT_FOUND,
                    "Dimedove does not know this conversation (already deleted there, or the "
                    "agent's app_id changed); nothing was deleted at the vendor.",
                    status=404,
                    details={"vendor_message": exc.message},
                ) from exc

    # Requests ----------------------------------------------------------------------------------

    async def _create_conversation(
        self, client: httpx.AsyncClient, request: RunRequest, app_url: str
    ) -> dict[str, Any]:
        # ConversationCreateRequest fields are all optional; empty ones are left out so Dimedove
        # generates a title ("If not provided, the system will auto-generate a title") and does
        # not link the conversation to an empty user id.
        body: dict[str, Any] = {}
        if request.external_user_id:
            body["external_user_id"] = request.external_user_id
        if request.title:
            body["title"] = request.title
        if request.metadata:
            body["metadata"] = dict(request.metadata)
        try:
            conversation = await request_json(
                client,
                "POST",
                f"{app_url}/conversations",
                agent=request.agent,
                json=body,
                headers=self.auth_headers(request.agent),
            )
        except VendorError as exc:
            if exc.status != 404:
                raise
            # No conversation is involved yet, so a 404 ("App or conversation not found",
            # overview error table) can only mean the app.
            app_id = str(request.agent.options.get("app_id"))
            raise VendorError(
                ErrorCode.VENDOR_NOT_FOUND,
                f"Dimedove does not know the app {app_id!r}: check the agent's app_id option. "
                f"({exc.message})",
                status=404,
            ) from exc
        if not isinstance(conversation, dict) or not _is_id(conversation.get("id")):
            raise VendorError(
                ErrorCode.VENDOR_PROTOCOL,
                "Dimedove created a conversation but its answer has no id: "
                + (vendor_error_message(conversation) or "empty body"),
            )
        conversation["id"] = str(conversation["id"])
        return conversation

    async def _send_streaming(
        self,
        client: httpx.AsyncClient,
        agent: AgentConfig,
        url: str,
        body: dict[str, Any],
        reader: _ReplyReader,
    ) -> AsyncIterator[ProviderEvent]:
        opened = False
        try:
            async with open_sse(
                client,
                "POST",
                url,
                agent=agent,
                json=body,
                headers=self.auth_headers(agent),
                # An app may answer JSON whatever `stream` says (the overview and the OpenAPI
                # disagree on the default); that body is the same ResponseSchema.
                allow_json=True,
            ) as stream:
                opened = True
                if stream.json_body is not None:
                    for event in reader.response(stream.json_body):
                        yield event
                    return
                async for sse in stream.events():
                    for event in reader.feed(sse):
                        yield event
        except VendorError as exc:
            if opened or exc.status != 404:
                raise
            raise _conversation_lost(exc) from exc

    async def _send_json(
        self, client: httpx.AsyncClient, agent: AgentConfig, url: str, body: dict[str, Any]
    ) -> Any:
        try:
            return await request_json(
                client, "POST", url, agent=agent, json=body, headers=self.auth_headers(agent)
            )
        except VendorError as exc:
            if exc.status != 404:
                raise
            raise _conversation_lost(exc) from exc

    async def _fetch_titles(
        self, client: httpx.AsyncClient, agent: AgentConfig, url: str
    ) -> dict[str, str] | None:
        """`generated_title` from the conversation (ConversationDetailSchema); best effort."""
        try:
            async with asyncio.timeout(TITLE_FETCH_SECONDS):
                conversation = await request_json(
                    client, "GET", url, agent=agent, headers=self.auth_headers(agent)
                )
        except (VendorError, httpx.HTTPError, TimeoutError) as exc:
            # The reply itself is complete; a missing title is not worth failing it for.
            logger.info("Dimedove title read for %s failed: %s", agent.slug, exc)
            return None
        return _titles(conversation)

    # Options -----------------------------------------------------------------------------------

    def _app_url(self, agent: AgentConfig) -> str:
        base_url = self.check_agent(agent)
        # The OpenAPI server URL (https://api.dimedove.com/v1) is what people copy; the path
        # below carries the version, so a base URL ending in it is taken as the host root.
        if base_url.endswith(API_PREFIX):
            base_url = base_url[: -len(API_PREFIX)]
        app_id = quote(str(agent.options["app_id"]), safe="")
        return f"{base_url}{API_PREFIX}/apps/{app_id}"

    def _option(self, agent: AgentConfig, name: str) -> bool:
        value = _flag(agent.options.get(name, self.flag_options[name]))
        return self.flag_options[name] if value is None else value

    def _wants_title(self, request: RunRequest) -> bool:
        # A conversation with its own title gets no generated one ("If not provided, the system
        # will auto-generate a title", ConversationCreateRequest.title).
        return (
            self._option(request.agent, "fetch_title")
            and not request.title
            and len(request.history) < TITLE_FETCH_MAX_HISTORY
        )


# Reading replies -------------------------------------------------------------------------------


class _ToolCalls(ToolCalls):
    """Tool calls keyed by `call_id`, each started and completed exactly once.

    Dimedove's docs disagree on how a streamed call arrives: the overview lists
    `response.function_call.start` / `.function_call_arguments.delta|done`, custom-tools.mdx says
    "function_call items are delivered via the `response.output_item.done` event". Both are
    accepted; whichever completes a call first wins, and the other is ignored (sealed).
    """

    def __init__(self) -> None:
        super().__init__(sealed=True)
        self.by_index: dict[Any, str] = {}

    def call_id(self, raw: Any, output_index: Any) -> str:
        # `call_id` is nullable in ResponseOutputItem; the output index still links the events.
        if _is_id(raw):
            call_id = str(raw)
            if output_index is not None:
                self.by_index.setdefault(output_index, call_id)
            return call_id
        if output_index in self.by_index:
            return self.by_index[output_index]
        call_id = f"call_{output_index if output_index is not None else len(self.calls)}"
        if output_index is not None:
            self.by_index[output_index] = call_id
        return call_id

    def complete_raw(self, call_id: str, name: Any, arguments: Any) -> Iterator[ProviderEvent]:
        """`complete` with the name and arguments as Dimedove sent them."""
        # "The `arguments` field is always `null` for client tools" (custom-tools.mdx): then the
        # streamed fragments, if any, are the arguments.
        whole = None if arguments is None else arguments_text(arguments)
        yield from self.complete(call_id, _string(name), whole)


Handler = Callable[["_ReplyReader", dict[str, Any]], Iterator[ProviderEvent]]


class _ReplyReader:
    """Turns one Dimedove reply (SSE events or a ResponseSchema) into provider events."""

    def __init__(self) -> None:
        self.calls = _ToolCalls()
        # Streamed text per (output_index, content_index), checked against `.output_text.done`.
        self.texts: dict[tuple[Any, Any], str] = {}
        # Set when a reply payload carried `generated_title` (not documented on responses, but
        # then the conversation need not be read back).
        self.titles: dict[str, str] | None = None

    # Streaming -------------------------------------------------------------------------------

    def feed(self, sse: ServerSentEvent) -> Iterator[ProviderEvent]:
        if is_done(sse):
            # Not documented by Dimedove, but its cookbook's parser stops on `[DONE]`; the
            # terminal event is response.completed, so the sentinel itself means nothing.
            return
        try:
            payload: Any = json.loads(sse.data)
            valid = True
        except ValueError:
            payload, valid = sse.data, False
        # Dispatch on `event:`: response.created and response.completed carry no `type` (§A1).
        # httpx-sse names an unnamed event "message" (§C.17); then `type` is all there is.
        name = sse.event
        if name == "message" and isinstance(payload, dict):
            name = _string(payload.get("type")) or name
        if name == "error":
            # Not in Dimedove's catalogue; an `event: error` is a failure on every SSE API we
            # relay (§C.15), whatever its data.
            yield _failure(payload)
            return
        handler = self.HANDLERS.get(name)
        if handler is None:
            yield VendorExtra("unknown_events", {"event": name, "data": payload})
            return
        if not valid or not isinstance(payload, dict):
            yield RunFailed(
                ErrorCode.VENDOR_PROTOCOL,
                f"Dimedove sent a {name} event that is not a JSON object: {sse.data[:100]!r}",
            )
            return
        yield from handler(self, payload)

    def _created(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        yield from self.titles_in(payload)

    def _text_delta(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        delta = payload.get("delta")
        if isinstance(delta, str) and delta:
            key = _text_key(payload)
            self.texts[key] = self.texts.get(key, "") + delta
            yield TextDelta(delta)

    def _text_done(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        # `.done` repeats the "Complete assembled text" (overview). It adds nothing when the
        # deltas arrived; it supplies what they lacked (no deltas, a missing tail); a text that
        # contradicts the streamed one is kept for review, never shown twice.
        text = payload.get("text")
        if not isinstance(text, str):
            return
        key = _text_key(payload)
        streamed = self.texts.get(key, "")
        if text == streamed:
            return
        if text.startswith(streamed):
            self.texts[key] = text
            yield TextDelta(text[len(streamed) :])
            return
        yield VendorExtra(
            "text_mismatch",
            {"output_index": key[0], "content_index": key[1], "text": text},
        )

    def _call_start(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        call_id = self.calls.call_id(payload.get("call_id"), payload.get("output_index"))
        yield from self.calls.start(call_id, _string(payload.get("name")))

    def _call_delta(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        call_id = self.calls.call_id(payload.get("call_id"), payload.get("output_index"))
        yield from self.calls.add(call_id, _string(payload.get("delta")))

    def _call_done(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        call_id = self.calls.call_id(payload.get("call_id"), payload.get("output_index"))
        yield from self.calls.complete_raw(call_id, payload.get("name"), payload.get("arguments"))

    def _item_done(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        item = payload.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            call_id = self.calls.call_id(item.get("call_id"), payload.get("output_index"))
            yield from self.calls.complete_raw(call_id, item.get("name"), item.get("arguments"))
        elif isinstance(item, dict) and item.get("type") == "message":
            # The message's text already arrived as output_text deltas.
            return
        else:
            yield VendorExtra(
                "unknown_events", {"event": "response.output_item.done", "data": payload}
            )

    def _data_spec(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        # A JSON Patch (RFC 6902) for Generative UI; "Multiple response.data_spec events may be
        # emitted during a single response" (overview), each kept in order.
        yield VendorExtra("data_spec", payload.get("data"))

    def _completed(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        yield from self.titles_in(payload)
        yield from self.calls.finish()
        yield RunCompleted(_string(payload.get("status")) or "completed")

    def _failed(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        yield _failure(payload)

    HANDLERS: ClassVar[dict[str, Handler]] = {
        "response.created": _created,
        "response.output_text.delta": _text_delta,
        "response.output_text.done": _text_done,
        "response.function_call.start": _call_start,
        "response.function_call_arguments.delta": _call_delta,
        "response.function_call_arguments.done": _call_done,
        "response.output_item.done": _item_done,
        "response.data_spec": _data_spec,
        "response.completed": _completed,
        "response.failed": _failed,
    }

    # Whole responses -------------------------------------------------------------------------

    def response(self, body: Any) -> Iterator[ProviderEvent]:
        """A ResponseSchema: `{id, conversation_id, output: [...], status}`."""
        if not isinstance(body, dict) or not isinstance(body.get("output") or [], list):
            yield RunFailed(
                ErrorCode.VENDOR_PROTOCOL,
                "Dimedove answered with JSON that is not a response: "
                + (vendor_error_message(body) or "empty body"),
            )
            return
        if body.get("error") and "output" not in body:
            yield _failure(body)
            return
        yield from self.titles_in(body)
        for index, item in enumerate(body.get("output") or ()):
            yield from self._output_item(index, item)
        if body.get("status") == "failed":
            yield _failure(body)
            return
        yield from self.calls.finish()
        yield RunCompleted(_string(body.get("status")) or "completed")

    def _output_item(self, index: int, item: Any) -> Iterator[ProviderEvent]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                text = content
            else:
                text = "".join(
                    part["text"]
                    for part in content or ()
                    if isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                )
            if text:
                yield TextDelta(text)
        elif kind == "function_call":
            call_id = self.calls.call_id(item.get("call_id"), index)
            yield from self.calls.complete_raw(call_id, item.get("name"), item.get("arguments"))
        elif kind == "data_spec":
            yield VendorExtra("data_spec", item.get("data"))
        else:
            yield VendorExtra("unknown_output_items", item)

    def titles_in(self, payload: dict[str, Any]) -> Iterator[ProviderEvent]:
        titles = _titles(payload)
        if titles and titles != self.titles:
            self.titles = titles
            yield TitleGenerated(titles)


# Helpers ---------------------------------------------------------------------------------------


def _titles(obj: Any) -> dict[str, str] | None:
    """`generated_title` ({"en-ca": ..., "fr-ca": ...}, nullable) without empty entries."""
    raw = obj.get("generated_title") if isinstance(obj, dict) else None
    if not isinstance(raw, dict):
        return None
    titles = {str(k): v.strip() for k, v in raw.items() if isinstance(v, str) and v.strip()}
    return titles or None


def _failure(payload: Any) -> RunFailed:
    # response.failed is `{id, status: "failed", error?: {message}}` (cookbook DimedoveSSEEvent);
    # the error, when present, has the OpenAIErrorDetail shape {message, type, param, code}.
    error = payload.get("error") if isinstance(payload, dict) else payload
    details = error if isinstance(error, dict) else {}
    message = vendor_error_message(error) if error else ""
    return RunFailed(
        ErrorCode.VENDOR_ERROR, message or "Dimedove reported that the reply failed.", details
    )


def _conversation_lost(exc: VendorError) -> VendorError:
    # The conversation id in the path is the one thing a send adds to create's; an unknown app
    # would have failed creating it, and starting over surfaces a wrong app_id as
    # vendor_not_found on the create.
    return VendorError(
        ErrorCode.VENDOR_CONVERSATION_LOST,
        CONVERSATION_LOST,
        status=404,
        details={"vendor_message": exc.message},
    )


def _text_key(payload: dict[str, Any]) -> tuple[Any, Any]:
    return payload.get("output_index", 0), payload.get("content_index", 0)


def _flag(value: Any) -> bool | None:
    """A boolean option: JSON true/false (`--option stream=false`), or the same words typed as
    text in the admin."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value) != ""
