"""The browser side of the benchmark, in its own process so its CPU never counts as server CPU.

Driven over stdin/stdout by `bench.run` (one JSON object per line):

1. reads its config from the file named on the command line, opens every socket and waits for
   each one's first frame (`conversation.sync`), then prints `READY {...}`;
2. reads a schedule line `{"start": ns, "measure_start": ns, "measure_end": ns, "stop": ns}`
   (times in `time.monotonic_ns()`, which every process on the machine shares);
3. mode `stream`: each conversation's owner socket sends `message.send` (first ones staggered
   over the ramp), waits for the reply's terminal frame and sends the next, until `measure_end`;
   mode `idle`: holds the sockets open until `stop`;
4. prints `RESULT {...}` and exits.

Latency is read from the delta text: the vendor writes `T<monotonic ns>;` into every delta, so
each token's latency is its arrival time (stamped per read, before parsing) minus that. Samples
count when the vendor wrote the token inside the measurement window; throughput counts tokens
that arrived inside it. After the window no reply is started, and the replies in flight are
awaited (up to `stop`), so a token that is late but arrives gets its real latency. One that
never arrives is counted as undelivered and ranks as infinitely late in the percentiles, so a
server that falls behind cannot look fast by having few samples: a second viewer must receive
every token its conversation's owner received, and an owner whose reply never finished lacks
the tokens the vendor's schedule (`n` at `rate` from the first token) put inside the window.
Offsets are checked as docs/protocol.md says a browser must: a gap (frames lost) or a duplicate
is counted, never hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.wsproto import WebSocketClient, connect

TOKEN = re.compile(r"T(\d+);")
NS_PER_MS = 1_000_000


@dataclass
class Window:
    measure_start: int = 2**63 - 1
    measure_end: int = 2**63 - 1


@dataclass
class RoleStats:
    latencies: list[int] = field(default_factory=list)
    delivered: int = 0  # tokens that arrived inside the window
    frames: int = 0
    gaps: int = 0
    duplicates: int = 0
    undelivered: int = 0

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        lost = self.undelivered
        return {
            "samples": len(lat),
            "undelivered": lost,
            "p50_ms": _pct(lat, 0.50, lost),
            "p90_ms": _pct(lat, 0.90, lost),
            "p99_ms": _pct(lat, 0.99, lost),
            "p999_ms": _pct(lat, 0.999, lost),
            "max_ms": math.inf if lost else (lat[-1] / NS_PER_MS if lat else None),
            "delivered": self.delivered,
            "delivered_per_s": self.delivered / seconds if seconds > 0 else 0.0,
            "frames": self.frames,
            "gaps": self.gaps,
            "duplicates": self.duplicates,
        }


def _pct(values: list[int], q: float, undelivered: int = 0) -> float | None:
    """The q-quantile in ms, undelivered samples ranking last (infinitely late)."""
    total = len(values) + undelivered
    if not total:
        return None
    index = min(total - 1, int(q * total))
    return values[index] / NS_PER_MS if index < len(values) else math.inf


class Viewer:
    """One browser socket: splices deltas by offset and records each token's latency."""

    def __init__(
        self,
        role: str,
        stats: RoleStats,
        window: Window,
        conv: Conversation | None,
        errors: Counter[str],
    ) -> None:
        self.role = role
        self.stats = stats
        self.window = window
        self.conv = conv
        self.errors = errors
        self.have: dict[str, int] = {}
        self.window_tokens = 0  # tokens written inside the window that this socket received
        self.tokens: Counter[str] = Counter()  # tokens received, per message
        self.first_written: dict[str, int] = {}  # per message, the first token's stamp
        self.completed: set[str] = set()
        self.proto: WebSocketClient | None = None
        self.synced: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_text(self, payload: bytes, now: int) -> None:
        try:
            frame = json.loads(payload)
        except ValueError:
            self.errors["bad_json_from_server"] += 1
            return
        kind = frame.get("type")
        if kind == "message.delta":
            self._delta(frame, now)
        elif kind == "message.created":
            conv = self.conv
            message = frame.get("message") or {}
            if (
                conv is not None
                and self.role == "owner"
                and conv.sent_at
                and (message.get("role") == "assistant")
            ):
                # The placeholder announced: the reply's start up to the vendor call.
                conv.accepted_ns.append(now - conv.sent_at)
        elif kind == "conversation.sync":
            if not self.synced.done():
                self.synced.set_result(None)
        elif kind in ("message.completed", "message.failed", "message.canceled"):
            self.completed.add(str(frame.get("message", {}).get("id")))
            if self.conv is not None and self.role == "owner":
                self.conv.finished(kind, frame)
        elif kind == "error":
            self.errors[f"error:{frame.get('code')}"] += 1
            if self.conv is not None and self.role == "owner":
                self.conv.finished(f"error:{frame.get('code')}", frame)

    def _delta(self, frame: dict[str, Any], now: int) -> None:
        stats = self.stats
        stats.frames += 1
        message_id = frame["message_id"]
        offset = frame["offset"]
        delta = frame["delta"]
        have = self.have.get(message_id, 0)
        end = offset + len(delta)
        if end <= have:
            stats.duplicates += 1
            return
        if offset > have:
            stats.gaps += 1
            new = delta
        else:
            new = delta[have - offset :]
        self.have[message_id] = end
        start, stop = self.window.measure_start, self.window.measure_end
        inside = start <= now < stop
        latencies = stats.latencies
        stamps = TOKEN.findall(new)
        if not stamps:
            return
        if message_id not in self.first_written and offset == 0:
            self.first_written[message_id] = int(stamps[0])
            if self.conv is not None and self.role == "owner" and self.conv.sent_at:
                self.conv.first_delta_ns.append(now - self.conv.sent_at)
        self.tokens[message_id] += len(stamps)
        for stamp in stamps:
            written = int(stamp)
            if start <= written < stop:
                latencies.append(now - written)
                self.window_tokens += 1
            if inside:
                stats.delivered += 1

    def unfinished_window_tokens(self, deltas: int, interval_ns: int) -> int:
        """Tokens of replies that never completed which the vendor's schedule wrote inside the
        window but this socket never received (they arrive in order, so the missing ones are
        the last `deltas - received`)."""
        missing = 0
        for message_id, first in self.first_written.items():
            if message_id in self.completed:
                continue
            for i in range(self.tokens[message_id], deltas):
                if self.window.measure_start <= first + i * interval_ns < self.window.measure_end:
                    missing += 1
        return missing


