"""The channel layer under Redis faults (issue 9, items 3, 5, 10, 11): a restart's stale pooled
connection, handshakes while Redis is down, logs that do not flood, background tasks that end
when cancelled. Real redis-server processes (private, on free ports) and real Daphne processes
on PostgreSQL; the in-process tests use a real Redis too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from channels_redis.pubsub import RedisPubSubChannelLayer

from conversations import layer as layer_calls
from conversations.layer import LayerUnavailable, ThrottledLog
from conversations.relay import ProcessBus, Relay, conversation_group
from conversations.sessions import REVOKED_MESSAGE, session_group
from tests.cluster import (
    EXPECTED,
    SERVER_ENV,
    deltas_seen,
    recv,
    recv_until,
    redis_server,
    seed,
    slow_stream,
    socket_to,
)
from tests.fakevendor import FakeVendor
from tests.livesrv import LiveServer, cluster, free_port
from tests.wsclient import assemble

# Unit tests ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_it_logs_the_first_failure_with_a_traceback_then_a_count_per_interval(
    caplog: pytest.LogCaptureFixture,
):
    clock = Clock()
    log = ThrottledLog(logging.getLogger("chatsite.test.throttle"), "thing", 30.0, clock)
    caplog.set_level(logging.INFO, logger="chatsite.test.throttle")
    try:
        raise ConnectionError("refused")
    except ConnectionError as exc:
        err = exc
    for _ in range(400):  # 40 s of failures every 100 ms
        log.failure("publish", err)
        clock.now += 0.1
    log.success()
    log.success()
    records = caplog.records
    assert [r.levelname for r in records] == ["WARNING"] * 3
    first, summary, recovered = records
    assert first.exc_info is not None and first.exc_info[1] is err
    assert "thing unavailable (publish)" in first.getMessage()
    assert summary.exc_info is None
    assert re.search(r"still unavailable: 300 failures in the last 30 s", summary.getMessage())
    assert "ConnectionError: refused" in summary.getMessage()
    assert recovered.getMessage() == "thing recovered after 40.0 s and 400 failed calls"
    # A new outage starts over with a traceback.
    caplog.clear()
    log.failure("publish", err)
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None


def test_it_logs_nothing_while_healthy(caplog: pytest.LogCaptureFixture):
    log = ThrottledLog(logging.getLogger("chatsite.test.throttle2"), "thing")
    caplog.set_level(logging.DEBUG, logger="chatsite.test.throttle2")
    for _ in range(100):
        log.success()
    assert caplog.records == []


async def test_it_retries_a_publish_once_on_a_fresh_connection_after_a_restart(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.WARNING)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    sender = RedisPubSubChannelLayer(hosts=[url])
    plain = RedisPubSubChannelLayer(hosts=[url])
    receiver = RedisPubSubChannelLayer(hosts=[url])
    try:
        with redis_server(port) as first:
            channel = await receiver.new_channel()
            await receiver.group_add("g", channel)
            await layer_calls.group_send("g", {"type": "one"}, sender)
            await plain.group_send("g", {"type": "two"})
            assert (await receiver.receive(channel))["type"] == "one"
            assert (await receiver.receive(channel))["type"] == "two"
            first.kill()
            first.wait(timeout=10)
        with redis_server(port):
            await asyncio.sleep(2.5)  # the receiver's subscriber reconnects (1 s retry)
            # Without the helper the first publish meets the stale pooled connection...
            with pytest.raises(redis.exceptions.ConnectionError):
                await plain.group_send("g", {"type": "lost"})
            # ...with it, the first call goes through.
            await layer_calls.group_send("g", {"type": "three"}, sender)
            assert (await asyncio.wait_for(receiver.receive(channel), 5))["type"] == "three"
            for layer in (sender, plain, receiver):
                await layer.flush()  # before Redis stops: no failure logged at the end
    finally:
        for layer in (sender, plain, receiver):
            with contextlib.suppress(Exception):
                await layer.flush()
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert tracebacks == [] or all(r.name == "conversations.layer" for r in tracebacks)
    assert len(tracebacks) <= 1


async def test_it_reports_a_down_layer_once_and_makes_local_channels(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    layer = RedisPubSubChannelLayer(hosts=[url])
    publisher = RedisPubSubChannelLayer(hosts=[url])
    layer_calls.layer_log.success()  # a clean state whatever ran before
    try:
        with redis_server(port) as first:
            await layer_calls.group_send("warm", {"type": "x"}, layer)
            first.kill()
            first.wait(timeout=10)
        caplog.clear()
        # Redis down: every call fails fast with LayerUnavailable, logged once.
        started = time.monotonic()
        for _ in range(50):
            with pytest.raises(LayerUnavailable):
                await layer_calls.group_send("g", {"type": "x"}, layer)
        assert time.monotonic() - started < 10
        channel, subscribed = await layer_calls.ensure_channel(layer)
        assert not subscribed
        with pytest.raises(LayerUnavailable):
            await layer_calls.group_add("g", channel, layer)
        await asyncio.sleep(2.5)  # channels_redis' subscriber fails every second meanwhile
        layer_lines = [r for r in caplog.records if r.name.startswith(
            ("conversations.layer", "channels_redis"))]
        assert len(layer_lines) == 1, [r.getMessage() for r in layer_lines]
        assert layer_lines[0].exc_info is not None
        with redis_server(port):
            await layer_calls.subscribe_channel(layer, channel)
            await layer_calls.group_add("g", channel, layer)
            await layer_calls.group_send("g", {"type": "back"}, publisher)
            assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "back"
            await layer_calls.send(channel, {"type": "direct"}, publisher)
            assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "direct"
            for each in (layer, publisher):
                await each.flush()
        recovered = [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
        assert len(recovered) == 1 and recovered[0].startswith("channel layer (Redis) recovered")
    finally:
        for each in (layer, publisher):
            with contextlib.suppress(Exception):
                await each.flush()


async def test_it_stops_the_bus_tasks_promptly_while_redis_is_down():
    """The process bus's sender and listener end at once when cancelled, mid-outage."""
    port = free_port()
    layer = RedisPubSubChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    bus = ProcessBus(Relay(), layer)  # a relay of its own, with no runs nor sockets
    bus.ensure_listening()
    bus.publish("c", [{"type": "message.delta"}])
    await asyncio.sleep(1.5)  # both retrying against a port nobody listens on
    assert bus.sender is not None and bus.listener is not None
    assert bus.outbox  # kept for when the layer is back
    for task in (bus.sender, bus.listener):
        task.cancel()
    done, _ = await asyncio.wait([bus.sender, bus.listener], timeout=3)
    assert len(done) == 2
    with contextlib.suppress(Exception):
        await layer.flush()


