"""A real Daphne process serving chatsite on a free loopback port, with its own SQLite file.

Used by the real-browser tests: the browser talks HTTP and websockets to a server started
exactly as `make run` starts it (migrate, bootstrap, daphne), not to a test double."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    log: Path

    def manage(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed argv, our own manage.py
            [PYTHON, str(ROOT / "manage.py"), *args], env=self.env, cwd=ROOT,
            capture_output=True, text=True, check=True, timeout=120,
        )
        return done.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)


@contextlib.contextmanager
def live_server(tmp: Path, extra_env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'live.sqlite3'}",
        "DEBUG": "1",
        "SECRET_KEY": "live-test-key",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **(extra_env or {}),
    }
    env.pop("REDIS_URL", None)
    server = LiveServer(f"http://127.0.0.1:{port}", env, tmp / "daphne.log")
    server.manage("migrate", "--noinput")
    server.manage("bootstrap")
    with open(server.log, "wb") as log:
        proc = subprocess.Popen(  # noqa: S603
            [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "chatsite.asgi:application"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), timeout=0.2):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not start: {server.log.read_text()[-2000:]}")
                time.sleep(0.1)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
