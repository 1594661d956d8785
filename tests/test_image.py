"""The container image. First without an engine: the final stage of the Dockerfile replayed on
the disk (exactly the files it copies, its `collectstatic`, its command serving /healthz, the
login page and a hashed static file). Then for real (docs/deploy.md): the image built with
podman, migrated, two web containers and the worker on PostgreSQL + Redis, nginx in front with
docs/nginx.conf, and a user who logs in and streams a demo reply through nginx. No image
registry is reachable from the CI machine, so the image is built on a stand-in for
python:3.11-slim made from Debian bookworm (.ci/python-image, named by CHATSITE_PYTHON_IMAGE);
where no engine runs the test is skipped, unless CHATSITE_IMAGE_REQUIRED=1 (.ci/run) fails it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from websockets.asyncio.client import connect

from tests.cluster import recv_until
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
    dockerfile = (ROOT / "Dockerfile").read_text()
    stage = final_stage(dockerfile)
    # Docker Hub's image by default; a machine that cannot pull it passes a stand-in.
    assert "\nARG PYTHON_IMAGE=python:3.11-slim\n" in dockerfile
    assert stage[0] == "FROM ${PYTHON_IMAGE}"
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
    assert started == set(procfile) == {"web", "worker", "clock"}
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


# podman only: the test uses its `image exists` and `healthcheck run`, which docker lacks.
ENGINE = shutil.which("podman")
PYTHON_IMAGE = os.environ.get("CHATSITE_PYTHON_IMAGE", "python:3.11-slim")


def engine() -> str:
    """The container engine, or a skip (a failure where CI requires the image)."""
    problem = ""
    if ENGINE is None or shutil.which("nginx") is None:
        problem = "no podman or no nginx (.ci/run installs both)"
    else:
        probe = subprocess.run([ENGINE, "image", "exists", PYTHON_IMAGE],  # noqa: S603
                               capture_output=True, check=False, timeout=60)
        if probe.returncode:
            problem = f"base image {PYTHON_IMAGE} is not on this machine (.ci/python-image)"
    if problem:
        if os.environ.get("CHATSITE_IMAGE_REQUIRED") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    assert ENGINE
    return ENGINE


def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False,  # noqa: S603
                          timeout=timeout)
    assert done.returncode == 0, f"{argv[:3]} failed: {done.stdout[-1500:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture
def image() -> Iterator[str]:
    podman = engine()
    tag = f"localhost/chatsite:test-{uuid.uuid4().hex[:8]}"
    # --no-cache: every run installs the dependencies afresh, as a first build does. The docker
    # format keeps the HEALTHCHECK (OCI image configs have no field for it).
    run(podman, "build", "--no-cache", "--format", "docker", "--network", "host",
        "--build-arg", f"PYTHON_IMAGE={PYTHON_IMAGE}", "-t", tag, str(ROOT), timeout=900)
    try:
        yield tag
    finally:
        for argv in ([podman, "rmi", "-f", tag], [podman, "image", "prune", "-f"]):
            # The image, then the build stage it leaves untagged (~385 MB a run).
            subprocess.run(argv, capture_output=True, check=False, timeout=120)  # noqa: S603


def nginx_conf(tmp_path: Path, port: int, upstreams: list[int]) -> Path:
    """docs/nginx.conf as it is, its upstream addresses and listening port changed for loopback
    (the containers share the host's network here), inside a minimal main context."""
    conf = (ROOT / "docs" / "nginx.conf").read_text()
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in upstreams)
    conf = re.sub(r"(?m)^    server web\d+:8000;\n", "", conf)
    conf = conf.replace("upstream chatsite {\n", "upstream chatsite {\n" + servers, 1)
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    for folder in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / folder).mkdir()
    path = tmp_path / "nginx.conf"
    path.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
        "log_format smoke '$request $status $upstream_addr';\n"
        f"access_log {tmp_path}/access.log smoke;\nclient_body_temp_path {tmp_path}/client_body;\n"
        f"proxy_temp_path {tmp_path}/proxy;\nfastcgi_temp_path {tmp_path}/fastcgi;\n"
        f"uwsgi_temp_path {tmp_path}/uwsgi;\nscgi_temp_path {tmp_path}/scgi;\n{conf}\n}}\n")
    return path