# Real processes --------------------------------------------------------------------------------


def layer_env(port: int) -> dict[str, str]:
    return {**SERVER_ENV, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}


async def wait_closed_or_frame(ws: Any, timeout: float) -> dict[str, Any] | None:
    try:
        return await recv(ws, timeout)
    except TimeoutError:
        return None


@pytest.mark.scaleout
async def test_it_cancels_across_processes_right_after_a_redis_restart(
    migrated: LiveServer, database_url: str, vendor: FakeVendor, tmp_path: Path,
):
    session, conversation_id = seed(migrated, vendor)
    port = free_port()
    with redis_server(port) as first, \
            cluster(tmp_path, database_url, 2, layer_env(port)) as (a, b):
        ws_a = await socket_to(a, session, conversation_id)
        ws_b = await socket_to(b, session, conversation_id)
        await recv(ws_a), await recv(ws_b)
        # Before the restart: both processes publish (batches from A, a stop from B), so
        # each has a pooled publishing connection that the restart leaves stale.
        vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.1))
        await ws_a.send(json.dumps({"type": "message.send", "content": "one"}))
        await recv_until(ws_b, "message.delta")
        await ws_b.send(json.dumps({"type": "run.cancel"}))
        await recv_until(ws_a, "message.canceled")
        await recv_until(ws_b, "message.canceled")
        first.kill()
        first.wait(timeout=10)
        await asyncio.sleep(0.3)
        with redis_server(port):
            await asyncio.sleep(3)  # the subscribers reconnect (channels_redis retries each 1 s)
            vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.1))
            await ws_a.send(json.dumps({"type": "message.send", "content": "two"}))
            seen_b = await recv_until(ws_b, "message.delta")  # A's first publish went through
            # B's first publish since the restart: the stop must reach A.
            await ws_b.send(json.dumps({"type": "run.cancel"}))
            seen_b += await recv_until(ws_b, "message.canceled", "error", timeout=10)
            assert seen_b[-1]["type"] == "message.canceled", seen_b[-1]
            final = seen_b[-1]["message"]
            assert final["status"] == "canceled"
            assert 0 < len(final["content"]) < len(EXPECTED)
            seen_a = await recv_until(ws_a, "message.canceled", timeout=10)
            assert seen_a[-1]["message"]["id"] == final["id"]
            assert vendor.requests[-1].client_closed.wait(5)
            # B's tab is still open (no 1011).
            await ws_b.send(json.dumps({"type": "ping"}))
            assert (await recv_until(ws_b, "pong"))[-1] == {"type": "pong"}
            assert "Exception inside application" not in a.log.read_text() + b.log.read_text()
            await ws_a.close()
            await ws_b.close()