class Conversation:
    def __init__(self) -> None:
        self.owner: Viewer | None = None
        self.viewers: list[Viewer] = []
        self.done: asyncio.Future[str] | None = None
        self.sent_at = 0
        # Per reply: message.send written -> its first delta received (what the relay adds
        # before streaming: committing the message, calling the vendor).
        self.first_delta_ns: list[int] = []
        # Per reply: message.send written -> the placeholder's message.created received (the
        # message accepted and committed, before the vendor is called).
        self.accepted_ns: list[int] = []
        self.outcomes: Counter[str] = Counter()
        self.failure_detail = ""

    def finished(self, outcome: str, frame: dict[str, Any]) -> None:
        if outcome == "message.failed" and not self.failure_detail:
            self.failure_detail = json.dumps(frame.get("message", {}).get("error"))[:300]
        if self.done is not None and not self.done.done():
            self.done.set_result(outcome)


def _start_summary(first: list[int], accepted: list[int]) -> dict[str, Any]:
    """message.send -> first delta and -> placeholder announced, from sorted ns lists."""
    return {
        "first_delta": {
            "replies": len(first),
            "p50_ms": _pct(first, 0.5),
            "p99_ms": _pct(first, 0.99),
            "max_ms": _pct(first, 1.0),
        },
        "accepted": {"p50_ms": _pct(accepted, 0.5), "p99_ms": _pct(accepted, 0.99)},
    }