def wait_healthy(podman: str, name: str, deadline: float) -> None:
    """The image's own HEALTHCHECK, run on demand (no systemd timers here to run it)."""
    while True:
        check = subprocess.run([podman, "healthcheck", "run", name],  # noqa: S603
                               capture_output=True, text=True, check=False, timeout=30)
        if check.returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = subprocess.run([podman, "logs", name], capture_output=True,  # noqa: S603
                                  text=True, check=False, timeout=30)
            pytest.fail(f"{name} never became healthy: {check.stdout}{check.stderr}"
                        f"{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        time.sleep(0.5)


@pytest.mark.scaleout
def test_it_builds_the_image_and_streams_a_demo_reply_through_nginx(
        image: str, database_url: str, shared_redis: str, tmp_path: Path):
    podman = engine()
    inspected = json.loads(run(podman, "image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "chatsite"
    assert "/healthz" in " ".join(inspected["Healthcheck"]["Test"])
    assert config["Cmd"] == ["honcho", "start", "--no-prefix", "web"]

    proxy_port, web_ports = free_port(), [free_port(), free_port()]
    site = f"http://127.0.0.1:{proxy_port}"
    env = {
        "SECRET_KEY": "image-smoke-" + "k" * 50,
        "DATABASE_URL": database_url,
        "REDIS_URL": shared_redis,
        "ALLOWED_HOSTS": "127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": site,
        "TRUSTED_PROXY_COUNT": "1",
        "HOST": "127.0.0.1",
    }
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    once = [podman, "run", "--rm", "--network", "host", *env_args, image]
    run(*once, "python", "manage.py", "migrate", "--noinput", "-v", "0")
    # `bootstrap` creates the first admin and prints its password once (docs/deploy.md).
    password = re.search(r"password: (\S+)", run(*once, "python", "manage.py", "bootstrap").stdout)
    assert password, "bootstrap printed no first admin password"
    # The clock's housekeeping, one round (the clock container runs it daily).
    housekeeping = run(*once, "python", "manage.py", "maintenance")
    assert [job in housekeeping.stderr for job in ("prune_audit", "prune_db_task_results",
                                                   "clearsessions")] == [True] * 3

    suffix = uuid.uuid4().hex[:6]
    names = [f"chatsite-web{i}-{suffix}" for i in (1, 2)] + [f"chatsite-worker-{suffix}"]
    nginx = None
    try:
        for name, port in zip(names, web_ports, strict=False):
            run(podman, "run", "-d", "--name", name, "--network", "host", *env_args,
                "-e", f"PORT={port}", image)
        run(podman, "run", "-d", "--name", names[2], "--network", "host", *env_args, image,
            "honcho", "start", "--no-prefix", "worker")
        deadline = time.monotonic() + 90
        for name in names[:2]:
            wait_healthy(podman, name, deadline)
        conf = nginx_conf(tmp_path, proxy_port, web_ports)
        nginx = subprocess.Popen(  # noqa: S603 - Debian's nginx, our own configuration
            [str(shutil.which("nginx")), "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"{site}/healthz", timeout=2).json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and nginx.poll() is None, (
                    (tmp_path / "error.log").read_text())
                time.sleep(0.2)

        with httpx.Client(base_url=site, timeout=10) as client:
            client.get("/accounts/login/").raise_for_status()
            login = client.post("/accounts/login/", data={
                "username": "admin", "password": password.group(1),
                "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                headers={"Referer": f"{site}/accounts/login/"})
            assert login.status_code == 302, login.text[-2000:]
            created = client.post("/conversations/new", data={
                "agent": "demo", "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                headers={"Referer": f"{site}/conversations/new"})
            assert created.status_code == 302, created.text[-2000:]
            conversation_id = created.headers["Location"].strip("/").split("/")[-1]
            cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
            frames = asyncio.run(stream_one_reply(proxy_port, conversation_id, cookie))
            stored = client.get(f"/api/v1/conversations/{conversation_id}").json()

        deltas = [f["delta"] for f in frames[0] if f["type"] == "message.delta"]
        done = frames[0][-1]["message"]
        assert len(deltas) > 1 and done["status"] == "completed"
        assert "".join(deltas) == done["content"] and done["content"]
        # The second tab, opened through nginx to the other process (round robin), saw the
        # whole reply over Redis too; what both saw is what was stored.
        assert frames[1][-1]["message"]["content"] == done["content"]
        reply = [m for m in stored["messages"] if m["role"] == "assistant"]
        assert [m["content"] for m in reply] == [done["content"]]
        upgrades = [line.split()[-1] for line in (tmp_path / "access.log").read_text().splitlines()
                    if line.startswith("GET /ws/") and " 101 " in line]
        assert sorted(upgrades) == sorted(f"127.0.0.1:{p}" for p in web_ports), upgrades
        state = json.loads(run(podman, "inspect", names[2]).stdout)[0]["State"]
        assert state["Running"], "the worker container stopped"
        for name in names[:2]:
            logs = run(podman, "logs", name)
            assert "Traceback" not in logs.stdout + logs.stderr
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=30)
        subprocess.run([podman, "rm", "-f", "-t", "5", *names],  # noqa: S603
                       capture_output=True, check=False, timeout=120)


async def stream_one_reply(port: int, conversation_id: str, cookie: str
                           ) -> list[list[dict[str, object]]]:
    """Two tabs of the conversation through nginx; the first sends, both read to the end."""
    url = f"ws://127.0.0.1:{port}/ws/conversations/{conversation_id}/"
    headers = {"Cookie": cookie}
    origin = f"http://127.0.0.1:{port}"
    async with connect(url, origin=origin, additional_headers=headers,  # type: ignore[arg-type]
                       open_timeout=10) as first, \
            connect(url, origin=origin, additional_headers=headers,  # type: ignore[arg-type]
                    open_timeout=10) as second:
        for ws in (first, second):
            await recv_until(ws, "conversation.sync")
        await first.send(json.dumps({"type": "message.send", "content": "hello from the image",
                                     "client_id": "smoke-1"}))
        return [await recv_until(ws, "message.completed", timeout=60)
                for ws in (first, second)]
