"""Child processes and what /proc says about them.

Every process the benchmark starts goes through `Children.start`, which (1) asks the kernel to
SIGTERM the child if the benchmark itself dies, even by SIGKILL (PR_SET_PDEATHSIG), and (2) pins
it to the requested CPUs. `Children.stop_all` (run in a `finally`) terminates the survivors, then
kills what ignores SIGTERM, so servers and the vendor never outlive a run, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PR_SET_PDEATHSIG = 1


def _child_setup(cpus: set[int] | None) -> Callable[[], None]:
    def setup() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[Any]
    log: Path | None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-chars:]


class Children:
    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log: Path | None,
        cpus: set[int] | None = None,
        pipe_io: bool = False,
    ) -> Child:
        out: IO[Any] | int
        if pipe_io:
            stdout: Any = subprocess.PIPE
            out = open(log, "ab") if log else subprocess.DEVNULL
        else:
            out = open(log, "ab") if log else subprocess.DEVNULL
            stdout = out
        proc = subprocess.Popen(  # noqa: S603 - argv built by the benchmark, no shell
            argv,
            env=env,
            cwd=cwd,
            stdout=stdout,
            stderr=out,
            stdin=subprocess.PIPE if pipe_io else subprocess.DEVNULL,
            text=pipe_io,
            bufsize=1 if pipe_io else -1,
            preexec_fn=_child_setup(cpus),
        )
        if not isinstance(out, int):
            out.close()  # the child holds its own descriptor
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 5.0) -> None:
        if child.alive():
            child.proc.terminate()
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(5)
        for stream in (child.proc.stdin, child.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        # Terminate all first, then wait: shutting down in parallel is faster than one by one.
        for child in self.children:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    child.proc.terminate()
        deadline = time.monotonic() + 8
        for child in list(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            if child.alive():
                child.proc.kill()
                child.proc.wait(5)
            self.stop(child)


def wait_port(port: int, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if not child.alive():
            raise RuntimeError(f"{child.name} exited at start:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} did not listen on {port}:\n{child.log_tail()}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# /proc --------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float:
    """utime + stime of the process (all its threads); optionally plus the CPU of children it
    has already reaped (how PostgreSQL's per-connection backends are accounted for)."""
    f = _stat_fields(pid)
    ticks = int(f[11]) + int(f[12])
    if with_reaped_children:
        ticks += int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def machine_busy_cpu() -> float:
    """CPU seconds every core spent on anything but idle and iowait, since boot (steal
    included: time the hypervisor gave to someone else is time this run did not get)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def total_cpu(pids: Iterable[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def total_rss(pids: Iterable[int]) -> int:
    return sum(rss_bytes(p) for p in pids)


def _processes() -> Iterable[tuple[int, str, int]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            f = _stat_fields(int(entry.name))
            comm = (entry / "comm").read_text().strip()
        except (OSError, ValueError):
            continue
        yield int(entry.name), comm, int(f[1])


@dataclass
class Services:
    """PostgreSQL and Redis run outside the benchmark; their CPU is reported, not charged to the
    server, so a design that moves work into the database or the layer still shows it."""

    postmaster: int | None
    redis: int | None

    @classmethod
    def find(cls) -> Services:
        procs = list(_processes())
        pg_pids = {pid for pid, comm, _ in procs if comm == "postgres"}
        postmaster = next(
            (pid for pid, comm, ppid in procs if comm == "postgres" and ppid not in pg_pids), None
        )
        # The machine's Redis (a daemon: its parent is init), not a private redis-server that a
        # test suite running meanwhile started and will stop mid-run.
        redises = sorted((ppid != 1, pid) for pid, comm, ppid in procs if comm == "redis-server")
        return cls(postmaster, redises[0][1] if redises else None)

    def postgres_cpu(self) -> float:
        if self.postmaster is None:
            return 0.0
        total = cpu_seconds(self.postmaster, with_reaped_children=True)
        for pid, _, ppid in _processes():
            if ppid == self.postmaster:
                with contextlib.suppress(OSError):
                    total += cpu_seconds(pid)
        return total

    def redis_cpu(self) -> float:
        return cpu_seconds(self.redis) if self.redis is not None else 0.0
