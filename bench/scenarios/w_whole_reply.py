"""W: what a whole reply costs, against the bare relay under the same load, in one run.

Each of N conversations (default 50, started over 1 s) lives once as a browser lives it: chatsite
gets the new-conversation form POSTed (CSRF token and session cookie, as the page sends them),
the redirect's chat page loaded, the socket opened, one `message.send`, the reply (400 deltas at
20/s = 20 s) read to its terminal frame, the socket closed. The bare relay, which stores nothing,
gets the socket opened, the message sent and the reply read. Server CPU is read around the whole
run (from before the first request to after the last socket closed, the final write included),
not a streaming window, and divided by the deltas delivered: target <= 1.3x the bare relay.
"""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

from bench.procs import Child
from bench.report import Row, fmt, log, verdict
from bench.runner import BARE_APP, CHATSITE_APP, HOST, Runner
from bench.streaming import cpu_snapshot

# The target: whole-reply server CPU per delivered delta, chatsite / bare relay.
MAX_CPU_RATIO = 1.3


def csrf_secret() -> str:
    # Django accepts a bare 32-character secret (CSRF_SECRET_LENGTH) as both cookie and form
    # field, which is what a browser that read the cookie would send.
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))


def whole_run(
    bench: Runner, label: str, server: Child, port: int, kind: str, count: int, reply: str
) -> dict[str, Any]:
    o = bench.opts
    csrf = csrf_secret()
    cookie = f"sessionid={bench.fixtures.session}; csrftoken={csrf}" if kind == "chatsite" else ""
    config = {
        "mode": "whole",
        "kind": kind,
        "host": HOST,
        "port": port,
        "headers": {"Cookie": cookie} if cookie else {},
        "conversations": count,
        "agent": "bench",
        "csrf": csrf,
        "reply": reply,
        "ramp": o.ramp,
    }
    load, lines = bench.start_loadgen(label, config, cpus=bench.load_cpus)
    try:
        lines.expect("READY", 60)
        start = time.monotonic_ns() + 200_000_000
        deltas, interval = (int(x) for x in _shape(reply))
        stop = start + int((o.ramp + deltas * interval / 1e9 + 60) * 1e9)
        before = cpu_snapshot(bench, [server.pid], load)
        lines.send({"start": start, "stop": stop})
        profilers = bench.start_profilers(label, [server])
        result = lines.expect("RESULT", (stop - time.monotonic_ns()) / 1e9 + 30)
        after = cpu_snapshot(bench, [server.pid], load)
        bench.stop_profilers(label, profilers)
    finally:
        bench.children.stop(load)
    seconds = (time.monotonic_ns() - start) / 1e9
    spent = {k: after[k] - before[k] for k in before}
    spent["foreign"] = max(0.0, spent["foreign"])
    delivered = result["all"]["delivered"]
    result["server_cpu_s"] = spent["server"]
    result["cpu_ms_per_delta"] = spent["server"] / delivered * 1000 if delivered else None
    result["cores"] = {k: v / seconds for k, v in spent.items()}
    bench.details[label] = result
    log(
        f"{label}: {delivered} deltas delivered, server {spent['server']:.2f} CPU s "
        f"({fmt(result['cpu_ms_per_delta'])} ms per delta), first delta p50 "
        f"{fmt(result['first_delta']['p50_ms'])} ms, p99 {fmt(result['first_delta']['p99_ms'])} "
        f"ms, replies {result['replies']}, errors {result['errors'] or 'none'}, "
        f"other processes {result['cores']['foreign']:.2f} cores"
    )
    return result


def _shape(spec: str) -> tuple[int, int]:
    from bench.loadgen import reply_shape

    return reply_shape(spec)


def run(bench: Runner) -> None:
    o = bench.opts
    n, rate, deltas = o.conversations_w, o.rate_w, o.reply_deltas_w
    reply = bench.reply_spec(deltas, rate)
    log(f"W: {n} conversations x {rate} deltas/s x {deltas} deltas, whole replies: bare relay")
    with bench.servers(("bare", BARE_APP, bench.server_cpus, {})) as [(server, port)]:
        bare = whole_run(bench, "W-bare", server, port, "bare", n, reply)
    log("W: the same through chatsite (created, page loaded, socket opened, reply, final write)")
    with bench.servers(("chatsite", CHATSITE_APP, bench.server_cpus, {})) as [(server, port)]:
        chat = whole_run(bench, "W-chatsite", server, port, "chatsite", n, reply)
    cpu = Row(
        "W",
        f"whole-reply server CPU ms per delivered delta ({n} x {rate}/s x {deltas})",
        chat["cpu_ms_per_delta"],
        bare["cpu_ms_per_delta"],
        f"≤ {MAX_CPU_RATIO}x bare",
    )
    cpu.verdict = verdict(cpu.ratio is not None and cpu.ratio <= MAX_CPU_RATIO)
    bench.target(
        "whole-reply CPU per delta (socket opened, message sent, reply streamed, final write)",
        cpu,
        f"{n} x {rate}/s x {deltas}",
    )
    undelivered = chat["all"]["undelivered"]
    bench.rows += [
        cpu,
        Row("W", "server CPU s, whole run", chat["server_cpu_s"], bare["server_cpu_s"]),
        Row(
            "W",
            "server CPU ms per reply (whole run / replies)",
            chat["server_cpu_s"] / n * 1000,
            bare["server_cpu_s"] / n * 1000,
        ),
        Row("W", "deltas delivered", chat["all"]["delivered"], bare["all"]["delivered"]),
        Row("W", "p99 latency, ms", chat["all"]["p99_ms"], bare["all"]["p99_ms"]),
        Row(
            "W",
            "message.send -> first delta, p50 / p99 ms",
            f"{fmt(chat['first_delta']['p50_ms'])} / {fmt(chat['first_delta']['p99_ms'])}",
            f"{fmt(bare['first_delta']['p50_ms'])} / {fmt(bare['first_delta']['p99_ms'])}",
        ),
        Row("W", "create + chat page, p50 ms", chat["page_ms_p50"]),
        Row(
            "W",
            "socket open to conversation.sync, p50 ms",
            chat["connect_ms_p50"],
            bare["connect_ms_p50"],
        ),
        Row(
            "W",
            "other processes on the machine, cores busy (noise)",
            chat["cores"]["foreign"],
            bare["cores"]["foreign"],
            "≈ 0",
        ),
        Row(
            "W",
            "deltas not delivered",
            undelivered,
            bare["all"]["undelivered"],
            "0",
            verdict(undelivered == 0 and not chat["errors"]),
        ),
    ]
