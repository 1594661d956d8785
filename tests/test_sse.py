"""SSE reading shared by every provider, against a real loopback server (the edge cases listed
in docs/providers.md)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from conversations.events import ErrorCode
from conversations.providers.base import AgentConfig, Timeouts, VendorError, error_for_exception
from conversations.providers.sse import (
    MAX_EVENT_CHARS,
    build_client,
    is_done,
    open_sse,
    parse_json,
    request_json,
    vendor_error_message,
)
from tests.fakevendor import (
    FakeVendor,
    Hangup,
    Pause,
    Script,
    json_script,
    sse,
    sse_script,
)

AGENT = AgentConfig(slug="acme", provider="openai", token_env="ACME_TOKEN")
FAST = Timeouts(connect=2.0, read=2.0)


async def read_events(
    vendor: FakeVendor, script: Script, timeouts: Timeouts = FAST
) -> list[tuple[str, str]]:
    vendor.add_route("POST", "/stream", script)
    async with (
        build_client(timeouts) as client,
        open_sse(client, "POST", f"{vendor.url}/stream", agent=AGENT, json={"q": 1}) as stream,
    ):
        return [(event.event, event.data) async for event in stream.events()]


async def vendor_error(vendor: FakeVendor, script: Script) -> VendorError:
    with pytest.raises(VendorError) as caught:
        await read_events(vendor, script)
    return caught.value


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
async def test_it_reads_every_line_ending(fake_vendor: FakeVendor, newline: str) -> None:
    body = f"event: greet{newline}data: hello{newline}{newline}data: world{newline}{newline}"

    events = await read_events(fake_vendor, sse_script(body.encode()))

    assert events == [("greet", "hello"), ("message", "world")]


async def test_it_reassembles_events_split_mid_crlf_and_mid_character(
    fake_vendor: FakeVendor,
) -> None:
    first = 'data: {"text": "caf\u00e9"}\r\n\r\n'.encode()
    cut = first.index(b"\xc3") + 1  # between the two bytes of "é"
    script = sse_script(
        b"da",
        Pause(0.05),
        first[2:cut],
        Pause(0.05),
        first[cut:-3],  # ends with "\r"; the "\n\r\n" follows in the next read
        Pause(0.05),
        first[-3:],
        b"event: done\r",
        Pause(0.05),
        b"\ndata: [DONE]\r\n\r\n",
    )

    events = await read_events(fake_vendor, script)

    assert events == [("message", '{"text": "caf\u00e9"}'), ("done", "[DONE]")]


async def test_it_survives_a_stream_delivered_one_byte_per_read(fake_vendor: FakeVendor) -> None:
    body = "event: a\r\ndata: 日本\u2028語\r\n\r\ndata: é\rdata: two\r\r".encode()
    script = sse_script(*(body[i : i + 1] for i in range(len(body))), chunk_delay=0.002)

    events = await read_events(fake_vendor, script)

    assert events == [("a", "日本\u2028語"), ("message", "é\ntwo")]


async def test_it_joins_multiline_data_with_newlines(fake_vendor: FakeVendor) -> None:
    body = b"data: line one\ndata:line two\ndata\ndata:  indented\n\n"

    events = await read_events(fake_vendor, sse_script(body))

    assert events == [("message", "line one\nline two\n\n indented")]


async def test_it_ignores_comments_and_heartbeats(fake_vendor: FakeVendor) -> None:
    body = b": heartbeat\n\n:ping\ndata: x\n\n:\n\n: bye\n"

    events = await read_events(fake_vendor, sse_script(body))

    assert events == [("message", "x")]


async def test_it_skips_events_without_data(fake_vendor: FakeVendor) -> None:
    # httpx-sse dispatches empty events after an id: has been seen, and for event:-only and
    # retry:-only blocks (§C.5); none of them may reach a provider.
    body = b"id: 7\ndata: x\n\n\n\nevent: ping\n\nretry: 1000\n\ndata: y\n\n"

    events = await read_events(fake_vendor, sse_script(body))

    assert events == [("message", "x"), ("message", "y")]


async def test_it_passes_done_through(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", "/stream", sse_script(sse({"n": 1}), sse("[DONE]")))

    async with (
        build_client(FAST) as client,
        open_sse(client, "POST", f"{fake_vendor.url}/stream", agent=AGENT) as stream,
    ):
        events = [event async for event in stream.events()]

    assert [is_done(event) for event in events] == [False, True]
    assert parse_json(events[0]) == {"n": 1}


async def test_it_delivers_each_scripted_chunk_as_its_own_read(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route(
        "GET", "/raw", sse_script(b"\xef", Pause(0.05), b"\xbb", Pause(0.05), b"z")
    )

    async with build_client(FAST) as client, client.stream("GET", f"{fake_vendor.url}/raw") as resp:
        reads = [chunk async for chunk in resp.aiter_raw()]

    assert reads == [b"\xef", b"\xbb", b"z"]


async def test_it_strips_a_bom_split_across_reads(fake_vendor: FakeVendor) -> None:
    script = sse_script(
        b"\xef", Pause(0.05), b"\xbb", Pause(0.05), b"\xbfdata: first\n\n", b"data: second\n\n"
    )

    events = await read_events(fake_vendor, script)

    assert events == [("message", "first"), ("message", "second")]


async def test_it_decodes_utf8_whatever_the_charset_header_says(fake_vendor: FakeVendor) -> None:
    script = sse_script(
        "data: café 日本\n\n".encode(),
        headers={"Content-Type": "text/event-stream; charset=latin-1"},
    )

    events = await read_events(fake_vendor, script)

    assert events == [("message", "café 日本")]


async def test_it_accepts_a_large_event_under_the_cap(fake_vendor: FakeVendor) -> None:
    payload = "x" * (MAX_EVENT_CHARS - 100_000)

    events = await read_events(fake_vendor, sse_script(sse(payload), sse("after")))

    assert [len(data) for _, data in events] == [len(payload), len("after")]


async def test_it_rejects_an_oversized_single_line_event(fake_vendor: FakeVendor) -> None:
    block = b"x" * 65536
    chunks = [b"data: ", *[block] * (MAX_EVENT_CHARS // len(block) + 2), Pause(5)]
    started = time.monotonic()

    error = await vendor_error(fake_vendor, sse_script(*chunks))

    assert error.code == ErrorCode.VENDOR_PROTOCOL
    assert str(MAX_EVENT_CHARS) in error.message
    assert time.monotonic() - started < 2  # raised while reading, not at the hang's end


async def test_it_rejects_an_oversized_multiline_event(fake_vendor: FakeVendor) -> None:
    line = b"data: " + b"y" * 1000 + b"\n"
    lines = [line] * (MAX_EVENT_CHARS // 1000 + 10)

    error = await vendor_error(fake_vendor, sse_script(b"".join(lines), b"\n"))

    assert error.code == ErrorCode.VENDOR_PROTOCOL


async def test_it_maps_401_to_vendor_auth_naming_the_token_variable(
    fake_vendor: FakeVendor,
) -> None:
    body = {"error": {"message": "Incorrect API key provided: sk-abc", "type": "auth"}}

    error = await vendor_error(fake_vendor, json_script(body, status=401))

    assert error.code == ErrorCode.VENDOR_AUTH
    assert error.status == 401
    assert "ACME_TOKEN" in error.message
    assert "Incorrect API key provided: sk-abc" in error.message


@pytest.mark.parametrize(
    ("status", "body", "code", "said"),
    [
        (404, {"detail": "Not Found"}, ErrorCode.VENDOR_NOT_FOUND, "Not Found"),
        (
            429,
            {"error": "rate_limited", "message": "Slow down"},
            ErrorCode.VENDOR_RATE_LIMITED,
            "Slow down",
        ),
        (500, {"message": "boom"}, ErrorCode.VENDOR_UNAVAILABLE, "boom"),
        (
            503,
            {"error": {"code": "overloaded", "message": "Try later"}},
            ErrorCode.VENDOR_UNAVAILABLE,
            "Try later",
        ),
        (
            422,
            {"detail": [{"loc": ["body", "model"], "msg": "field required"}]},
            ErrorCode.VENDOR_BAD_REQUEST,
            "field required",
        ),
    ],
)
async def test_it_maps_error_statuses_with_the_vendors_message(
    fake_vendor: FakeVendor, status: int, body: object, code: str, said: str
) -> None:
    error = await vendor_error(fake_vendor, json_script(body, status=status))

    assert (error.code, error.status) == (code, status)
    assert error.message == f"The vendor answered {status}: {said}"


async def test_it_maps_an_error_status_even_with_an_event_stream_body(
    fake_vendor: FakeVendor,
) -> None:
    error = await vendor_error(fake_vendor, sse_script(sse({"n": 1}), status=502))

    assert error.code == ErrorCode.VENDOR_UNAVAILABLE


async def test_it_truncates_a_plain_text_error_body(fake_vendor: FakeVendor) -> None:
    page = b"<html><body>" + b"Bad gateway " * 200 + b"</body></html>"
    script = Script(status=502, headers={"Content-Type": "text/plain"}, chunks=[page])

    error = await vendor_error(fake_vendor, script)

    said = error.message.removeprefix("The vendor answered 502: ")
    assert said.startswith("<html><body>Bad gateway Bad gateway")
    assert len(said) == 300
    assert said.endswith("…")


async def test_it_never_quotes_another_services_html_page(fake_vendor: FakeVendor) -> None:
    """A base URL pointing at some internal web page must not make chat errors (or the admin's
    Test connection) a way to read it: HTML bodies are named by their status only."""
    page = b"<html><body>internal dashboard: 42 secrets</body></html>"
    script = Script(status=502, headers={"Content-Type": "text/html"}, chunks=[page])

    error = await vendor_error(fake_vendor, script)

    assert error.message == "The vendor answered 502: Bad Gateway"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "nested", "type": "x"}}, "nested"),
        ({"error": "Unauthorized", "message": "Token expired"}, "Token expired"),
        ({"error": "Unauthorized"}, "Unauthorized"),
        ({"message": "plain"}, "plain"),
        ({"detail": "fastapi"}, "fastapi"),
        ({"errors": [{"message": "one"}, {"message": "two"}]}, "one; two"),
        ({"code": 7}, '{"code": 7}'),
        (b"  upstream\n  timed out ", "upstream timed out"),
        (b'{"error": {"message": "from bytes"}}', "from bytes"),
        (b"", ""),
    ],
)
def test_it_finds_the_vendors_message_in_common_error_shapes(body: object, message: str) -> None:
    assert vendor_error_message(body) == message


async def test_it_rejects_json_where_a_stream_was_expected(fake_vendor: FakeVendor) -> None:
    body = {"code": "AGENT_NOT_FOUND", "message": "No such bot"}

    error = await vendor_error(fake_vendor, json_script(body))

    assert error.code == ErrorCode.VENDOR_PROTOCOL
    assert error.status == 200
    assert error.message == (
        "The vendor answered 200 with JSON instead of an event stream: No such bot"
    )
    assert error.details["body"] == body


async def test_it_hands_a_json_answer_over_when_allowed(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", "/stream", json_script({"answer": 42}))

    async with (
        build_client(FAST) as client,
        open_sse(
            client, "POST", f"{fake_vendor.url}/stream", agent=AGENT, allow_json=True
        ) as stream,
    ):
        events = [event async for event in stream.events()]

    assert stream.json_body == {"answer": 42}
    assert events == []


async def test_it_rejects_a_stream_without_a_content_type(fake_vendor: FakeVendor) -> None:
    error = await vendor_error(fake_vendor, Script(chunks=[b"data: x\n\n"]))

    assert error.code == ErrorCode.VENDOR_PROTOCOL
    assert error.message == (
        "The vendor answered 200 with 'no type' instead of an event stream: data: x"
    )


async def test_it_treats_a_redirect_as_a_wrong_base_url(fake_vendor: FakeVendor) -> None:
    script = Script(status=307, headers={"Location": "https://login.example/"}, framing="length")

    error = await vendor_error(fake_vendor, script)

    assert error.code == ErrorCode.AGENT_MISCONFIGURED
    assert "https://login.example/" in error.message
    assert len(fake_vendor.requests) == 1


async def test_it_sends_stream_headers_and_never_retries(fake_vendor: FakeVendor) -> None:
    await vendor_error(fake_vendor, json_script({"message": "down"}, status=500))

    [request] = fake_vendor.requests
    assert (request.method, request.path) == ("POST", "/stream")
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["cache-control"] == "no-store"
    assert request.json() == {"q": 1}


async def test_it_lets_connection_refused_map_to_vendor_unreachable(refused_url: str) -> None:
    async with build_client(FAST) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            async with open_sse(client, "POST", f"{refused_url}/stream", agent=AGENT):
                pass

    assert error_for_exception(caught.value, AGENT).code == ErrorCode.VENDOR_UNREACHABLE


async def test_it_times_out_when_the_vendor_goes_quiet(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", "/stream", sse_script(sse("first"), Pause(3)))
    received: list[str] = []
    started = time.monotonic()

    with pytest.raises(httpx.ReadTimeout) as caught:
        async with (
            build_client(Timeouts(connect=2.0, read=0.5)) as client,
            open_sse(client, "POST", f"{fake_vendor.url}/stream", agent=AGENT) as stream,
        ):
            async for event in stream.events():
                received.append(event.data)

    assert received == ["first"]
    assert 0.5 <= time.monotonic() - started < 1.5
    assert error_for_exception(caught.value, AGENT).code == ErrorCode.VENDOR_TIMEOUT
    assert fake_vendor.requests[0].client_closed.wait(1)


async def test_it_keeps_a_quiet_stream_alive_with_heartbeats(fake_vendor: FakeVendor) -> None:
    script = sse_script(
        sse("a"), Pause(0.3), b": hb\n", Pause(0.3), b": hb\n", Pause(0.3), sse("b")
    )

    events = await read_events(fake_vendor, script, Timeouts(connect=2.0, read=0.5))

    assert events == [("message", "a"), ("message", "b")]


async def test_it_drops_an_event_cut_off_by_the_end_of_the_stream(
    fake_vendor: FakeVendor,
) -> None:
    events = await read_events(fake_vendor, sse_script(sse("whole"), b"data: half"))

    assert events == [("message", "whole")]


# A chunked stream cut by a close (no final chunk), and a connection reset mid-stream: the
# events before are delivered, the transport error escapes, and both map to vendor_truncated.
BROKEN_STREAMS = {
    "cut-chunked-stream": (
        lambda: sse_script(sse("a"), Pause(0.05), b"data: b", Hangup(), framing="chunked"),
        httpx.RemoteProtocolError,
    ),
    "reset-connection": (
        lambda: sse_script(sse("a"), Pause(0.05), Hangup(reset=True)),
        httpx.ReadError,
    ),
}


@pytest.mark.parametrize(("script", "error"), BROKEN_STREAMS.values(), ids=BROKEN_STREAMS)
async def test_it_reports_a_broken_stream_as_truncated(
    fake_vendor: FakeVendor, script: Callable[[], Script], error: type[httpx.TransportError]
) -> None:
    fake_vendor.add_route("POST", "/stream", script())
    received: list[str] = []

    with pytest.raises(error) as caught:
        async with (
            build_client(FAST) as client,
            open_sse(client, "POST", f"{fake_vendor.url}/stream", agent=AGENT) as stream,
        ):
            async for event in stream.events():
                received.append(event.data)

    assert received == ["a"]
    assert error_for_exception(caught.value, AGENT).code == ErrorCode.VENDOR_TRUNCATED


async def test_it_reads_plain_json_calls(fake_vendor: FakeVendor) -> None:
    fake_vendor.add_route("POST", "/conversations", json_script({"id": "conv_1"}, status=201))
    fake_vendor.add_route("DELETE", "/conversations/conv_1", Script(status=204, framing="length"))

    async with build_client(FAST) as client:
        created = await request_json(
            client,
            "POST",
            f"{fake_vendor.url}/conversations",
            agent=AGENT,
            json={"title": "Hi"},
            headers={"Authorization": "Bearer t"},
        )
        deleted = await request_json(
            client, "DELETE", f"{fake_vendor.url}/conversations/conv_1", agent=AGENT
        )

    assert (created, deleted) == ({"id": "conv_1"}, None)
    first = fake_vendor.requests[0]
    assert first.json() == {"title": "Hi"}
    assert first.headers["accept"] == "application/json"
    assert first.headers["authorization"] == "Bearer t"


@pytest.mark.parametrize(
    ("script", "code"),
    [
        (
            json_script({"error": "forbidden", "message": "No access"}, status=403),
            ErrorCode.VENDOR_AUTH,
        ),
        (json_script({"message": "gone"}, status=404), ErrorCode.VENDOR_NOT_FOUND),
        (
            Script(headers={"Content-Type": "text/html"}, chunks=[b"<html>"], framing="length"),
            ErrorCode.VENDOR_PROTOCOL,
        ),
    ],
)
async def test_it_maps_plain_json_call_failures(
    fake_vendor: FakeVendor, script: Script, code: str
) -> None:
    fake_vendor.add_route("GET", "/thing", script)

    async with build_client(FAST) as client:
        with pytest.raises(VendorError) as caught:
            await request_json(client, "GET", f"{fake_vendor.url}/thing", agent=AGENT)

    assert caught.value.code == code
    assert len(fake_vendor.requests) == 1


async def test_it_builds_clients_with_explicit_timeouts_and_no_redirects() -> None:
    async with build_client(Timeouts(connect=3.0, read=7.0)) as client:
        assert client.timeout == httpx.Timeout(connect=3.0, read=7.0, write=3.0, pool=3.0)
        assert client.follow_redirects is False
