"""The test suite's settings: chatsite's own, plus a fixed SECRET_KEY.

The suite runs with DEBUG off, where chatsite refuses to start without SECRET_KEY
(chatsite.E001). pytest-django imports these settings before any conftest runs, so the key is
supplied here; subprocesses the tests start inherit it unless they set their own (the live
servers of tests/livesrv.py do, one key shared by every process)."""

from __future__ import annotations

import os

if not os.environ.get("SECRET_KEY"):
    os.environ["SECRET_KEY"] = "tests-only-secret-key-8c1d5e0b2f7a4c3e9d6b1a0f5e2c7d4b9a8f3e6c"

from chatsite.settings import *  # noqa: E402, F403
