"""One measured streaming run (scenarios A and B): conversations streaming replies through the
given servers while the load generator records every token's latency.

The window: streams start over `--ramp` seconds, run `--warmup` seconds unmeasured, then
`--duration` seconds are measured (CPU from /proc, RSS, Redis commands, PostgreSQL connections).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import reply_shape
from bench.procs import Child, machine_busy_cpu, total_cpu, total_rss
from bench.report import fmt, log
from bench.runner import HOST, MIB, Runner, sleep_until_ns


@dataclass
class StreamRun:
    label: str
    result: dict[str, Any]
    seconds: float
    server_cpu: float
    server_rss: int
    server_rss_peak: int
    other_cpu: dict[str, float] = field(default_factory=dict)
    redis_per_s: dict[str, float] = field(default_factory=dict)
    pg_connections: int = 0

    @property
    def delivered(self) -> int:
        return int(self.result["all"]["delivered"])

    @property
    def cpu_per_1000(self) -> float | None:
        return self.server_cpu / self.delivered * 1000 if self.delivered else None


def stream_run(
    bench: Runner,
    label: str,
    servers: list[Child],
    headers: dict[str, str],
    conversations: list[dict[str, Any]],
    reply: str,
    *,
    load_cpus: set[int] | None,
    pause: float = 0.0,
    duration: float | None = None,
) -> StreamRun:
    o = bench.opts
    config = {
        "mode": "stream",
        "host": HOST,
        "headers": headers,
        "conversations": conversations,
        "reply": reply,
        "ramp": o.ramp,
        "connect_concurrency": 50,
        "pause": pause,
    }
    load, lines = bench.start_loadgen(label, config, cpus=load_cpus)
    try:
        ready = lines.expect("READY", 180)
        log(
            f"{label}: {ready['connected']} sockets open in {ready['seconds']} s"
            + (f", {ready['failed']} FAILED" if ready["failed"] else "")
        )
        now = time.monotonic_ns()
        start = now + 300_000_000
        measure_start = start + int((o.ramp + o.warmup) * 1e9)
        measure_end = measure_start + int((duration or o.duration) * 1e9)
        # Replies in flight when the window closes are awaited (their late tokens are real
        # samples) for up to one reply's length plus 10 s; what is still missing then is
        # counted as undelivered.
        stop = measure_end + int((max_reply_seconds(reply) + 10) * 1e9)
        lines.send(
            {
                "start": start,
                "measure_start": measure_start,
                "measure_end": measure_end,
                "stop": stop,
            }
        )
        pids = [c.pid for c in servers]
        sleep_until_ns(measure_start)
        before = cpu_snapshot(bench, pids, load)
        redis_before = bench.redis_calls()
        profilers = bench.start_profilers(label, servers)
        peak = total_rss(pids)
        while time.monotonic_ns() < measure_end - 1_000_000_000:
            time.sleep(1.0)
            peak = max(peak, total_rss(pids))
        sleep_until_ns(measure_end)
        after = cpu_snapshot(bench, pids, load)
        redis_after = bench.redis_calls()
        rss = total_rss(pids)
        pg_connections = bench.pg_connections()
        bench.stop_profilers(label, profilers)
        result = lines.expect("RESULT", (stop - time.monotonic_ns()) / 1e9 + 60)
    finally:
        bench.children.stop(load)
    seconds = (measure_end - measure_start) / 1e9
    spent = {k: after[k] - before[k] for k in before}
    # /proc tick rounding can make a quiet machine's remainder read a hair below zero.
    spent["foreign"] = max(0.0, spent["foreign"])
    run = StreamRun(
        label,
        result,
        seconds,
        spent.pop("server"),
        rss,
        max(peak, rss),
        {k: v / seconds for k, v in spent.items()},
        {
            k: (redis_after.get(k, 0) - v) / seconds
            for k, v in redis_before.items()
            if redis_after.get(k, 0) > v
        },
    )
    run.pg_connections = pg_connections
    bench.details[label] = {
        **result,
        "server_cpu_s": run.server_cpu,
        "pg_connections": pg_connections,
        "server_rss_mib": rss / MIB,
        "server_rss_peak_mib": run.server_rss_peak / MIB,
        "cores_used": run.other_cpu,
        "redis_commands_per_s": run.redis_per_s,
    }
    a = result["all"]
    log(
        f"{label}: p50 {fmt(a['p50_ms'])} ms, p99 {fmt(a['p99_ms'])} ms, "
        f"max {fmt(a['max_ms'])} ms, {a['delivered_per_s']:.0f} deltas/s, "
        f"{a['undelivered']} undelivered, "
        f"server {run.server_cpu / seconds:.2f} cores, "
        f"{fmt(run.cpu_per_1000)} CPU s/1k deltas, replies {result['replies']}, "
        f"gaps {a['gaps']}, errors {result['errors'] or 'none'}"
    )
    if result.get("failure_sample"):
        log(f"{label}: a failed reply said {result['failure_sample']}")
    if run.other_cpu["foreign"] > 0.15:
        log(
            f"{label}: WARNING other processes used {run.other_cpu['foreign']:.2f} cores "
            "during the window: figures are disturbed, run again on a quiet machine"
        )
    if run.other_cpu["loadgen"] > 0.85:
        log(
            f"{label}: WARNING the load generator used {run.other_cpu['loadgen']:.2f} of a "
            "core: its own queueing inflates the latencies"
        )
    return run


def max_reply_seconds(spec: str) -> float:
    deltas, interval_ns = reply_shape(spec)
    return deltas * interval_ns / 1e9


def cpu_snapshot(bench: Runner, server_pids: list[int], load: Child) -> dict[str, float]:
    assert bench.vendor is not None
    snapshot = {
        "server": total_cpu(server_pids),
        "loadgen": total_cpu([load.pid]),
        "vendor": total_cpu([bench.vendor.pid]),
        "postgres": bench.services.postgres_cpu(),
        "redis": bench.services.redis_cpu(),
    }
    # Whatever else the machine ran meanwhile (another test suite, a build): on 2 cores it
    # takes CPU from the servers and shows up as latency, so it is measured and reported.
    snapshot["foreign"] = machine_busy_cpu() - sum(snapshot.values())
    return snapshot
