"""The probes (issue 15 §1, part): /healthz and /readyz, against the real parts."""

from __future__ import annotations

import socket
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