def reply_shape(spec: str) -> tuple[int, int]:
    """(deltas per reply, ns between deltas) from a vendor spec such as `bench n=250 rate=50`."""
    values = dict(re.findall(r"(\w+)=(\d+)", spec))
    return int(values.get("n", 250)), 1_000_000_000 // max(1, int(values.get("rate", 50)))


async def open_viewer(
    viewer: Viewer,
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    gate: asyncio.Semaphore,
    errors: Counter[str],
) -> bool:
    # A browser sends its page's origin, i.e. this server's own: the websocket Origin check
    # matches scheme, host and port exactly (chatsite/origin.py).
    headers = {**headers, "Origin": f"http://{host}:{port}"}
    async with gate:
        try:
            viewer.proto = await connect(host, port, path, headers, viewer.on_text)
            await asyncio.wait_for(asyncio.shield(viewer.synced), 60)
            return True
        except Exception as exc:
            errors[f"connect:{type(exc).__name__}:{str(exc)[:80]}"] += 1
            if viewer.proto is not None:
                viewer.proto.abort()
            return False


async def read_line() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("bench.run went away")
    return json.loads(line)


def emit(tag: str, data: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {json.dumps(data)}\n")
    sys.stdout.flush()


async def sleep_until(ns: int) -> None:
    delay = (ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


async def close_all(viewers: list[Viewer]) -> None:
    for viewer in viewers:
        if viewer.proto is not None:
            viewer.proto.close()
    await asyncio.sleep(0.3)
    for viewer in viewers:
        if viewer.proto is not None:
            viewer.proto.abort()


async def run_stream(config: dict[str, Any]) -> None:
    host, headers = config["host"], config["headers"]
    window = Window()
    errors: Counter[str] = Counter()
    roles = {"owner": RoleStats(), "viewer": RoleStats()}
    gate = asyncio.Semaphore(config.get("connect_concurrency", 50))
    conversations: list[Conversation] = []
    opening = []
    for spec in config["conversations"]:
        conv = Conversation()
        conv.owner = Viewer("owner", roles["owner"], window, conv, errors)
        conv.viewers = [
            Viewer("viewer", roles["viewer"], window, conv, errors) for _ in spec["viewers"]
        ]
        conversations.append(conv)
        opening.append(open_viewer(conv.owner, host, *spec["owner"], headers, gate, errors))
        opening += [
            open_viewer(v, host, *where, headers, gate, errors)
            for v, where in zip(conv.viewers, spec["viewers"], strict=True)
        ]
    began = time.monotonic()
    opened = await asyncio.gather(*opening)
    emit(
        "READY",
        {
            "connected": sum(opened),
            "failed": len(opened) - sum(opened),
            "seconds": round(time.monotonic() - began, 2),
        },
    )

    schedule = await read_line()
    window.measure_start, window.measure_end = schedule["measure_start"], schedule["measure_end"]
    frame = json.dumps({"type": "message.send", "content": config["reply"]})
    usable = [c for c in conversations if c.owner is not None and c.owner.proto is not None]
    ramp_ns = int(config.get("ramp", 1.0) * 1e9)
    pause = float(config.get("pause", 0.0))

    async def drive(index: int, conv: Conversation) -> None:
        assert conv.owner is not None and conv.owner.proto is not None
        await sleep_until(schedule["start"] + ramp_ns * index // max(1, len(usable)))
        loop = asyncio.get_running_loop()
        while time.monotonic_ns() < window.measure_end:
            conv.done = loop.create_future()
            conv.sent_at = time.monotonic_ns()
            conv.owner.proto.send_text(frame)
            remaining = (schedule["stop"] - time.monotonic_ns()) / 1e9
            try:
                outcome = await asyncio.wait_for(conv.done, max(0.0, remaining))
            except TimeoutError:
                conv.outcomes["unfinished"] += 1
                return
            conv.outcomes[outcome] += 1
            if outcome != "message.completed":
                await asyncio.sleep(0.5)  # do not hot-loop on a refusing server
            elif pause:
                await asyncio.sleep(pause)  # a user reading the reply (light load)

    drivers = [asyncio.create_task(drive(i, c)) for i, c in enumerate(usable)]
    await sleep_until(window.measure_end)
    # Replies in flight finish (their late tokens are real samples), up to the hard stop.
    _, pending = await asyncio.wait(
        drivers, timeout=max(0.0, (schedule["stop"] - time.monotonic_ns()) / 1e9)
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*drivers, return_exceptions=True)
    # Then the second viewers, which get the end of a reply in the relay's last batch.
    while time.monotonic_ns() < schedule["stop"] and any(
        last not in v.completed
        for c in usable
        for v in c.viewers
        for last in list(c.owner.first_written)[-1:]
        if c.owner is not None
    ):
        await asyncio.sleep(0.1)
    everyone = [v for c in conversations for v in ([c.owner] if c.owner else []) + c.viewers]
    dropped = sum(1 for v in everyone if v.proto is not None and v.proto.closed.done())
    await close_all(everyone)

    seconds = (window.measure_end - window.measure_start) / 1e9
    outcomes: Counter[str] = Counter()
    deltas, interval = reply_shape(config["reply"])
    for conv in conversations:
        outcomes.update(conv.outcomes)
        if conv.owner is not None:
            owner_missing = conv.owner.unfinished_window_tokens(deltas, interval)
            roles["owner"].undelivered += owner_missing
            for viewer in conv.viewers:
                lacking = conv.owner.window_tokens + owner_missing - viewer.window_tokens
                roles["viewer"].undelivered += max(0, lacking)
    both = RoleStats()
    for stats in roles.values():
        both.latencies += stats.latencies
        both.delivered += stats.delivered
        both.frames += stats.frames
        both.gaps += stats.gaps
        both.duplicates += stats.duplicates
        both.undelivered += stats.undelivered
    first = sorted(ns for c in conversations for ns in c.first_delta_ns)
    accepted = sorted(ns for c in conversations for ns in c.accepted_ns)
    emit(
        "RESULT",
        {
            "seconds": seconds,
            **_start_summary(first, accepted),
            "owner": roles["owner"].summary(seconds),
            "viewer": roles["viewer"].summary(seconds),
            "all": both.summary(seconds),
            "replies": dict(outcomes),
            "failure_sample": next(
                (c.failure_detail for c in conversations if c.failure_detail), ""
            ),
            "errors": dict(errors),
            "closed_by_server": dropped,
        },
    )


async def run_idle(config: dict[str, Any]) -> None:
    host, headers = config["host"], config["headers"]
    errors: Counter[str] = Counter()
    gate = asyncio.Semaphore(config.get("connect_concurrency", 20))
    viewers = [Viewer("viewer", RoleStats(), Window(), None, errors) for _ in config["sockets"]]
    began = time.monotonic()
    opened = await asyncio.gather(
        *[
            open_viewer(v, host, *where, headers, gate, errors)
            for v, where in zip(viewers, config["sockets"], strict=True)
        ]
    )
    emit(
        "READY",
        {
            "connected": sum(opened),
            "failed": len(opened) - sum(opened),
            "seconds": round(time.monotonic() - began, 2),
            "errors": dict(errors),
        },
    )
    await read_line()  # held open until bench.run has read the server's memory
    dropped = sum(1 for v in viewers if v.proto is not None and v.proto.closed.done())
    await close_all(viewers)
    emit("RESULT", {"closed_by_server": dropped, "errors": dict(errors)})


async def whole_reply(
    index: int,
    config: dict[str, Any],
    schedule: dict[str, int],
    conv: Conversation,
    http: Any,
    stats: dict[str, list[int]],
    errors: Counter[str],
) -> None:
    """One conversation's whole life as a browser lives it: (chatsite) POST the new-conversation
    form, follow the redirect to the chat page, open the socket, wait for `conversation.sync`;
    send the message, read the reply to its terminal frame, close the socket."""
    host, port, count = config["host"], config["port"], config["conversations"]
    await sleep_until(schedule["start"] + int(config["ramp"] * 1e9) * index // max(1, count))
    began = time.monotonic_ns()
    path = "/ws/bare/"
    if config["kind"] == "chatsite":
        try:
            created = await http.post(
                f"http://{host}:{port}/conversations/new",
                data={"agent": config["agent"], "csrfmiddlewaretoken": config["csrf"]},
                headers={"Origin": f"http://{host}:{port}"},
            )
            location = created.headers.get("location", "")
            match = re.search(r"/c/([0-9a-f-]{36})/", location)
            if created.status_code != 302 or match is None:
                errors[f"create:{created.status_code}"] += 1
                return
            page = await http.get(f"http://{host}:{port}{location}")
            if page.status_code != 200:
                errors[f"chat_page:{page.status_code}"] += 1
                return
        except Exception as exc:
            errors[f"create:{type(exc).__name__}"] += 1
            return
        path = f"/ws/conversations/{match.group(1)}/"
        stats["page_ns"].append(time.monotonic_ns() - began)
    assert conv.owner is not None
    opened_at = time.monotonic_ns()
    if not await open_viewer(
        conv.owner, host, port, path, config["headers"], asyncio.Semaphore(1), errors
    ):
        return
    stats["connect_ns"].append(time.monotonic_ns() - opened_at)
    conv.done = asyncio.get_running_loop().create_future()
    conv.sent_at = time.monotonic_ns()
    assert conv.owner.proto is not None
    conv.owner.proto.send_text(json.dumps({"type": "message.send", "content": config["reply"]}))
    try:
        outcome = await asyncio.wait_for(
            conv.done, max(0.0, (schedule["stop"] - time.monotonic_ns()) / 1e9)
        )
    except TimeoutError:
        outcome = "unfinished"
    conv.outcomes[outcome] += 1
    await close_all([conv.owner])
    stats["whole_ns"].append(time.monotonic_ns() - began)


async def run_whole(config: dict[str, Any]) -> None:
    """Mode `whole`: every conversation created, opened, answered once and closed, the server's
    CPU read by bench.run around the whole of it (not only a streaming window)."""
    import httpx

    errors: Counter[str] = Counter()
    window = Window(0, 2**63 - 1)  # every token counts, whenever it was written
    owner = RoleStats()
    conversations = []
    for _ in range(config["conversations"]):
        conv = Conversation()
        conv.owner = Viewer("owner", owner, window, conv, errors)
        conversations.append(conv)
    cookies = {"csrftoken": config.get("csrf", "")}
    stats: dict[str, list[int]] = {"page_ns": [], "connect_ns": [], "whole_ns": []}
    async with httpx.AsyncClient(
        cookies=cookies,
        headers={"Cookie": config["headers"].get("Cookie", "")},
        timeout=60,
        limits=httpx.Limits(max_connections=None),
    ) as http:
        emit("READY", {"connected": 0, "failed": 0, "seconds": 0})
        schedule = await read_line()
        await asyncio.gather(
            *[
                whole_reply(i, config, schedule, conv, http, stats, errors)
                for i, conv in enumerate(conversations)
            ]
        )
    done_at = time.monotonic_ns()
    first = sorted(ns for c in conversations for ns in c.first_delta_ns)
    accepted = sorted(ns for c in conversations for ns in c.accepted_ns)
    outcomes: Counter[str] = Counter()
    for conv in conversations:
        outcomes.update(conv.outcomes)
    deltas, _ = reply_shape(config["reply"])
    expected = deltas * config["conversations"]
    owner.undelivered = max(0, expected - owner.delivered)
    emit(
        "RESULT",
        {
            "done_at": done_at,
            "seconds": (done_at - schedule["start"]) / 1e9,
            **_start_summary(first, accepted),
            "page_ms_p50": _pct(sorted(stats["page_ns"]), 0.5),
            "connect_ms_p50": _pct(sorted(stats["connect_ns"]), 0.5),
            "whole_ms_p50": _pct(sorted(stats["whole_ns"]), 0.5),
            "all": owner.summary((done_at - schedule["start"]) / 1e9),
            "replies": dict(outcomes),
            "errors": dict(errors),
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0]) as f:
        config = json.load(f)
    runner = {"stream": run_stream, "whole": run_whole}.get(config["mode"], run_idle)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
