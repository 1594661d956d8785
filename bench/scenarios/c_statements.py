"""C: database statements per reply <= 10, for replies of 50 and 500 deltas.

Served by the counting chatsite (bench/counting_asgi.py): `--c-concurrency` sockets connect, the
counter is read, each runs one reply, and the counter is read again once every terminal frame
has arrived and the runs' last statements had time to land.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.report import Row, fmt, log, verdict
from bench.runner import COUNTING_APP, HOST, Runner, query_counts, ws_path
from bench.wsproto import connect

MAX_STATEMENTS_PER_REPLY = 10
# A 1 s reply and a 10 s one at 50 deltas/s: what grows with a reply's length shows as the
# difference between the two.
REPLY_DELTAS = (50, 500)
TERMINAL_FRAMES = ("message.completed", "message.failed", "message.canceled", "error")


def run(bench: Runner) -> None:
    o = bench.opts
    log(f"C: database statements per reply ({o.c_concurrency} replies at once, {o.rate} deltas/s)")
    with bench.servers(("chatsite-counting", COUNTING_APP, bench.server_cpus, {})) as [(_, port)]:
        for deltas in REPLY_DELTAS:
            ids = bench.fixtures.take(o.c_concurrency)
            counts, outcomes = asyncio.run(count_replies(bench, port, ids, deltas))
            replies = outcomes.get("message.completed", 0)
            statements = sum(counts["statements"].values())
            per_reply = statements / replies if replies else None
            bench.details[f"C-{deltas}"] = {"outcomes": dict(outcomes), **counts}

            def share(prefix: str, counts: dict[str, Any] = counts, n: int = replies) -> float:
                total = sum(v for k, v in counts["statements"].items() if prefix in k)
                return total / n if n else 0.0

            log(
                f"C: {deltas}-delta replies: {fmt(per_reply)} statements and "
                f"{counts['connections'] / max(1, replies):.1f} new connections per reply; "
                f"{breakdown(counts['statements'], replies)}"
            )
            bench.rows += [
                Row(
                    "C",
                    f"DB statements per reply, {deltas} deltas ({deltas / o.rate:.0f} s stream)",
                    per_reply,
                    None,
                    "≤ 10",
                    verdict(per_reply is not None and per_reply <= MAX_STATEMENTS_PER_REPLY),
                ),
                Row(
                    "C",
                    "  of which: health-check SELECT 1 / periodic flush UPDATE / other",
                    f"{fmt(share('health_check'))} / {fmt(share('flush_run'))} / "
                    f"{fmt((per_reply or 0) - share('health_check') - share('flush_run'))}",
                ),
                Row(
                    "C",
                    f"DB connections opened per reply, {deltas} deltas",
                    counts["connections"] / replies if replies else None,
                ),
            ]


async def count_replies(
    bench: Runner, port: int, ids: list[str], deltas: int
) -> tuple[dict[str, Any], Counter[str]]:
    headers = bench.cookie_headers(port, bench.fixtures.session)
    loop = asyncio.get_running_loop()
    synced = [loop.create_future() for _ in ids]
    done = [loop.create_future() for _ in ids]

    def on_text(k: int) -> Callable[[bytes, int], None]:
        def handle(payload: bytes, now: int) -> None:
            kind = json.loads(payload).get("type")
            if kind == "conversation.sync" and not synced[k].done():
                synced[k].set_result(None)
            elif kind in TERMINAL_FRAMES and not done[k].done():
                done[k].set_result(kind)

        return handle

    sockets = [
        await connect(HOST, port, ws_path(cid), headers, on_text(k)) for k, cid in enumerate(ids)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*synced), 60)
        await asyncio.sleep(0.5)  # let the connects' own queries finish before counting
        before = await asyncio.to_thread(query_counts, port)
        frame = json.dumps({"type": "message.send", "content": bench.reply_spec(deltas)})
        for sock in sockets:
            sock.send_text(frame)
        outcomes = Counter(
            await asyncio.wait_for(asyncio.gather(*done), deltas / bench.opts.rate + 60)
        )
        # The run's task ends after its terminal frame; give its last statements time.
        await asyncio.sleep(1.5)
        after = await asyncio.to_thread(query_counts, port)
    finally:
        for sock in sockets:
            sock.abort()
    statements = Counter(after["statements"])
    statements.subtract(before["statements"])
    return (
        {
            "connections": after["connections"] - before["connections"],
            "statements": {k: v for k, v in statements.items() if v},
        },
        outcomes,
    )


def breakdown(statements: dict[str, int], replies: int) -> str:
    if not replies:
        return "no completed reply"
    top = sorted(statements.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v / replies:.1f}" for k, v in top)
