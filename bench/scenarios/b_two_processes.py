"""B: two Daphne processes + Redis + PostgreSQL, a second viewer of every conversation on the
other process: p99 latency over every viewer <= 250 ms.
"""

from __future__ import annotations

import os

from bench.report import Row, fmt, log, verdict
from bench.runner import BARE_APP, CHATSITE_APP, HOST, MIB, Runner, ws_path
from bench.streaming import stream_run

TARGET_P99_MS = 250
# The target for a reply's start under this load (message.send -> first delta, p99).
TARGET_FIRST_DELTA_P99_MS = 300


def run(bench: Runner) -> None:
    o = bench.opts
    n, procs = o.conversations_b, o.processes_b
    log(
        f"B: {n} conversations x {o.rate} deltas/s on {procs} processes + Redis "
        f"(channel layer: {o.b_layer or 'the settings default'}), second viewer on the "
        "other process"
    )
    bench.flush_redis()
    ids = bench.fixtures.take(n)
    layer = {"REDIS_URL": o.redis_url}
    if o.b_layer:
        layer["CHANNEL_LAYER"] = o.b_layer
    backend = (
        bench.python(
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.CHANNEL_LAYERS['default']['BACKEND'])",
            env=bench.env(**layer),
        )
        .strip()
        .rpartition("\n")[2]
    )
    log(f"B: channel layer {backend}")
    # Unlike A, C, D and E, nothing is pinned here: two servers share both cores with the vendor.
    if bench.vendor is not None:
        os.sched_setaffinity(bench.vendor.pid, bench.all_cpus)
    try:
        with bench.servers(
            *[(f"chatsite-{i + 1}", CHATSITE_APP, None, layer) for i in range(procs)]
        ) as started:
            ports = [port for _, port in started]
            convs = [
                {
                    "owner": [ports[k % procs], ws_path(cid)],
                    "viewers": [[ports[(k + 1) % procs], ws_path(cid)]],
                }
                for k, cid in enumerate(ids)
            ]
            # The load generator sends each socket its own server's Origin.
            headers = bench.cookie_headers(ports[0], bench.fixtures.session)
            result = stream_run(
                bench,
                "B-chatsite",
                [server for server, _ in started],
                headers,
                convs,
                bench.reply_spec(o.reply_deltas),
                load_cpus=None,
            )
        bare = None
        if o.b_bare:
            # The ceiling at the same vendor load, for "which resource ran out": two bare relay
            # processes, each conversation's stream to one socket on alternate processes (the
            # bare relay has no fan-out, so it carries half the socket writes).
            log(f"B: the bare relay at the same load ({n} streams on {procs} processes)")
            with bench.servers(
                *[(f"bare-{i + 1}", BARE_APP, None, {}) for i in range(procs)]
            ) as started:
                ports = [port for _, port in started]
                bare = stream_run(
                    bench,
                    "B-bare",
                    [server for server, _ in started],
                    {"Origin": f"http://{HOST}:{ports[0]}"},
                    [{"owner": [ports[k % procs], "/ws/bare/"], "viewers": []} for k in range(n)],
                    bench.reply_spec(o.reply_deltas),
                    load_cpus=None,
                )
    finally:
        if bench.vendor is not None and bench.load_cpus:
            os.sched_setaffinity(bench.vendor.pid, bench.load_cpus)
    a, own, view = result.result["all"], result.result["owner"], result.result["viewer"]
    first, accepted = result.result["first_delta"], result.result["accepted"]
    ba = bare.result["all"] if bare else {}
    bfirst = bare.result["first_delta"] if bare else {}
    p99 = Row(
        "B",
        "p99 latency, ms (all viewers)",
        a["p99_ms"],
        ba.get("p99_ms"),
        "≤ 250 ms",
        verdict(a["p99_ms"] is not None and a["p99_ms"] <= TARGET_P99_MS),
    )
    start = Row(
        "B",
        "message.send -> first delta, p99 ms",
        first["p99_ms"],
        bfirst.get("p99_ms"),
        f"≤ {TARGET_FIRST_DELTA_P99_MS} ms",
        verdict(first["p99_ms"] is not None and first["p99_ms"] <= TARGET_FIRST_DELTA_P99_MS),
    )
    if procs == 2:  # the targets are for two processes
        load = f"{n} x {o.rate}/s, 2 processes, 2 viewers each"
        bench.target(
            "two processes + Redis, 200 conversations x 50 deltas/s, watched from both: p99",
            p99,
            load,
        )
        bench.target(
            "two processes + Redis, 200 conversations: message.send -> first delta p99",
            start,
            load,
        )
    bench.rows += [
        Row(
            "B",
            "channel layer",
            backend.rpartition(".")[2].removesuffix("ChannelLayer") or backend,
        ),
        Row("B", "p50 latency, ms (all viewers)", a["p50_ms"], ba.get("p50_ms")),
        p99,
        Row("B", "p99 latency, ms: owner socket (direct)", own["p99_ms"], ba.get("p99_ms")),
        Row("B", "p99 latency, ms: second viewer (batched via Redis)", view["p99_ms"]),
        Row("B", "max latency, ms", a["max_ms"]),
        Row("B", "message.send -> first delta, p50 ms", first["p50_ms"], bfirst.get("p50_ms")),
        Row(
            "B",
            "message.send -> placeholder announced (start before the vendor call), p50 / p99 ms",
            f"{fmt(accepted['p50_ms'])} / {fmt(accepted['p99_ms'])}",
        ),
        start,
        Row(
            "B",
            "second-viewer deltas never delivered, %",
            100 * view["undelivered"] / max(1, view["undelivered"] + view["samples"]),
            None,
            "0",
            verdict(view["undelivered"] == 0 and view["samples"] > 0),
        ),
        Row(
            "B",
            f"delivered deltas/s (offered {2 * n * o.rate:,} to {2 * n} sockets)",
            a["delivered_per_s"],
        ),
        Row(
            "B",
            "server CPU s per 1,000 delivered deltas",
            result.cpu_per_1000,
            bare.cpu_per_1000 if bare else None,
        ),
        Row(
            "B",
            f"server CPU, cores busy ({procs} processes)",
            result.server_cpu / result.seconds,
            bare.server_cpu / bare.seconds if bare else None,
        ),
        Row("B", f"server RSS at end, MiB ({procs} processes)", result.server_rss / MIB),
        Row("B", "Redis CPU, cores busy", result.other_cpu["redis"]),
        Row(
            "B",
            f"Redis PUBLISH/s (the process bus: at most {procs} processes x 40/s)",
            result.redis_per_s.get("publish", 0.0),
        ),
        Row("B", "Redis commands/s, all", sum(result.redis_per_s.values())),
        Row("B", "PostgreSQL CPU, cores busy", result.other_cpu["postgres"]),
        Row(
            "B",
            "load generator + vendor CPU, cores busy (not server)",
            result.other_cpu["loadgen"] + result.other_cpu["vendor"],
            bare.other_cpu["loadgen"] + bare.other_cpu["vendor"] if bare else None,
        ),
        Row(
            "B",
            "whole machine, cores busy (of 2)",
            result.server_cpu / result.seconds + sum(result.other_cpu.values()),
            bare.server_cpu / bare.seconds + sum(bare.other_cpu.values()) if bare else None,
        ),
        Row(
            "B",
            "other processes on the machine, cores busy (noise)",
            result.other_cpu["foreign"],
            bare.other_cpu["foreign"] if bare else None,
            "≈ 0",
        ),
        Row(
            "B",
            "lost/duplicated deltas (offset gaps + dups)",
            a["gaps"] + a["duplicates"],
            None,
            "0",
            verdict(a["gaps"] + a["duplicates"] == 0),
        ),
        Row(
            "B",
            "replies that did not complete",
            sum(v for k, v in result.result["replies"].items() if k != "message.completed"),
            None,
            "0 (unfinished at the end excepted)",
        ),
    ]
