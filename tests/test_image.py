"""The container image's layout, run without a container engine (none can run on this machine,
and no image registry is reachable from it: docs/deploy.md). The final stage of the Dockerfile
is replayed on the disk: exactly the files it copies are put in a fresh `/app`-like folder, its
build-time `collectstatic` runs there, and its command (`honcho start --no-prefix web`, one
line of the Procfile) serves /healthz, the login page and a hashed static file. What the image
adds beyond this (the Python base, the dependencies' install) is not tested here."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.livesrv import ROOT, free_port

BIN = Path(sys.executable).parent


def final_stage(dockerfile: str) -> list[str]:
    """The instructions of the last stage, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    lines = [line.strip() for line in joined.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    start = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[start:]


def stage_env(stage: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in stage:
        if line.upper().startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def copy_app(stage: list[str], app: Path) -> list[str]:
    """Do the stage's `COPY` lines from the build context (not `--from=` ones) into `app`, with
    Docker's rules: a folder's contents go to the destination; into a folder destination
    (ending in "/", or with several sources) a file keeps its name."""
    copied = []
    for line in stage:
        if not line.upper().startswith("COPY ") or "--from=" in line:
            continue
        *sources, dest = [a for a in shlex.split(line[5:]) if not a.startswith("--")]
        into_folder = dest.endswith("/") or len(sources) > 1
        for source in sources:
            src, target = ROOT / source, app / dest
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target = target / src.name if into_folder else target
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
            copied.append(source)
    return copied


def test_it_declares_a_slim_non_root_image_with_a_health_check():
    stage = final_stage((ROOT / "Dockerfile").read_text())
    assert stage[0].startswith("FROM python:3.11-slim")
    user = [line for line in stage if line.upper().startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")
    health = [line for line in stage if line.upper().startswith("HEALTHCHECK ")]
    assert health and "/healthz" in health[0]
    assert stage[-1] == 'CMD ["honcho", "start", "--no-prefix", "web"]'


def test_it_runs_every_procfile_process_in_compose():
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                    if line.strip() and not line.startswith("#"))
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    started = {s["command"][-1] for s in services.values()
               if s.get("command", [None])[:2] == ["honcho", "start"]}
    assert started == set(procfile) == {"web", "worker"}
    # Two web processes behind nginx, sharing PostgreSQL and Redis, as docs/deploy.md says.
    webs = [name for name, s in services.items() if s.get("command", [])[-1:] == ["web"]]
    assert len(webs) == 2
    conf = (ROOT / "docs" / "nginx.conf").read_text()
    assert all(f"server {name}:8000;" in conf for name in webs)
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_buffering off;" in conf
    env = services[webs[0]]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")


@pytest.mark.process
def test_it_serves_from_exactly_what_the_image_copies(tmp_path: Path):
    stage = final_stage((ROOT / "Dockerfile").read_text())
    app = tmp_path / "app"
    app.mkdir()
    copied = copy_app(stage, app)
    assert {"manage.py", "Procfile", "chatsite", "conversations", "templates", "static",
            "locale"} <= set(copied)
    image_env = stage_env(stage)
    env = {
        # Nothing of this checkout or of the test run: only what the image sets, plus what a
        # container is given at run time (compose.yaml).
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        **{k: v for k, v in image_env.items() if k not in ("PATH", "MEDIA_ROOT")},
        "PYTHONPATH": str(app),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "SECRET_KEY": "image-test-" + "k" * 50,
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    build = [line for line in stage if line.upper().startswith("RUN ") and "collectstatic" in line]
    assert build, "the image collects its static files at build time"
    subprocess.run(["/bin/sh", "-c", build[0][4:]], cwd=app, env=env, check=True,  # noqa: S603
                   capture_output=True, timeout=120)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],  # noqa: S603
                   cwd=app, env=env, check=True, capture_output=True, timeout=120)
    log = (tmp_path / "web.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - the image's own command
        [str(BIN / "honcho"), "start", "--no-prefix", "web"], cwd=app, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail((tmp_path / "web.log").read_text()[-3000:])
                time.sleep(0.2)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        login = httpx.get(f"{base}/accounts/login/", timeout=5)
        assert login.status_code == 200 and 'name="password"' in login.text
        # The page links hashed static names (ManifestStaticFilesStorage), served by WhiteNoise.
        css = re.search(r'"(/static/css/app\.[0-9a-f]{12}\.css)"', login.text)
        assert css, re.findall(r'"(/static/[^"]+)"', login.text)
        assert httpx.get(base + css.group(1), timeout=5).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert "Traceback" not in (tmp_path / "web.log").read_text()
