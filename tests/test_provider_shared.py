"""What every provider shares, tested alone: the transport-error table (base.py), the usage parser
(usage.py) and the tool-call accumulator (toolcalls.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conversations.events import (
    ErrorCode,
    ToolCallCompleted,
    ToolCallDelta,
    ToolCallStarted,
    Usage,
)
from conversations.providers.base import error_for_exception
from conversations.providers.toolcalls import ToolCalls
from conversations.providers.usage import parse_usage


def _reset() -> httpx.ReadError:
    # What a TCP reset mid-stream looks like: ReadError("") from anyio's BrokenResourceError().
    try:
        try:
            raise ConnectionResetError("Connection reset by peer")
        except ConnectionResetError as os_error:
            raise RuntimeError() from os_error
    except RuntimeError as broken:
        error = httpx.ReadError("")
        error.__cause__ = broken
        return error


TRANSPORT_CASES: dict[str, tuple[BaseException, str, str]] = {
    "connect-timeout": (
        httpx.ConnectTimeout(""),
        ErrorCode.VENDOR_UNREACHABLE,
        "Timed out connecting to the vendor.",
    ),
    "read-timeout": (
        httpx.ReadTimeout(""),
        ErrorCode.VENDOR_TIMEOUT,
        "The vendor stopped sending data and the stream timed out.",
    ),
    "pool-timeout": (
        httpx.PoolTimeout(""),
        ErrorCode.VENDOR_TIMEOUT,
        "The vendor stopped sending data and the stream timed out.",
    ),
    "connect-error": (
        httpx.ConnectError("refused"),
        ErrorCode.VENDOR_UNREACHABLE,
        "Could not connect to the vendor.",
    ),
    "remote-protocol-error": (
        httpx.RemoteProtocolError("peer closed"),
        ErrorCode.VENDOR_TRUNCATED,
        "The vendor closed the connection before the reply ended.",
    ),
    "reset": (
        _reset(),
        ErrorCode.VENDOR_TRUNCATED,
        "The connection to the vendor broke before the reply ended (Connection reset by peer).",
    ),
    "read-error-without-text": (
        httpx.ReadError(""),
        ErrorCode.VENDOR_TRUNCATED,
        "The connection to the vendor broke before the reply ended.",
    ),
    "write-error": (
        httpx.WriteError(""), ErrorCode.VENDOR_UNREACHABLE,
        "Network error talking to the vendor: WriteError.",
    ),
    "proxy-error": (
        httpx.ProxyError("407 from the proxy"), ErrorCode.VENDOR_UNREACHABLE,
        "Network error talking to the vendor: 407 from the proxy.",
    ),
    "not-transport": (
        ValueError("bug"), ErrorCode.INTERNAL_ERROR,
        "The reply failed because of an internal error.",
    ),
}


@pytest.mark.parametrize(("exc", "code", "message"), TRANSPORT_CASES.values(), ids=TRANSPORT_CASES)
def test_it_maps_each_transport_error_to_its_code(exc: BaseException, code: str, message: str):
    error = error_for_exception(exc)

    assert (error.code, error.message) == (code, message)


USAGE_CASES: dict[str, tuple[Any, Usage | None]] = {
    "openai": ({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}, Usage(12, 3, 15)),
    "loop-numbers": (
        {"prompt_tokens": 12.0, "completion_tokens": 3.0, "total_tokens": 15.0}, Usage(12, 3, 15)
    ),
    "input-output": ({"input_tokens": 7, "output_tokens": 2}, Usage(7, 2, None)),
    "agui-list-summed": (
        [{"inputTokens": 10, "outputTokens": 4, "totalTokens": 14},
         {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6}, "junk"],
        Usage(15, 5, 20),
    ),
    "not-counts": ({"prompt_tokens": True, "completion_tokens": 2.5, "total_tokens": "9"}, Usage()),
    "list-without-counts": ([{"provider": "x"}], None),
    "neither-object-nor-list": ("12", None),
}


@pytest.mark.parametrize(("raw", "usage"), USAGE_CASES.values(), ids=USAGE_CASES)
def test_it_reads_usage_by_one_rule(raw: Any, usage: Usage | None) -> None:
    assert parse_usage(raw) == usage


def test_it_announces_a_late_name_again_only_when_asked() -> None:
    for renames, expected in (
        (True, [ToolCallStarted("c", ""), ToolCallDelta("c", "{}"), ToolCallStarted("c", "n")]),
        (False, [ToolCallStarted("c", ""), ToolCallDelta("c", "{}")]),
    ):
        calls = ToolCalls(renames=renames)
        events = [*calls.add("c", "{}"), *calls.start("c", "n")]

        assert events == expected
        assert list(calls.finish()) == [ToolCallCompleted("c", "n", "{}")]


def test_it_drops_fragments_after_completion_only_when_sealed() -> None:
    for sealed, after in ((True, []), (False, [ToolCallDelta("c", "x")])):
        calls = ToolCalls(sealed=sealed)
        list(calls.start("c", "n"))

        assert list(calls.complete("c", arguments='{"a": 1}')) == [
            ToolCallCompleted("c", "n", '{"a": 1}')
        ]
        assert list(calls.add("c", "x")) == after
        assert list(calls.complete("c")) == []
