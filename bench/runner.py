"""The shared runner every scenario of `python -m bench` drives (bench/scenarios/).

`Runner.setup` creates the scratch database, starts the fake vendor and seeds the conversations
every scenario takes from (`Fixtures.take`); `Runner.servers` starts Daphne servers (chatsite, the
counting chatsite or the bare relay) for one measurement and stops them after it; `start_loadgen`
starts the browser side (bench.loadgen) and talks to it line by line (`LineReader`).
`Runner.cleanup` stops every child and drops the database, Ctrl-C and errors included.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis

from bench.procs import Child, Children, Services, free_port, machine_busy_cpu
from bench.procs import wait_port as wait_listening
from bench.profiles import summarize as summarize_profile
from bench.report import Row, log

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MIB = 1024 * 1024
# A throwaway key: it signs nothing but this run's scratch sessions.
SECRET_KEY = "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"  # noqa: S105
HOST = "127.0.0.1"

CHATSITE_APP = "chatsite.asgi:application"
COUNTING_APP = "bench.counting_asgi:application"
BARE_APP = "bench.bare_relay:application"

# (name, ASGI app, CPUs to pin it to or None, extra environment) of one server to start.
ServerSpec = tuple[str, str, set[int] | None, dict[str, str]]


@dataclass
class Options:
    scenarios: list[str]
    conversations_a: int
    conversations_b: int
    rate: int
    reply_deltas: int
    processes_b: int
    conversations_w: int
    rate_w: int
    reply_deltas_w: int
    conversations_s: int
    b_bare: bool
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


class Runner:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.children = Children()
        self.tmp = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
        self.services = Services.find()
        self.rows: list[Row] = []
        # The targets, by name, each with the row that measured it (run.py prints them
        # as the final summary, "not run" for a scenario left out).
        self.targets: dict[str, tuple[Row, str]] = {}
        self.details: dict[str, Any] = {}
        self.vendor: Child | None = None
        self.vendor_url = ""
        self._fixtures: Fixtures | None = None
        self.db_url = ""
        self.db_created = False
        self.all_cpus = os.sched_getaffinity(0)
        self.pinned = opts.pin and len(self.all_cpus) >= 2
        cpus = sorted(self.all_cpus)
        self.server_cpus = {cpus[0]} if self.pinned else None
        self.load_cpus = set(cpus[1:]) if self.pinned else None

    def target(self, name: str, row: Row, load: str) -> None:
        """`row` measured the target `name` at `load` (as run: options can change it)."""
        self.targets[name] = (row, load)

    @property
    def fixtures(self) -> Fixtures:
        if self._fixtures is None:
            raise RuntimeError("Runner.setup() has not seeded the fixtures yet")
        return self._fixtures

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
            o.conversations_a
            + o.conversations_b
            + 2 * o.c_concurrency
            + 20
            + o.idle_sockets
            + 1
            + o.conversations_s
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
        self._fixtures = Fixtures(**json.loads(out))

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

    # Servers and the load generator ----------------------------------------------------------

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
    def servers(self, *specs: ServerSpec) -> Iterator[list[tuple[Child, int]]]:
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

    def reply_spec(self, deltas: int, rate: int | None = None) -> str:
        return f"bench n={deltas} rate={rate or self.opts.rate} ts=1"

    def start_loadgen(
        self, label: str, config: dict[str, Any], *, cpus: set[int] | None
    ) -> tuple[Child, LineReader]:
        """The load generator for one measurement, reading `config` (see bench/loadgen.py); the
        caller stops it with `self.children.stop` when done."""
        config_path = self.tmp / f"{label}.load.json"
        config_path.write_text(json.dumps(config))
        load = self.children.start(
            f"loadgen-{label}",
            [PYTHON, "-m", "bench.loadgen", str(config_path)],
            env=self.env(),
            cwd=ROOT,
            log=self.tmp / f"loadgen-{label}.log",
            cpus=cpus,
            pipe_io=True,
        )
        return load, LineReader(load)

    # Readings --------------------------------------------------------------------------------

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
                            *(["--idle"] if os.environ.get("BENCH_PYSPY_IDLE") else []),
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


def ws_path(conversation_id: str) -> str:
    return f"/ws/conversations/{conversation_id}/"


def query_counts(port: int) -> dict[str, Any]:
    """The statements the counting server (bench/counting_asgi.py) has run so far."""
    response = httpx.get(f"http://{HOST}:{port}/__bench__/queries", timeout=30)
    response.raise_for_status()
    return response.json()


def count_log_problems(child: Child) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for line in child.log_tail(2_000_000).splitlines():
        for level in ("ERROR", "WARNING", "Traceback"):
            if level in line:
                counts[level] += 1
    return dict(counts)


def sleep_until_ns(ns: int) -> None:
    delay = (ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


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