@pytest.mark.scaleout
async def test_it_accepts_sockets_while_redis_is_down_and_joins_when_it_is_back(
    migrated: LiveServer, database_url: str, vendor: FakeVendor, tmp_path: Path,
):
    session, conversation_id = seed(migrated, vendor)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with redis_server(port) as first, \
            cluster(tmp_path, database_url, 2, layer_env(port)) as (a, b):
        first.kill()
        first.wait(timeout=10)
        # Redis is down: the handshake succeeds, the socket is synced and streams its reply.
        ws_a = await socket_to(a, session, conversation_id)
        sync = await recv(ws_a)
        assert sync["type"] == "conversation.sync" and sync["messages"] == []
        vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.0))
        await ws_a.send(json.dumps({"type": "message.send", "content": "offline"}))
        own = await recv_until(ws_a, "message.completed")
        assert own[-1]["message"]["content"] == EXPECTED == assemble(own, own[-1]["message"]["id"])
        probe = RedisPubSubChannelLayer(hosts=[url])
        try:
            with redis_server(port):
                # Back: the socket joins its conversation group and A's bus listener rejoins.
                seen: set[str] = set()
                deadline = time.monotonic() + 30
                while seen != {"group", "bus"}:
                    assert time.monotonic() < deadline, f"only {seen} reached the socket"
                    with contextlib.suppress(Exception):
                        await probe.group_send(conversation_group(conversation_id), {
                            "type": "relay.frames", "skip": None,
                            "frames": [{"type": "probe", "via": "group"}]})
                        await probe.group_send(ProcessBus.GROUP, {
                            "type": "relay.bus", "origin": "test",
                            "batches": [[conversation_id, [{"type": "probe", "via": "bus"}]]]})
                    frame = await wait_closed_or_frame(ws_a, 0.5)
                    if frame is not None and frame["type"] == "probe":
                        seen.add(frame["via"])
                # A reply on the other process reaches the socket in batches.
                ws_b = await socket_to(b, session, conversation_id)
                await recv(ws_b)
                vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.02))
                await ws_b.send(json.dumps({"type": "message.send", "content": "online"}))
                other = await recv_until(ws_a, "message.completed")
                reply_id = other[-1]["message"]["id"]
                assert reply_id != own[-1]["message"]["id"]
                assert assemble(other, reply_id) == EXPECTED
                assert 0 < deltas_seen(other) < len(EXPECTED.split())  # coalesced batches
                await recv_until(ws_b, "message.completed")
                # The session's group was joined too: a logout reaches the socket (4401).
                await probe.group_send(session_group(session), dict(REVOKED_MESSAGE))
                with pytest.raises(Exception):  # noqa: B017 - the close ends the iteration
                    while True:
                        await recv(ws_a, 10)
                assert ws_a.close_code == 4401
                await ws_b.close()
        finally:
            with contextlib.suppress(Exception):
                await probe.flush()
    for server in (a, b):
        assert "Exception inside application" not in server.log.read_text()


LAYER_LINE = re.compile(r" WARNING (conversations\.layer|channels_redis\.\S+): ")


@pytest.mark.scaleout
async def test_it_logs_a_redis_outage_in_a_handful_of_lines(
    migrated: LiveServer, database_url: str, vendor: FakeVendor, tmp_path: Path,
):
    session, conversation_id = seed(migrated, vendor)
    port = free_port()
    with redis_server(port) as first, \
            cluster(tmp_path, database_url, 2, layer_env(port)) as (a, b):
        ws_a = await socket_to(a, session, conversation_id)
        ws_b = await socket_to(b, session, conversation_id)
        await recv(ws_a), await recv(ws_b)
        # ~12 s of reply (60 deltas, 0.2 s apart) with a viewer on the other process: A
        # publishes every 25-50 ms throughout the outage.
        vendor.add_route("POST", "/v1/chat/completions", slow_stream(0.2))
        await ws_a.send(json.dumps({"type": "message.send", "content": "outage"}))
        seen_b = await recv_until(ws_b, "message.delta")
        first.kill()
        first.wait(timeout=10)
        await asyncio.sleep(6)
        with redis_server(port):
            seen_a = await recv_until(ws_a, "message.completed", timeout=30)
            assert seen_a[-1]["message"]["content"] == EXPECTED
            seen_b += await recv_until(ws_b, "message.completed", timeout=30)
            assert seen_b[-1]["message"]["content"] == EXPECTED
            await asyncio.sleep(1)
            await ws_a.close()
            await ws_b.close()
            # Read while Redis is still up (stopping it at the end is another outage).
            texts = [server.log.read_text() for server in (a, b)]
    for text in texts:
        warnings = [line for line in text.splitlines() if LAYER_LINE.search(line)]
        assert 1 <= len(warnings) <= 4, warnings
        # One logged failure with its traceback (a chained exception prints several).
        tracebacks = text.count("Traceback (most recent call last)") - text.count(
            "During handling of the above exception") - text.count(
            "The above exception was the direct cause")
        assert tracebacks <= 1, text[-3000:]
        assert "unavailable" in warnings[0]
        assert sum("recovered" in line for line in warnings) == 1, warnings
