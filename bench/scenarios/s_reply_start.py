"""S: what a reply's start costs at light load, against the bare relay, in one run.

A few conversations (default 5, sockets already open, one process pinned as in A) each send a
message, read a one-delta reply, wait 0.2 s (a user reading) and send the next. Every reply is
then nearly all start and end: message.send -> first delta (wall, p50/p99) is the time to first
token the relay adds, and server CPU per reply is the start's cost plus the final write. Target:
chatsite adds <= 10 ms p50 to the time to first token.
"""

from __future__ import annotations

from bench.report import Row, fmt, log, verdict
from bench.runner import BARE_APP, CHATSITE_APP, HOST, Runner, ws_path
from bench.streaming import stream_run

# The target: chatsite's p50 message.send -> first delta minus the bare relay's.
MAX_ADDED_P50_MS = 10.0
# A user reads a reply before sending the next: light load, not a send loop.
PAUSE_S = 0.2


def run(bench: Runner) -> None:
    o = bench.opts
    n = o.conversations_s
    reply = bench.reply_spec(1)
    seconds = min(o.duration, 10.0)
    log(f"S: {n} conversations, one-delta replies, {PAUSE_S} s pause: bare relay")
    with bench.servers(("bare", BARE_APP, bench.server_cpus, {})) as [(server, port)]:
        bare = stream_run(
            bench,
            "S-bare",
            [server],
            {"Origin": f"http://{HOST}:{port}"},
            [{"owner": [port, "/ws/bare/"], "viewers": []} for _ in range(n)],
            reply,
            load_cpus=bench.load_cpus,
            pause=PAUSE_S,
            duration=seconds,
        )
    log("S: the same through chatsite")
    ids = bench.fixtures.take(n)
    with bench.servers(("chatsite", CHATSITE_APP, bench.server_cpus, {})) as [(server, port)]:
        chat = stream_run(
            bench,
            "S-chatsite",
            [server],
            bench.cookie_headers(port, bench.fixtures.session),
            [{"owner": [port, ws_path(i)], "viewers": []} for i in ids],
            reply,
            load_cpus=bench.load_cpus,
            pause=PAUSE_S,
            duration=seconds,
        )
    cf, bf = chat.result["first_delta"], bare.result["first_delta"]
    added = (
        cf["p50_ms"] - bf["p50_ms"]
        if cf["p50_ms"] is not None and bf["p50_ms"] is not None
        else None
    )
    ttft = Row(
        "S",
        "time to first token added at light load, p50 ms (chatsite − bare)",
        added,
        None,
        f"≤ {MAX_ADDED_P50_MS:.0f} ms",
        verdict(added is not None and added <= MAX_ADDED_P50_MS),
    )
    bench.target(
        "chatsite adds to the time to first token at light load (p50)",
        ttft,
        f"{n} conversations, 1-delta replies, {PAUSE_S} s apart",
    )
    # One delta per reply: the replies in the window are the deltas delivered in it.
    chat_replies, bare_replies = chat.delivered, bare.delivered
    bench.rows += [
        Row("S", "message.send -> first delta, p50 ms", cf["p50_ms"], bf["p50_ms"]),
        Row("S", "message.send -> first delta, p99 ms", cf["p99_ms"], bf["p99_ms"]),
        Row(
            "S",
            "message.send -> placeholder announced (start before the vendor call), p50 / p99 ms",
            f"{fmt(chat.result['accepted']['p50_ms'])} / {fmt(chat.result['accepted']['p99_ms'])}",
        ),
        ttft,
        Row(
            "S",
            "server CPU ms per reply start (one-delta reply: start + final write)",
            chat.server_cpu / chat_replies * 1000 if chat_replies else None,
            bare.server_cpu / bare_replies * 1000 if bare_replies else None,
        ),
        Row("S", "replies/s", chat_replies / chat.seconds, bare_replies / bare.seconds),
        Row(
            "S",
            "other processes on the machine, cores busy (noise)",
            chat.other_cpu["foreign"],
            bare.other_cpu["foreign"],
            "≈ 0",
        ),
    ]
    log(f"S: added p50 {fmt(added)} ms")
