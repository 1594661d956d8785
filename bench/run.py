"""`make bench`: chatsite's relay against a minimal ASGI relay, under the same load, in one run.

    .venv/bin/python -m bench                 # every scenario, about 5½ minutes on 2 cores
    .venv/bin/python -m bench --scenarios A,E --duration 10

Scenarios (docs/performance.md has the method and a real run's results):
  A  N conversations x 50 deltas/s, one viewer each, one Daphne process, in-memory layer:
     p99 latency and CPU per delta as a ratio to the bare relay (target <= 1.5x).
  B  two Daphne processes + Redis + PostgreSQL, a second viewer of every conversation on the
     other process: p99 latency <= 250 ms.
  C  database statements per reply <= 10, for replies of 50 and 500 deltas.
  D  10,000 conversations and a 2,000-message transcript: each page <= 200 ms.
  E  server memory per idle socket <= 100 KB, and a client that stops reading: is memory bounded?
  F  conversation search over 100,000 messages in 5,000 conversations (PostgreSQL full-text):
     p95 <= 200 ms through services.list_conversations.
  S  reply start at light load: 5 conversations, one-delta replies, 0.2 s apart: message.send ->
     first delta p50/p99 and server CPU per reply start; chatsite adds <= 10 ms p50.
  W  whole replies: 50 conversations x 20 deltas/s x 400, each created, its page loaded and its
     socket opened as a browser does, server CPU over the whole run: <= 1.3x the bare relay.

The run ends with a summary: every target of the benchmark with its measured value, the target
and met / missed ("not run" for a scenario left out), also under "targets" in --json.

Processes: the fake vendor (bench.vendor), the servers (Daphne running chatsite or
bench.bare_relay) and the browser side (bench.loadgen) are separate processes; CPU is read from
/proc/<pid>/stat for each, so the client's and the vendor's work never counts as server CPU.
Unless --no-pin, single-server scenarios run the server alone on CPU 0 and the vendor and the
load generator on CPU 1; B leaves all processes free to use both cores.

Everything started is stopped on exit, Ctrl-C and errors included, and the scratch database is
dropped unless --keep-db.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from bench.report import log, machine, summary_table, table, target_summary
from bench.runner import PYTHON, Options, Runner, wait_for_quiet
from bench.scenarios import SCENARIOS


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, default: all")
    p.add_argument("--conversations-a", type=int, default=100)
    p.add_argument("--conversations-b", type=int, default=200)
    p.add_argument("--rate", type=int, default=50, help="vendor deltas per second per stream")
    p.add_argument(
        "--reply-deltas",
        type=int,
        default=250,
        help="deltas per reply in A/B (250 at 50/s = a 5 s reply, then the next)",
    )
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the ramp, unmeasured")
    p.add_argument("--ramp", type=float, default=1.0, help="seconds over which streams start")
    p.add_argument(
        "--processes-b",
        type=int,
        default=2,
        help="B: server processes (the issue's targets are for 2; 3-4 check docs/scaling.md)",
    )
    p.add_argument("--conversations-w", type=int, default=50)
    p.add_argument("--rate-w", type=int, default=20, help="W: vendor deltas per second")
    p.add_argument("--reply-deltas-w", type=int, default=400, help="W: deltas per reply")
    p.add_argument("--conversations-s", type=int, default=5)
    p.add_argument(
        "--no-b-bare",
        dest="b_bare",
        action="store_false",
        help="B: skip the bare relay at the same load (two processes, one socket per stream)",
    )
    p.add_argument("--c-concurrency", type=int, default=10, help="C: replies run at once")
    p.add_argument("--list-conversations", type=int, default=10_000)
    p.add_argument("--transcript", type=int, default=2_000)
    p.add_argument("--page-requests", type=int, default=7, help="D: timed requests per page")
    p.add_argument("--idle-sockets", type=int, default=1_000)
    # 30 s: "growth stops" is read from the second half of the stall, so the stall must last
    # twice as long as chatsite takes to close the socket (conversations/backpressure.py: the
    # kernel's buffers fill, then 256 KiB behind for a 10 s grace: ~12 s at 5,000 deltas/s).
    # At 15 s the close fell inside the second half and its growth counted (2026-11-27:
    # RSS flat from 12 s on, yet +3.7 MiB "in the second half").
    p.add_argument("--stall-seconds", type=float, default=30.0)
    p.add_argument(
        "--stall-rate",
        type=int,
        default=5_000,
        help="E: deltas/s streamed to the client that stops reading",
    )
    p.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin server to CPU 0 and load to CPU 1",
    )
    p.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL database to connect to while creating the bench database",
    )
    p.add_argument("--db-name", default="chatsite_bench")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
        help="B's channel layer; this Redis database is flushed before and after",
    )
    p.add_argument(
        "--b-layer",
        default="",
        metavar="KIND",
        help="B: CHANNEL_LAYER for the servers (pubsub or core); default: settings'",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the machine to be idle before starting "
        "(on 2 cores, anything else running distorts every figure)",
    )
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--profile",
        dest="profile_dir",
        type=Path,
        default=None,
        help="py-spy the servers during each measured window into this folder "
        "(slows the servers: profiled figures are not the benchmark's)",
    )
    p.add_argument(
        "--json",
        dest="json_out",
        type=Path,
        default=None,
        help="also write every figure as JSON here",
    )
    a = p.parse_args(argv)
    scenarios = [s.strip().upper() for s in a.scenarios.split(",") if s.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    return Options(
        scenarios=scenarios,
        conversations_a=a.conversations_a,
        conversations_b=a.conversations_b,
        rate=a.rate,
        reply_deltas=a.reply_deltas,
        processes_b=a.processes_b,
        conversations_w=a.conversations_w,
        rate_w=a.rate_w,
        reply_deltas_w=a.reply_deltas_w,
        conversations_s=a.conversations_s,
        b_bare=a.b_bare,
        duration=a.duration,
        warmup=a.warmup,
        ramp=a.ramp,
        c_concurrency=a.c_concurrency,
        list_conversations=a.list_conversations,
        transcript=a.transcript,
        page_requests=a.page_requests,
        idle_sockets=a.idle_sockets,
        stall_seconds=a.stall_seconds,
        stall_rate=a.stall_rate,
        pin=a.pin,
        pg_url=a.pg_url,
        db_name=a.db_name,
        redis_url=a.redis_url,
        keep_db=a.keep_db,
        strict=a.strict,
        b_layer=a.b_layer,
        wait_quiet=a.wait_quiet,
        profile_dir=a.profile_dir,
        json_out=a.json_out,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the `finally` below stops every child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Runner(opts)
    info = machine()
    log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    log(f"command: {' '.join([Path(PYTHON).name, '-m', 'bench', *(argv or sys.argv[1:])])}")
    began = time.monotonic()
    try:
        wait_for_quiet(opts.wait_quiet)
        bench.setup()
        for name in opts.scenarios:
            SCENARIOS[name](bench)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.cleanup()
    problems = bench.details.get("server_log_problems")
    if problems:
        log(f"server logs had problems (see {bench.tmp}): {problems}")
    print()
    print(table(bench.rows))
    summary = target_summary(bench)
    print("\nTargets:\n")
    print(summary_table(summary))
    print(f"\nTotal {time.monotonic() - began:.0f} s; logs in {bench.tmp}")
    if opts.json_out is not None:
        opts.json_out.write_text(
            json.dumps(
                {
                    "machine": info,
                    "rows": [r.__dict__ | {"ratio": r.ratio} for r in bench.rows],
                    "details": bench.details,
                    "targets": summary,
                },
                indent=2,
                default=str,
            )
        )
    failed = [r for r in bench.rows if r.verdict == "FAIL"]
    return 1 if failed and opts.strict else 0
