"""`make bench`: chatsite's relay against a minimal ASGI relay, under the same load, in one run.

    .venv/bin/python -m bench                 # every scenario, about 3 minutes on 2 cores
    .venv/bin/python -m bench --scenarios A,E --duration 10

Scenarios (docs/performance.md has the method and a real run's results):
  A  N conversations x 50 deltas/s, one viewer each, one Daphne process, in-memory layer:
     p99 latency and CPU per delta as a ratio to the bare relay (target <= 1.5x).
  B  two Daphne processes + Redis + PostgreSQL, a second viewer of every conversation on the
     other process: p99 latency <= 250 ms.
  C  database statements per reply <= 10, for replies of 50 and 500 deltas.
  D  10,000 conversations and a 2,000-message transcript: each page <= 200 ms.
  E  server memory per idle socket <= 100 KB, and a client that stops reading: is memory bounded?

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
import asyncio
import contextlib
import json
import math
import os
import platform
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis

from bench.procs import (
    Child,
    Children,
    Services,
    free_port,
    machine_busy_cpu,
    rss_bytes,
    total_cpu,
    total_rss,
)
from bench.procs import wait_port as wait_listening
from bench.profiles import summarize as summarize_profile
from bench.wsproto import blocking_connect, connect, encode_frame

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MIB = 1024 * 1024
# A throwaway key: it signs nothing but this run's scratch sessions.
SECRET_KEY = "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"  # noqa: S105
HOST = "127.0.0.1"

CHATSITE_APP = "chatsite.asgi:application"
COUNTING_APP = "bench.counting_asgi:application"
BARE_APP = "bench.bare_relay:application"


# Options ------------------------------------------------------------------------------------


@dataclass
class Options:
    scenarios: list[str]
    conversations_a: int
    conversations_b: int
    rate: int
    reply_deltas: int
    duration: float
    warmup: float
    ramp: float
    c_concurrency: int
    list_conversations: int
    transcript: int
    page_requests: int
    idle_sockets: int
    stall_seconds: float
    stall_rate: int
    pin: bool
    pg_url: str
    db_name: str
    redis_url: str
    keep_db: bool
    wait_quiet: float
    b_layer: str
    strict: bool
    profile_dir: Path | None
    json_out: Path | None


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--scenarios", default="A,B,C,D,E", help="comma-separated, default: all")
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
    p.add_argument("--c-concurrency", type=int, default=10, help="C: replies run at once")
    p.add_argument("--list-conversations", type=int, default=10_000)
    p.add_argument("--transcript", type=int, default=2_000)
    p.add_argument("--page-requests", type=int, default=7, help="D: timed requests per page")
    p.add_argument("--idle-sockets", type=int, default=1_000)
    p.add_argument("--stall-seconds", type=float, default=15.0)
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
    unknown = sorted(set(scenarios) - set("ABCDE"))
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    return Options(
        scenarios=scenarios,
        conversations_a=a.conversations_a,
        conversations_b=a.conversations_b,
        rate=a.rate,
        reply_deltas=a.reply_deltas,
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


# Results ------------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    figure: str
    chatsite: float | str | None
    bare: float | str | None = None
    target: str = ""
    verdict: str = ""  # PASS / FAIL / "" (informational)

    @property
    def ratio(self) -> float | None:
        if (
            isinstance(self.chatsite, int | float)
            and isinstance(self.bare, int | float)
            and self.bare
            and math.isfinite(self.chatsite)
            and math.isfinite(self.bare)
        ):
            return self.chatsite / self.bare
        return None


def _fmt(value: float | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if value == math.inf:
        return "∞ (undelivered)"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# The benchmark ------------------------------------------------------------------------------


@dataclass
class Fixtures:
    session: str
    conversations: list[str]
    list_session: str
    list_count: int
    transcript_id: str
    transcript_messages: int
    used: int = 0

    def take(self, n: int) -> list[str]:
        """Fresh conversations for each run: transcripts never carry over between runs, so every
        run's replies send the same (empty) history to the vendor."""
        if self.used + n > len(self.conversations):
            raise RuntimeError("not enough bench conversations seeded")
        ids = self.conversations[self.used : self.used + n]
        self.used += n
        return ids


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


