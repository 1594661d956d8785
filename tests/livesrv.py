"""Real Daphne processes serving chatsite on free loopback ports, as `make run` starts them
(migrate, bootstrap, daphne). Used by the real-browser tests (one process, its own SQLite file)
and the scale-out tests (several processes sharing PostgreSQL and Redis)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def manage(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed argv, our own manage.py
            [PYTHON, str(ROOT / "manage.py"), *args], env=self.env, cwd=ROOT,
            capture_output=True, text=True, check=False, timeout=120,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed: {done.stderr[-2000:]}")
        return done.stdout

    def shell(self, code: str) -> str:
        lines = self.manage("shell", "--no-imports", "-c", code).strip().splitlines()
        return lines[-1] if lines else ""

    def session_for(self, username: str) -> str:
        """A logged-in session key for `username` (created if missing)."""
        return self.shell(
            "from django.contrib.auth import get_user_model, BACKEND_SESSION_KEY, "
            "HASH_SESSION_KEY, SESSION_KEY\n"
            "from django.contrib.sessions.backends.db import SessionStore\n"
            f"u, _ = get_user_model().objects.get_or_create(username={username!r})\n"
            "s = SessionStore()\n"
            "s[SESSION_KEY] = str(u.pk)\n"
            "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
            "s[HASH_SESSION_KEY] = u.get_session_auth_hash()\n"
            "s.create()\n"
            "print(s.session_key)"
        )

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                 "chatsite.asgi:application"],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the process dies without any cleanup, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def server_env(database_url: str, port: int, extra_env: dict[str, str] | None = None
               ) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "1",
        # One key shared by every process of a cluster (a session signed by one is valid in
        # all), and chatsite's own settings rather than the suite's tests.settings.
        "SECRET_KEY": "live-test-key",
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **(extra_env or {}),
    }
    if "REDIS_URL" not in (extra_env or {}):
        env.pop("REDIS_URL", None)
    return env


@contextlib.contextmanager
def live_server(tmp: Path, extra_env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """One process on its own SQLite file, set up exactly as `make run` does."""
    port = free_port()
    env = server_env(f"sqlite:///{tmp / 'live.sqlite3'}", port, extra_env)
    server = LiveServer(f"http://127.0.0.1:{port}", env, tmp / "daphne.log")
    server.manage("migrate", "--noinput")
    server.manage("bootstrap")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def cluster(tmp: Path, database_url: str, count: int, extra_env: dict[str, str]
            ) -> Iterator[list[LiveServer]]:
    """`count` processes sharing one database and one channel layer (REDIS_URL in extra_env).
    The database must be migrated already."""
    servers = []
    for i in range(count):
        port = free_port()
        servers.append(LiveServer(f"http://127.0.0.1:{port}",
                                  server_env(database_url, port, extra_env),
                                  tmp / f"daphne-{i}.log"))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def django_setup_with(name: str, value: str) -> subprocess.CompletedProcess[str]:
    """`django.setup()` with chatsite's settings and one variable set: a bad value must stop
    the start with ImproperlyConfigured (tests of each setting's check)."""
    env = {**os.environ, name: value, "DJANGO_SETTINGS_MODULE": "chatsite.settings",
           "SECRET_KEY": "x" * 50}
    return subprocess.run(  # noqa: S603 - our own settings
        [PYTHON, "-c", "import django; django.setup()"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=False)
