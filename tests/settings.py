"""The test suite's settings: chatsite's own, plus a fixed SECRET_KEY.

The suite runs with DEBUG off, where chatsite refuses to start without SECRET_KEY
(chatsite.E001). pytest-django imports these settings before any conftest runs, so the key is
supplied here; subprocesses the tests start inherit it unless they set their own (the live
servers of tests/livesrv.py do, one key shared by every process)."""

from __future__ import annotations

import os
import tempfile

# Uploads (attachments) go to a folder of the run's own, never the project's media/; the live
# servers the tests start inherit it through the environment.
if not os.environ.get("MEDIA_ROOT"):
    os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="chatsite-test-media-")

if not os.environ.get("SECRET_KEY"):
    os.environ["SECRET_KEY"] = "tests-only-secret-key-8c1d5e0b2f7a4c3e9d6b1a0f5e2c7d4b9a8f3e6c"

from chatsite.settings import *  # noqa: E402, F403
