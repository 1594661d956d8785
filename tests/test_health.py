"""The probes (issue 15 §1, part): /healthz and /readyz, against the real parts."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from django.test import Client

# Transactional: the probe reads the database from its own thread, as under Daphne.
pytestmark = pytest.mark.django_db(transaction=True)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_says_the_process_is_alive_without_a_login():
    answer = Client().get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert "no-cache" in answer["Cache-Control"]
    assert Client().post("/healthz").status_code == 405


def test_it_is_ready_when_every_part_answers(settings: Any):
    answer = Client().get("/readyz")
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert body["status"] == "ready" and body["failing"] == []
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["channel_layer"]["ok"] is True
    assert all(isinstance(c["ms"], float) for c in body["checks"].values())
    assert ("redis" in body["checks"]) == bool(settings.REDIS_URL)


def test_it_names_the_part_that_fails_with_503_and_no_traceback(settings: Any, caplog: Any):
    # Redis on a port where nothing listens: a real refused connection.
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    answer = Client().get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable" and body["failing"] == ["redis"]
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True
    assert "Traceback" not in caplog.text


@pytest.mark.scaleout
def test_it_turns_unready_when_redis_stops_and_ready_when_it_is_back(
        migrated: Any, database_url: str, tmp_path: Any):
    """A real Daphne process on PostgreSQL and a private redis-server, killed for real: the
    probe names Redis (and the layer that runs on it) while it is down, and recovers by itself."""
    import httpx

    from tests.cluster import SERVER_ENV, redis_server
    from tests.livesrv import cluster, free_port

    port = free_port()
    env = {**SERVER_ENV, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}

    def ready(base: str) -> httpx.Response:
        return httpx.get(f"{base}/readyz", timeout=10)

    with redis_server(port) as redis, cluster(tmp_path, database_url, 1, env) as (a,):
        up = ready(a.url)
        assert up.status_code == 200, up.text
        assert up.json()["checks"]["redis"]["ok"] is True
        redis.kill()
        redis.wait(timeout=10)
        down = ready(a.url)
        assert down.status_code == 503
        assert "redis" in down.json()["failing"]
        assert down.json()["checks"]["database"]["ok"] is True
        with redis_server(port):
            deadline = time.monotonic() + 20
            while (again := ready(a.url)).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert again.status_code == 200, again.text
        # The layer logs its first failure with a traceback by design (then a count per 30 s,
        # tests/test_layer_faults.py); nothing is an error, and no probe answered 500.
        log = a.log.read_text()
        assert " ERROR " not in log and '"GET /readyz" 500' not in log, log
