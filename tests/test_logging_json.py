"""LOG_FORMAT=json (issue 15, part 1): one JSON object per line with the request, user,
conversation and message ids where known, secrets redacted; the default text format unchanged.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client

from chatsite import logs
from tests.cluster import recv_until, socket_to
from tests.livesrv import live_server

SECRET = "sk-live-0123456789abcdefSECRET"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line that is a JSON object; a line that starts like one must parse whole."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def json_log() -> Any:
    """A logger whose handler formats with the JSONFormatter settings.LOGGING uses."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JSONFormatter())
    logger = logging.getLogger("chatsite.test_json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


async def test_it_writes_one_json_object_per_line_with_the_bound_ids(json_log: Any):
    logger, stream = json_log

    async def run() -> None:
        logs.bind(conversation_id="c-1", message_id="m-1", user_id=7)
        logger.info("reply ended: %s", "completed")

    await asyncio.create_task(run())  # a task of its own, as a reply is
    logger.warning("multi\nline %d", 2)  # outside that task: none of its ids
    first, second = json_lines(stream.getvalue())
    assert first["event"] == "reply ended: completed" and first["level"] == "info"
    assert first["logger"] == "chatsite.test_json"
    assert (first["conversation_id"], first["message_id"], first["user_id"]) == ("c-1", "m-1",
                                                                                "7")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", first["timestamp"])
    assert second["event"] == "multi\nline 2" and second["level"] == "warning"
    assert "conversation_id" not in second and "message_id" not in second
    assert len(stream.getvalue().splitlines()) == 2  # the newline stays inside the string


def test_it_renders_an_exception_as_a_string_with_secrets_redacted(
    json_log: Any, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    logger, stream = json_log
    try:
        raise RuntimeError(f"vendor refused Bearer {SECRET} and key={SECRET}")
    except RuntimeError:
        logger.exception("call failed with %s", SECRET)
    logs.bind(extra_field=f"bound {SECRET}")
    try:
        logger.error("bound context")
    finally:
        from structlog.contextvars import unbind_contextvars

        unbind_contextvars("extra_field")
    text = stream.getvalue()
    assert SECRET not in text
    failed, bound = json_lines(text)
    assert failed["event"] == "call failed with [redacted]"
    assert isinstance(failed["exc_info"], str)
    assert failed["exc_info"].startswith("Traceback") and "RuntimeError" in failed["exc_info"]
    assert "[redacted]" in failed["exc_info"]
    assert bound["extra_field"] == "bound [redacted]"


@pytest.mark.django_db
def test_it_gives_each_request_an_id_and_echoes_it():
    answer = Client().get("/healthz", HTTP_X_REQUEST_ID="lb-4f2a:77")
    assert answer["X-Request-ID"] == "lb-4f2a:77"
    made = Client().get("/healthz")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    for hostile in ("a b", "x" * 129, '{"json": 1}', "id\u00e9", "<script>", ""):
        replaced = Client().get("/healthz", HTTP_X_REQUEST_ID=hostile)["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", replaced), hostile


def test_it_keeps_the_text_format_by_default(settings: Any):
    assert settings.LOG_FORMAT == "text"
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "plain"
    assert settings.LOGGING["formatters"]["plain"]["format"] == (
        "%(asctime)s %(levelname)s %(name)s: %(message)s")


@pytest.mark.process
async def test_it_logs_json_with_ids_in_a_real_process(tmp_path: Path):
    """A real Daphne process with LOG_FORMAT=json: a request's lines carry its id, a reply's
    carry the conversation, message, user and socket request ids; a vendor token in the
    environment never appears."""
    with live_server(tmp_path, {"LOG_FORMAT": "json", "ACME_API_KEY": SECRET}) as server:
        session = server.session_for("jo")
        user_id = server.shell(
            "from django.contrib.auth import get_user_model\n"
            "print(get_user_model().objects.get(username='jo').pk)")
        conversation_id = server.shell(
            "from django.contrib.auth import get_user_model\n"
            "from conversations.models import Agent, Conversation\n"
            "a = Agent.objects.get(slug='demo'); a.options = {'delay': 0}; a.save()\n"
            "u = get_user_model().objects.get(username='jo')\n"
            "print(Conversation.objects.create(owner=u, agent=a).pk)")
        async with httpx.AsyncClient(base_url=server.url) as http:
            # A logged-in 404: Django's own "Not Found" line, after the view loaded the user.
            missing = await http.get(f"/c/{'0' * 8}-0000-0000-0000-{'0' * 12}/",
                                     headers={"X-Request-ID": "req-404-test",
                                              "Cookie": f"sessionid={session}"})
            assert missing.status_code == 404
            assert missing.headers["X-Request-ID"] == "req-404-test"
            # A message carrying the token, logged by Django (a 404's path is logged).
            assert (await http.get(f"/nope-{SECRET}")).status_code == 404
        ws = await socket_to(server, session, conversation_id)
        await recv_until(ws, "conversation.sync")
        await ws.send(json.dumps({"type": "message.send", "content": "log me"}))
        frames = await recv_until(ws, "message.completed")
        await ws.close()
        message_id = frames[-1]["message"]["id"]
        await asyncio.sleep(0.3)
    text = (tmp_path / "daphne.log").read_text()
    lines = json_lines(text)
    assert lines, text[-2000:]
    # Daphne's access log (its own lines on stdout, not log records) is not ours to format;
    # every log record is JSON, and redacted.
    assert SECRET not in "\n".join(line for line in text.splitlines() if line.startswith("{"))
    not_found = [x for x in lines if x.get("request_id") == "req-404-test"]
    assert not_found and not_found[0]["logger"] == "django.request"
    assert not_found[0]["user_id"] == user_id and not_found[0]["level"] == "warning"
    [reply] = [x for x in lines if x["event"].startswith("reply ended")]
    assert reply["message_id"] == message_id
    assert reply["conversation_id"] == conversation_id
    assert reply["user_id"] == user_id
    assert re.fullmatch(r"[0-9a-f]{32}", reply["request_id"])  # the socket's handshake
    assert reply["logger"] == "conversations.relay" and reply["level"] == "info"
    assert any("[redacted]" in x["event"] for x in lines)