class Bench:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.children = Children()
        self.tmp = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
        self.services = Services.find()
        self.rows: list[Row] = []
        self.details: dict[str, Any] = {}
        self.vendor: Child | None = None
        self.vendor_url = ""
        self.fixtures: Fixtures | None = None
        self.db_url = ""
        self.db_created = False
        self.all_cpus = os.sched_getaffinity(0)
        self.pinned = opts.pin and len(self.all_cpus) >= 2
        cpus = sorted(self.all_cpus)
        self.server_cpus = {cpus[0]} if self.pinned else None
        self.load_cpus = set(cpus[1:]) if self.pinned else None

    # Setup -----------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "LOG_LEVEL")
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "chatsite.settings",
                "DATABASE_URL": self.db_url,
                "DEBUG": "0",  # production settings: no debug SQL log, no static handler
                # Sessions are created for this key, so every server must share it.
                "SECRET_KEY": SECRET_KEY,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                # One benchmark user holds hundreds of sockets and replies: no per-user limits.
                "RATE_LIMIT_RUNS_PER_USER": "0",
                "RATE_LIMIT_SENDS_PER_MINUTE": "0",
                "RATE_LIMIT_WRITES_PER_MINUTE": "0",
                "RATE_LIMIT_SOCKETS_PER_USER": "0",
            }
        )
        env.update(extra)
        return env

    def setup(self) -> None:
        parts = urlsplit(self.opts.pg_url)
        self.db_url = urlunsplit(parts._replace(path=f"/{self.opts.db_name}"))
        log(f"creating database {self.opts.db_name} (logs in {self.tmp})")
        with psycopg.connect(self.opts.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.opts.db_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.opts.db_name}"')
        self.db_created = True
        self.manage("migrate", "--noinput")
        self.manage("bootstrap")

        port = free_port()
        self.vendor = self.children.start(
            "vendor",
            [PYTHON, "-m", "bench.vendor", "--port", str(port)],
            env=self.env(),
            cwd=ROOT,
            log=self.tmp / "vendor.log",
            cpus=self.load_cpus,
        )
        wait_listening(port, self.vendor)
        self.vendor_url = f"http://{HOST}:{port}/v1"

        o = self.opts
        # A, B, C (two rounds), E (warm-up batch, idle sockets, the stalled client).
        needed = (
            o.conversations_a + o.conversations_b + 2 * o.c_concurrency + 20 + o.idle_sockets + 1
        )
        log(
            f"seeding {needed} load conversations, {o.list_conversations} listed ones and a "
            f"{o.transcript}-message transcript"
        )
        out = self.python(
            "-m",
            "bench.djtools",
            "setup",
            "--vendor-url",
            self.vendor_url,
            "--conversations",
            str(needed),
            "--list-conversations",
            str(o.list_conversations),
            "--transcript",
            str(o.transcript),
        )
        self.fixtures = Fixtures(**json.loads(out))

    def python(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(  # noqa: S603 - fixed argv, our own modules
            [PYTHON, *args],
            env=env or self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def manage(self, *args: str) -> str:
        return self.python("manage.py", *args)

    def cleanup(self) -> None:
        self.children.stop_all()
        if self.db_created and not self.opts.keep_db:
            with (
                contextlib.suppress(Exception),
                psycopg.connect(self.opts.pg_url, autocommit=True) as conn,
            ):
                conn.execute(f'DROP DATABASE IF EXISTS "{self.opts.db_name}" WITH (FORCE)')
        if "B" in self.opts.scenarios:
            with contextlib.suppress(Exception):
                self.flush_redis()

    def flush_redis(self) -> None:
        client = redis.Redis.from_url(self.opts.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()

    # Servers ---------------------------------------------------------------------------------

    def start_server(
        self, name: str, app: str, *, cpus: set[int] | None, **env: str
    ) -> tuple[Child, int]:
        port = free_port()
        child = self.children.start(
            name,
            [PYTHON, "-m", "daphne", "-b", HOST, "-p", str(port), app],
            env=self.env(BENCH_VENDOR_URL=self.vendor_url, **env),
            cwd=ROOT,
            log=self.tmp / f"{name}.log",
            cpus=cpus,
        )
        wait_listening(port, child)
        return child, port

    @contextlib.contextmanager
    def servers(
        self, *specs: tuple[str, str, set[int] | None, dict[str, str]]
    ) -> Iterator[list[tuple[Child, int]]]:
        started: list[tuple[Child, int]] = []
        try:
            if any(app != BARE_APP for _, app, _, _ in specs):
                # A killed server leaves its replies `streaming`; reap them like a restart would.
                self.python("-m", "bench.djtools", "reap")
            for name, app, cpus, env in specs:
                started.append(self.start_server(name, app, cpus=cpus, **env))
            yield started
        finally:
            for child, _ in started:
                errors = count_log_problems(child)
                if errors:
                    self.details.setdefault("server_log_problems", {})[child.name] = errors
                self.children.stop(child)

    def cookie_headers(self, port: int, session: str) -> dict[str, str]:
        return {"Cookie": f"sessionid={session}", "Origin": f"http://{HOST}:{port}"}

    # Streaming runs (A, B) -------------------------------------------------------------------

    def stream_run(
        self,
        label: str,
        servers: list[Child],
        headers: dict[str, str],
        conversations: list[dict[str, Any]],
        reply: str,
        *,
        load_cpus: set[int] | None,
    ) -> StreamRun:
        o = self.opts
        config = {
            "mode": "stream",
            "host": HOST,
            "headers": headers,
            "conversations": conversations,
            "reply": reply,
            "ramp": o.ramp,
            "connect_concurrency": 50,
        }
        config_path = self.tmp / f"{label}.load.json"
        config_path.write_text(json.dumps(config))
        load = self.children.start(
            f"loadgen-{label}",
            [PYTHON, "-m", "bench.loadgen", str(config_path)],
            env=self.env(),
            cwd=ROOT,
            log=self.tmp / f"loadgen-{label}.log",
            cpus=load_cpus,
            pipe_io=True,
        )
        lines = LineReader(load)
        try:
            ready = lines.expect("READY", 180)
            log(
                f"{label}: {ready['connected']} sockets open in {ready['seconds']} s"
                + (f", {ready['failed']} FAILED" if ready["failed"] else "")
            )
            now = time.monotonic_ns()
            start = now + 300_000_000
            measure_start = start + int((o.ramp + o.warmup) * 1e9)
            measure_end = measure_start + int(o.duration * 1e9)
            # Replies in flight when the window closes are awaited (their late tokens are real
            # samples) for up to one reply's length plus 10 s; what is still missing then is
            # counted as undelivered.
            stop = measure_end + int((o.reply_deltas / o.rate + 10) * 1e9)
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
            before = self.cpu_snapshot(pids, load)
            redis_before = self.redis_calls()
            profilers = self.start_profilers(label, servers)
            peak = total_rss(pids)
            while time.monotonic_ns() < measure_end - 1_000_000_000:
                time.sleep(1.0)
                peak = max(peak, total_rss(pids))
            sleep_until_ns(measure_end)
            after = self.cpu_snapshot(pids, load)
            redis_after = self.redis_calls()
            rss = total_rss(pids)
            pg_connections = self.pg_connections()
            self.stop_profilers(label, profilers)
            result = lines.expect("RESULT", (stop - time.monotonic_ns()) / 1e9 + 60)
        finally:
            self.children.stop(load)
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
        self.details[label] = {
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
            f"{label}: p50 {_fmt(a['p50_ms'])} ms, p99 {_fmt(a['p99_ms'])} ms, "
            f"max {_fmt(a['max_ms'])} ms, {a['delivered_per_s']:.0f} deltas/s, "
            f"{a['undelivered']} undelivered, "
            f"server {run.server_cpu / seconds:.2f} cores, "
            f"{_fmt(run.cpu_per_1000)} CPU s/1k deltas, replies {result['replies']}, "
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

    def pg_connections(self) -> int:
        """Connections open to the bench database right now (every server and tool)."""
        with psycopg.connect(self.opts.pg_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.opts.db_name,)
            ).fetchone()
        return int(row[0]) if row else 0

    def redis_calls(self) -> dict[str, int]:
        """Redis commands served so far, by command (INFO commandstats): how many messages the
        channel layer really moved, whatever the relay meant to send."""
        with contextlib.suppress(Exception):
            client = redis.Redis.from_url(self.opts.redis_url, socket_timeout=2)
            try:
                stats = client.info("commandstats")
            finally:
                client.close()
            return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
        return {}

    def cpu_snapshot(self, server_pids: list[int], load: Child) -> dict[str, float]:
        assert self.vendor is not None
        snapshot = {
            "server": total_cpu(server_pids),
            "loadgen": total_cpu([load.pid]),
            "vendor": total_cpu([self.vendor.pid]),
            "postgres": self.services.postgres_cpu(),
            "redis": self.services.redis_cpu(),
        }
        # Whatever else the machine ran meanwhile (another test suite, a build): on 2 cores it
        # takes CPU from the servers and shows up as latency, so it is measured and reported.
        snapshot["foreign"] = machine_busy_cpu() - sum(snapshot.values())
        return snapshot

    def start_profilers(self, label: str, servers: list[Child]) -> list[tuple[Child, Path]]:
        """py-spy on each server until `stop_profilers`; --nonblocking samples without pausing
        the server, so its latency is barely touched, but py-spy's own CPU competes for the two
        cores: figures from a profiled run are not the benchmark's."""
        if self.opts.profile_dir is None:
            return []
        exe = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        self.opts.profile_dir.mkdir(parents=True, exist_ok=True)
        profilers = []
        for server in servers:
            out = self.opts.profile_dir / f"{label}-{server.name}.txt"
            profilers.append(
                (
                    self.children.start(
                        f"py-spy-{label}-{server.name}",
                        [
                            exe,
                            "record",
                            "--pid",
                            str(server.pid),
                            "--rate",
                            "100",
                            "--format",
                            "raw",
                            "--nonblocking",
                            "--threads",
                            "-o",
                            str(out),
                        ],
                        env=dict(os.environ),
                        cwd=ROOT,
                        log=self.tmp / f"py-spy-{server.name}.log",
                    ),
                    out,
                )
            )
        time.sleep(0.5)  # py-spy needs a moment to attach before the work to sample starts
        return profilers

    def stop_profilers(self, label: str, profilers: list[tuple[Child, Path]]) -> None:
        for profiler, _ in profilers:
            profiler.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for profiler, raw in profilers:
            with contextlib.suppress(Exception):
                profiler.proc.wait(30)
            self.children.stop(profiler)
            if raw.exists():
                summary = raw.with_name(raw.stem + "-summary.txt")
                summary.write_text(summarize_profile(raw))
                log(f"{label}: profile in {summary}")

    def reply_spec(self, deltas: int, rate: int | None = None) -> str:
        return f"bench n={deltas} rate={rate or self.opts.rate} ts=1"

    # A ---------------------------------------------------------------------------------------

    def scenario_a(self) -> None:
        assert self.fixtures is not None
        o = self.opts
        n = o.conversations_a
        log(f"A: {n} conversations x {o.rate} deltas/s, one viewer, one process: bare relay")
        reply = self.reply_spec(o.reply_deltas)
        with self.servers(("bare", BARE_APP, self.server_cpus, {})) as [(server, port)]:
            bare = self.stream_run(
                "A-bare",
                [server],
                {"Origin": f"http://{HOST}:{port}"},
                [{"owner": [port, "/ws/bare/"], "viewers": []} for _ in range(n)],
                reply,
                load_cpus=self.load_cpus,
            )
        log("A: same load through chatsite (in-memory layer, PostgreSQL)")
        ids = self.fixtures.take(n)
        with self.servers(("chatsite", CHATSITE_APP, self.server_cpus, {})) as [(server, port)]:
            chat = self.stream_run(
                "A-chatsite",
                [server],
                self.cookie_headers(port, self.fixtures.session),
                [{"owner": [port, ws_path(i)], "viewers": []} for i in ids],
                reply,
                load_cpus=self.load_cpus,
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
            row.verdict = verdict(row.ratio is not None and row.ratio <= 1.5)
        self.rows += [
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

    # B ---------------------------------------------------------------------------------------

    def scenario_b(self) -> None:
        assert self.fixtures is not None
        o = self.opts
        n = o.conversations_b
        log(
            f"B: {n} conversations x {o.rate} deltas/s on two processes + Redis "
            f"(channel layer: {o.b_layer or 'the settings default'}), second viewer on the "
            "other process"
        )
        self.flush_redis()
        ids = self.fixtures.take(n)
        layer = {"REDIS_URL": o.redis_url}
        if o.b_layer:
            layer["CHANNEL_LAYER"] = o.b_layer
        backend = (
            self.python(
                "-c",
                "import django; django.setup(); from django.conf import settings; "
                "print(settings.CHANNEL_LAYERS['default']['BACKEND'])",
                env=self.env(**layer),
            )
            .strip()
            .rpartition("\n")[2]
        )
        log(f"B: channel layer {backend}")
        if self.vendor is not None:
            os.sched_setaffinity(self.vendor.pid, self.all_cpus)
        try:
            with self.servers(
                ("chatsite-1", CHATSITE_APP, None, layer), ("chatsite-2", CHATSITE_APP, None, layer)
            ) as started:
                (s1, p1), (s2, p2) = started
                ports = [p1, p2]
                convs = [
                    {
                        "owner": [ports[k % 2], ws_path(cid)],
                        "viewers": [[ports[(k + 1) % 2], ws_path(cid)]],
                    }
                    for k, cid in enumerate(ids)
                ]
                # The load generator sends each socket its own server's Origin.
                headers = self.cookie_headers(p1, self.fixtures.session)
                run = self.stream_run(
                    "B-chatsite",
                    [s1, s2],
                    headers,
                    convs,
                    self.reply_spec(o.reply_deltas),
                    load_cpus=None,
                )
        finally:
            if self.vendor is not None and self.load_cpus:
                os.sched_setaffinity(self.vendor.pid, self.load_cpus)
        a, own, view = run.result["all"], run.result["owner"], run.result["viewer"]
        self.rows += [
            Row(
                "B",
                "channel layer",
                backend.rpartition(".")[2].removesuffix("ChannelLayer") or backend,
            ),
            Row("B", "p50 latency, ms (all viewers)", a["p50_ms"]),
            Row(
                "B",
                "p99 latency, ms (all viewers)",
                a["p99_ms"],
                None,
                "≤ 250 ms",
                verdict(a["p99_ms"] is not None and a["p99_ms"] <= 250),
            ),
            Row("B", "p99 latency, ms: owner socket (direct)", own["p99_ms"]),
            Row("B", "p99 latency, ms: second viewer (batched via Redis)", view["p99_ms"]),
            Row("B", "max latency, ms", a["max_ms"]),
            Row(
                "B",
                "message.send -> first delta, p50 / p99 ms",
                f"{_fmt(run.result['first_delta']['p50_ms'])} / "
                f"{_fmt(run.result['first_delta']['p99_ms'])}",
            ),
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
            Row("B", "server CPU s per 1,000 delivered deltas", run.cpu_per_1000),
            Row("B", "server CPU, cores busy (2 processes)", run.server_cpu / run.seconds),
            Row("B", "server RSS at end, MiB (2 processes)", run.server_rss / MIB),
            Row("B", "Redis CPU, cores busy", run.other_cpu["redis"]),
            Row(
                "B",
                f"Redis PUBLISH/s (the relay's design: {n} runs x 20 batches/s = {20 * n:,}/s)",
                run.redis_per_s.get("publish", 0.0),
            ),
            Row("B", "Redis commands/s, all", sum(run.redis_per_s.values())),
            Row("B", "PostgreSQL CPU, cores busy", run.other_cpu["postgres"]),
            Row(
                "B",
                "load generator + vendor CPU, cores busy (not server)",
                run.other_cpu["loadgen"] + run.other_cpu["vendor"],
            ),
            Row(
                "B",
                "other processes on the machine, cores busy (noise)",
                run.other_cpu["foreign"],
                None,
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
                sum(v for k, v in run.result["replies"].items() if k != "message.completed"),
                None,
                "0 (unfinished at the end excepted)",
            ),
        ]

    # C ---------------------------------------------------------------------------------------

    def scenario_c(self) -> None:
        assert self.fixtures is not None
        o = self.opts
        log(
            f"C: database statements per reply ({o.c_concurrency} replies at once, "
            f"{o.rate} deltas/s)"
        )
        with self.servers(("chatsite-counting", COUNTING_APP, self.server_cpus, {})) as [(_, port)]:
            for deltas in (50, 500):
                ids = self.fixtures.take(o.c_concurrency)
                counts, outcomes = asyncio.run(self.count_replies(port, ids, deltas))
                replies = outcomes.get("message.completed", 0)
                statements = sum(counts["statements"].values())
                per_reply = statements / replies if replies else None
                self.details[f"C-{deltas}"] = {"outcomes": dict(outcomes), **counts}

                def share(prefix: str, counts: dict[str, Any] = counts, n: int = replies) -> float:
                    total = sum(v for k, v in counts["statements"].items() if prefix in k)
                    return total / n if n else 0.0

                log(
                    f"C: {deltas}-delta replies: {_fmt(per_reply)} statements and "
                    f"{counts['connections'] / max(1, replies):.1f} new connections per reply; "
                    f"{breakdown(counts['statements'], replies)}"
                )
                self.rows += [
                    Row(
                        "C",
                        f"DB statements per reply, {deltas} deltas "
                        f"({deltas / o.rate:.0f} s stream)",
                        per_reply,
                        None,
                        "≤ 10",
                        verdict(per_reply is not None and per_reply <= 10),
                    ),
                    Row(
                        "C",
                        "  of which: health-check SELECT 1 / periodic flush UPDATE / other",
                        f"{_fmt(share('health_check'))} / {_fmt(share('flush_run'))} / "
                        f"{_fmt((per_reply or 0) - share('health_check') - share('flush_run'))}",
                    ),
                    Row(
                        "C",
                        f"DB connections opened per reply, {deltas} deltas",
                        counts["connections"] / replies if replies else None,
                    ),
                ]

    async def count_replies(
        self, port: int, ids: list[str], deltas: int
    ) -> tuple[dict[str, Any], Counter[str]]:
        assert self.fixtures is not None
        headers = self.cookie_headers(port, self.fixtures.session)
        loop = asyncio.get_running_loop()
        synced = [loop.create_future() for _ in ids]
        done = [loop.create_future() for _ in ids]

        def on_text(k: int) -> Callable[[bytes, int], None]:
            def handle(payload: bytes, now: int) -> None:
                kind = json.loads(payload).get("type")
                if kind == "conversation.sync" and not synced[k].done():
                    synced[k].set_result(None)
                elif (
                    kind in ("message.completed", "message.failed", "message.canceled", "error")
                    and not done[k].done()
                ):
                    done[k].set_result(kind)

            return handle

        sockets = [
            await connect(HOST, port, ws_path(cid), headers, on_text(k))
            for k, cid in enumerate(ids)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*synced), 60)
            await asyncio.sleep(0.5)  # let the connects' own queries finish before counting
            before = await asyncio.to_thread(query_counts, port)
            frame = json.dumps({"type": "message.send", "content": self.reply_spec(deltas)})
            for sock in sockets:
                sock.send_text(frame)
            outcomes = Counter(
                await asyncio.wait_for(asyncio.gather(*done), deltas / self.opts.rate + 60)
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

    # D ---------------------------------------------------------------------------------------

    def scenario_d(self) -> None:
        assert self.fixtures is not None
        f = self.fixtures
        log(
            f"D: page times with {f.list_count:,} conversations and a "
            f"{f.transcript_messages:,}-message transcript"
        )
        pages = [
            ("HTML list page /", "/"),
            ("GET /api/v1/conversations", "/api/v1/conversations"),
            (f"chat page /c/<id>/ ({f.transcript_messages:,} messages)", f"/c/{f.transcript_id}/"),
            (
                f"GET /api/v1/conversations/<id> ({f.transcript_messages:,} messages)",
                f"/api/v1/conversations/{f.transcript_id}",
            ),
        ]
        with self.servers(("chatsite-pages", COUNTING_APP, self.server_cpus, {})) as [
            (server, port)
        ]:
            base = f"http://{HOST}:{port}"
            with httpx.Client(
                base_url=base, cookies={"sessionid": f.list_session}, timeout=60
            ) as client:
                for k, (name, path) in enumerate(pages):
                    client.get(path)  # warm: template compilation, first connection
                    profilers = self.start_profilers(f"D{k + 1}", [server])
                    before = query_counts(port)
                    times, size, status = [], 0, 0
                    for _ in range(self.opts.page_requests):
                        began = time.perf_counter()
                        response = client.get(path)
                        times.append((time.perf_counter() - began) * 1000)
                        size, status = len(response.content), response.status_code
                    after = query_counts(port)
                    self.stop_profilers(f"D{k + 1}", profilers)
                    per_request = (
                        sum(after["statements"].values()) - sum(before["statements"].values())
                    ) / len(times)
                    connects = (after["connections"] - before["connections"]) / len(times)
                    med = statistics.median(times)
                    ok = status == 200 and med <= 200 and max(times) <= 200
                    log(
                        f"D: {name}: median {med:.0f} ms, max {max(times):.0f} ms, "
                        f"{size / 1024:.0f} KiB, HTTP {status}, {per_request:.0f} statements, "
                        f"{connects:.1f} new DB connections per request"
                    )
                    self.details[f"D {name}"] = {
                        "ms": times,
                        "bytes": size,
                        "status": status,
                        "statements_per_request": per_request,
                        "connections_per_request": connects,
                    }
                    self.rows.append(
                        Row(
                            "D",
                            f"{name}: median / max ms; statements, new DB connections",
                            f"{med:.0f} / {max(times):.0f} ms; "
                            f"{per_request:.0f} q, {connects:.0f} conn"
                            + ("" if status == 200 else f" (HTTP {status})"),
                            None,
                            "≤ 200 ms",
                            verdict(ok),
                        )
                    )
                requests = len(pages) * (self.opts.page_requests + 1)
                time.sleep(0.5)
                self.rows.append(
                    Row(
                        "D",
                        f"PostgreSQL connections left open after {requests} page requests",
                        self.pg_connections(),
                    )
                )

    # E ---------------------------------------------------------------------------------------

    def scenario_e(self) -> None:
        assert self.fixtures is not None
        o = self.opts
        log(f"E: memory per idle socket ({o.idle_sockets} sockets)")
        results: dict[str, float] = {}
        ids = self.fixtures.take(o.idle_sockets + 20)
        for label, app in (("bare", BARE_APP), ("chatsite", CHATSITE_APP)):
            with self.servers((f"{label}-idle", app, self.server_cpus, {})) as [(server, port)]:
                if label == "bare":
                    paths = ["/ws/bare/"] * (o.idle_sockets + 20)
                    headers = {"Origin": f"http://{HOST}:{port}"}
                else:
                    paths = [ws_path(i) for i in ids]
                    headers = self.cookie_headers(port, self.fixtures.session)
                # A first small batch loads whatever is imported or cached lazily, so the
                # measured delta is the sockets' own memory.
                self.idle_sockets(f"E-{label}-warm", server, headers, port, paths[:20])
                results[label] = self.idle_sockets(f"E-{label}", server, headers, port, paths[20:])
        per_socket = results["chatsite"]
        self.rows.append(
            Row(
                "E",
                "server memory per idle socket, KB",
                per_socket,
                results["bare"],
                "≤ 100 KB",
                verdict(per_socket <= 100),
            )
        )

        log(f"E: a client that stops reading, {o.stall_rate} deltas/s for {o.stall_seconds:.0f} s")
        stalls: dict[str, dict[str, Any]] = {}
        n = int(o.stall_rate * o.stall_seconds)
        spec = f"n={n} rate={o.stall_rate} ts=0 chars=1"
        stall_id = self.fixtures.take(1)[0]
        for label, app in (("bare", BARE_APP), ("chatsite", CHATSITE_APP)):
            with self.servers((f"{label}-stall", app, self.server_cpus, {})) as [(server, port)]:
                stalls[label] = self.stalled_client(label, server, port, spec, stall_id)
        chat, bare = stalls["chatsite"], stalls["bare"]
        self.details["E-stall"] = stalls

        def is_bounded(r: dict[str, Any]) -> bool:
            # A bound shows as growth that stops: unbounded, RSS climbs for as long as the
            # stream lasts (~0.5 MiB/s here), so the second half alone adds several MiB.
            return bool(r["second_half_mib"] <= 2.0)

        frame = json.dumps(
            {"type": "message.delta", "message_id": stall_id, "offset": n, "delta": "x"},
            ensure_ascii=False,
        )
        offered = n * (len(frame) + 2) / MIB
        self.rows += [
            Row(
                "E",
                f"non-reading client: server RSS growth over {o.stall_seconds:.0f} s "
                f"({n:,} frames ≈ {offered:.1f} MiB sent to it), MiB",
                chat["growth_mib"],
                bare["growth_mib"],
            ),
            Row(
                "E",
                "  RSS growth in the second half, MiB (stops when bounded)",
                chat["second_half_mib"],
                bare["second_half_mib"],
                "≤ 2 MiB",
                verdict(is_bounded(chat)),
            ),
            Row(
                "E",
                "  data held for the client when it resumed reading, MiB",
                chat["queued_mib"],
                bare["queued_mib"],
            ),
            Row(
                "E",
                "  server closed the stalled socket",
                "yes" if chat["closed_by_server"] else "no",
                "yes" if bare["closed_by_server"] else "no",
            ),
            Row(
                "E",
                "  memory bounded",
                "yes" if is_bounded(chat) else "NO (unbounded)",
                "yes" if is_bounded(bare) else "NO (unbounded)",
            ),
        ]

    def idle_sockets(
        self, label: str, server: Child, headers: dict[str, str], port: int, paths: list[str]
    ) -> float:
        config = {
            "mode": "idle",
            "host": HOST,
            "headers": headers,
            "sockets": [[port, p] for p in paths],
            "connect_concurrency": 20,
        }
        config_path = self.tmp / f"{label}.load.json"
        config_path.write_text(json.dumps(config))
        time.sleep(1.0)
        before = rss_bytes(server.pid)
        load = self.children.start(
            f"loadgen-{label}",
            [PYTHON, "-m", "bench.loadgen", str(config_path)],
            env=self.env(),
            cwd=ROOT,
            log=self.tmp / f"loadgen-{label}.log",
            cpus=self.load_cpus,
            pipe_io=True,
        )
        lines = LineReader(load)
        try:
            ready = lines.expect("READY", 300)
            time.sleep(2.0)  # let the connects' last work settle
            after = rss_bytes(server.pid)
            lines.send({"close": True})
            lines.expect("RESULT", 60)
        finally:
            self.children.stop(load)
        connected = max(1, ready["connected"])
        per_socket = (after - before) / connected / 1000
        if len(paths) > 20:
            log(
                f"{label}: {ready['connected']} sockets in {ready['seconds']} s "
                f"({ready['failed']} failed): RSS {before / MIB:.1f} -> {after / MIB:.1f} MiB, "
                f"{per_socket:.1f} KB per socket"
            )
            self.details[label] = {
                **ready,
                "rss_before_mib": before / MIB,
                "rss_after_mib": after / MIB,
                "kb_per_socket": per_socket,
            }
        return per_socket

    def stalled_client(
        self, label: str, server: Child, port: int, spec: str, conversation_id: str
    ) -> dict[str, Any]:
        assert self.fixtures is not None
        o = self.opts
        if label == "bare":
            path = f"/ws/bare/{spec.replace(' ', ',')}/"
            headers = {"Origin": f"http://{HOST}:{port}"}
        else:
            path = ws_path(conversation_id)
            headers = self.cookie_headers(port, self.fixtures.session)
        time.sleep(1.0)
        base = rss_bytes(server.pid)
        # 4 KiB (Linux doubles it): the TCP window stays tiny, so the server's kernel buffers
        # fill in a moment and everything after that piles up in the server process.
        sock = blocking_connect(HOST, port, path, headers, rcvbuf=4096)
        try:
            if label == "chatsite":
                frame = json.dumps({"type": "message.send", "content": f"bench {spec}"})
                sock.sendall(encode_frame(0x1, frame.encode()))
            samples = []
            began = time.monotonic()
            while time.monotonic() - began < o.stall_seconds:
                time.sleep(1.0)
                samples.append(rss_bytes(server.pid))
            # Now read: what arrives is what the server (and both kernels) held for this
            # client; an end of stream means the server gave up on it (a bound at work).
            queued, closed = drain(sock, seconds=5.0)
        finally:
            sock.close()
        time.sleep(1.0)
        released = rss_bytes(server.pid)
        half = samples[len(samples) // 2 - 1] if len(samples) >= 2 else base
        result = {
            "rss_base_mib": base / MIB,
            "samples_mib": [round(s / MIB, 1) for s in samples],
            "growth_mib": (samples[-1] - base) / MIB,
            "second_half_mib": (samples[-1] - half) / MIB,
            "after_close_mib": released / MIB,
            "queued_mib": queued / MIB,
            "closed_by_server": closed,
        }
        log(
            f"E-{label}-stall: RSS {base / MIB:.0f} MiB -> {samples[-1] / MIB:.0f} MiB "
            f"({result['growth_mib']:+.1f}, second half {result['second_half_mib']:+.1f}); "
            f"{queued / MIB:.1f} MiB was waiting for the client; server closed it: {closed}"
        )
        return result

    # Report ----------------------------------------------------------------------------------

    def report(self) -> str:
        header = ("scenario", "figure", "chatsite", "bare", "ratio", "target", "result")
        body = [
            (
                r.scenario,
                r.figure,
                _fmt(r.chatsite),
                _fmt(r.bare),
                f"{r.ratio:.2f}x" if r.ratio is not None else "—",
                r.target or "—",
                r.verdict or "—",
            )
            for r in self.rows
        ]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
        lines = [
            " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
            for row in (header, *body)
        ]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        table = "\n".join(lines)
        markdown = "\n".join(
            ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
        )
        return table + "\n\nMarkdown:\n\n" + markdown


def ws_path(conversation_id: str) -> str:
    return f"/ws/conversations/{conversation_id}/"


def query_counts(port: int) -> dict[str, Any]:
    response = httpx.get(f"http://{HOST}:{port}/__bench__/queries", timeout=30)
    response.raise_for_status()
    return response.json()


def breakdown(statements: dict[str, int], replies: int) -> str:
    if not replies:
        return "no completed reply"
    top = sorted(statements.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v / replies:.1f}" for k, v in top)


def count_log_problems(child: Child) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for line in child.log_tail(2_000_000).splitlines():
        for level in ("ERROR", "WARNING", "Traceback"):
            if level in line:
                counts[level] += 1
    return dict(counts)


def drain(sock: Any, seconds: float) -> tuple[int, bool]:
    """Read everything the server sends for `seconds`; (bytes read, whether it closed)."""
    sock.settimeout(0.5)
    received = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError:
            return received, True  # reset by the server
        if not data:
            return received, True
        received += len(data)
    return received, False


def sleep_until_ns(ns: int) -> None:
    delay = (ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


class LineReader:
    """The load generator's stdout, read by a thread so waits can time out."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.child.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for line in self.child.proc.stdout:
                self.lines.put(line)
        self.lines.put(None)

    def expect(self, tag: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"{self.child.name}: no {tag} within {timeout:.0f} s:\n{self.child.log_tail()}"
                ) from None
            if line is None:
                raise RuntimeError(
                    f"{self.child.name} exited before {tag}:\n{self.child.log_tail()}"
                )
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1 :])

    def send(self, data: dict[str, Any]) -> None:
        assert self.child.proc.stdin is not None
        self.child.proc.stdin.write(json.dumps(data) + "\n")
        self.child.proc.stdin.flush()


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in (
        "django",
        "channels",
        "channels-redis",
        "daphne",
        "twisted",
        "httpx",
        "httpx-sse",
        "psycopg",
        "redis",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
        **versions,
    }


def wait_for_quiet(limit: float) -> None:
    """Warn (and with --wait-quiet, wait) while other processes keep the CPUs busy."""
    deadline = time.monotonic() + limit
    while True:
        before = machine_busy_cpu()
        time.sleep(2.0)
        busy = (machine_busy_cpu() - before) / 2.0
        if busy < 0.15:
            log(f"machine is quiet ({busy:.2f} cores busy before the run)")
            return
        if time.monotonic() >= deadline:
            log(
                f"WARNING {busy:.2f} cores are busy with other processes: every figure will "
                "be disturbed (use --wait-quiet SECONDS to wait for an idle machine)"
            )
            return
        log(f"waiting for the machine to be quiet ({busy:.2f} cores busy)")
        time.sleep(3.0)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the `finally` below stops every child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(opts)
    info = machine()
    log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    log(f"command: {' '.join([Path(PYTHON).name, '-m', 'bench', *(argv or sys.argv[1:])])}")
    began = time.monotonic()
    try:
        wait_for_quiet(opts.wait_quiet)
        bench.setup()
        for name in opts.scenarios:
            getattr(bench, f"scenario_{name.lower()}")()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.cleanup()
    problems = bench.details.get("server_log_problems")
    if problems:
        log(f"server logs had problems (see {bench.tmp}): {problems}")
    print()
    print(bench.report())
    print(f"\nTotal {time.monotonic() - began:.0f} s; logs in {bench.tmp}")
    if opts.json_out is not None:
        opts.json_out.write_text(
            json.dumps(
                {
                    "machine": info,
                    "rows": [r.__dict__ | {"ratio": r.ratio} for r in bench.rows],
                    "details": bench.details,
                },
                indent=2,
                default=str,
            )
        )
    failed = [r for r in bench.rows if r.verdict == "FAIL"]
    return 1 if failed and opts.strict else 0
