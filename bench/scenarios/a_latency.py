"""A: latency and CPU per delta against the bare relay, one Daphne process, in-memory layer.

N conversations x 50 deltas/s, one viewer each, first through the bare relay (the ceiling), then
through chatsite: p99 latency and server CPU per delivered delta, each as a ratio to the bare
relay (target <= 1.5x).
"""

from __future__ import annotations

from bench.report import Row, log, verdict
from bench.runner import BARE_APP, CHATSITE_APP, HOST, MIB, Runner, ws_path
from bench.streaming import stream_run

# The target of both ratios (latency and CPU per delta): chatsite / bare relay.
MAX_RATIO = 1.5


def run(bench: Runner) -> None:
    o = bench.opts
    n = o.conversations_a
    log(f"A: {n} conversations x {o.rate} deltas/s, one viewer, one process: bare relay")
    reply = bench.reply_spec(o.reply_deltas)
    with bench.servers(("bare", BARE_APP, bench.server_cpus, {})) as [(server, port)]:
        bare = stream_run(
            bench,
            "A-bare",
            [server],
            {"Origin": f"http://{HOST}:{port}"},
            [{"owner": [port, "/ws/bare/"], "viewers": []} for _ in range(n)],
            reply,
            load_cpus=bench.load_cpus,
        )
    log("A: same load through chatsite (in-memory layer, PostgreSQL)")
    ids = bench.fixtures.take(n)
    with bench.servers(("chatsite", CHATSITE_APP, bench.server_cpus, {})) as [(server, port)]:
        chat = stream_run(
            bench,
            "A-chatsite",
            [server],
            bench.cookie_headers(port, bench.fixtures.session),
            [{"owner": [port, ws_path(i)], "viewers": []} for i in ids],
            reply,
            load_cpus=bench.load_cpus,
        )
    ca, ba = chat.result["all"], bare.result["all"]
    p99 = Row("A", "p99 latency, ms", ca["p99_ms"], ba["p99_ms"], "≤ 1.5x bare")
    cpu = Row(
        "A",
        "server CPU s per 1,000 delivered deltas",
        chat.cpu_per_1000,
        bare.cpu_per_1000,
        "≤ 1.5x bare",
    )
    for row in (p99, cpu):
        row.verdict = verdict(row.ratio is not None and row.ratio <= MAX_RATIO)
    bench.target(
        "one process, 100 conversations x 50 deltas/s: p99 vs the bare relay",
        p99,
        f"{n} x {o.rate}/s, 1 process",
    )
    bench.rows += [
        Row("A", "p50 latency, ms", ca["p50_ms"], ba["p50_ms"]),
        p99,
        Row("A", "max latency, ms", ca["max_ms"], ba["max_ms"]),
        Row(
            "A",
            "message.send -> first delta, p50 ms",
            chat.result["first_delta"]["p50_ms"],
            bare.result["first_delta"]["p50_ms"],
        ),
        Row(
            "A",
            "message.send -> first delta, p99 ms",
            chat.result["first_delta"]["p99_ms"],
            bare.result["first_delta"]["p99_ms"],
        ),
        Row(
            "A",
            f"delivered deltas/s (offered {n * o.rate:,})",
            ca["delivered_per_s"],
            ba["delivered_per_s"],
        ),
        cpu,
        Row(
            "A",
            "server CPU, cores busy",
            chat.server_cpu / chat.seconds,
            bare.server_cpu / bare.seconds,
        ),
        Row("A", "server RSS at end, MiB", chat.server_rss / MIB, bare.server_rss / MIB),
        Row(
            "A",
            "PostgreSQL CPU, cores busy",
            chat.other_cpu["postgres"],
            bare.other_cpu["postgres"],
        ),
        Row(
            "A",
            "load generator + vendor CPU, cores busy (not server)",
            chat.other_cpu["loadgen"] + chat.other_cpu["vendor"],
            bare.other_cpu["loadgen"] + bare.other_cpu["vendor"],
        ),
        Row(
            "A",
            "other processes on the machine, cores busy (noise)",
            chat.other_cpu["foreign"],
            bare.other_cpu["foreign"],
            "≈ 0",
        ),
        Row(
            "A",
            "lost/duplicated deltas (offset gaps + dups)",
            ca["gaps"] + ca["duplicates"],
            ba["gaps"] + ba["duplicates"],
            "0",
            verdict(ca["gaps"] + ca["duplicates"] == 0),
        ),
    ]
