"""Signed outbound webhooks (docs/webhooks.md) against a real HTTP receiver on loopback: every
event from the real services, retries with backoff, hostile receivers, the admin, the command,
the secret at rest, and the real worker process delivering a demo agent's reply."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.events import ErrorCode
from conversations.models import (
    Conversation,
    Message,
    ScoreConfig,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from conversations.services import desk, review, runs, scoring, webhooks
from conversations.services.feedback import set_feedback
from tests.livesrv import PYTHON, ROOT, live_server

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-test-0123456789abcdef"
BASE = 0.3  # WEBHOOK_RETRY_BASE_SECONDS in these tests: retries after 0.3, 0.6, 1.2 s


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """A real HTTP server on loopback. Each request takes the next behaviour of `plan` (then
    200): an int status, "drop" (close without answering), ("sleep", s), "huge", "binary",
    "redirect"."""

    def __init__(self) -> None:
        self.plan: list[Any] = []
        self.received: list[Received] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append(Received(dict(self.headers), body, time.monotonic()))
                step = outer.plan.pop(0) if outer.plan else 200
                if step == "drop":
                    return  # no answer: the connection closes (HTTP/1.0)
                if isinstance(step, tuple) and step[0] == "sleep":
                    time.sleep(step[1])
                    step = 200
                if step == "redirect":
                    self.send_response(302)
                    self.send_header("Location", f"{outer.url}/elsewhere")
                    self.end_headers()
                    return
                if step == "huge":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for _ in range(5 * 1024):  # 5 MB
                            self.wfile.write(b"x" * 1024)
                    except OSError:
                        pass  # the client stopped reading, as it should
                    return
                if step == "binary":
                    payload = b"\xff\xfe\x00\x81not utf-8\x00" * 10
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(int(step))
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if int(step) < 300 else b"receiver error")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def events(self) -> list[str]:
        return [r.headers["X-Chatsite-Event"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(autouse=True)
def _webhook_settings(settings: Any) -> Iterator[None]:
    settings.WEBHOOK_RETRY_BASE_SECONDS = BASE
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    webhooks.forget_subscribers()
    yield
    webhooks.forget_subscribers()


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, as docs/webhooks.md shows it."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - timestamp) < tolerance


def run_worker() -> None:
    """django-tasks' own worker, in this process, until no task is due."""
    call_command("db_worker", "--batch", "--no-startup-delay", "--interval", "0", "--no-reload",
                 stdout=io.StringIO(), stderr=io.StringIO())


def drain(done: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "deliveries did not finish in time"
        run_worker()
        time.sleep(0.05)


def all_finished() -> bool:
    return not WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING).exists()


def endpoint(receiver: Receiver, *events: str) -> WebhookEndpoint:
    return webhooks.create_endpoint(receiver.url + "/hook", SECRET, list(events or webhooks.EVENTS))


def streaming_reply(conversation: Conversation, seq: int) -> Message:
    return Message.objects.create(conversation=conversation, seq=seq, role=Message.Role.ASSISTANT,
                                  status=Message.Status.STREAMING)


def test_it_sends_every_event_signed_from_the_real_services(
        receiver: Receiver, conversation: Conversation, alice: Any, staff: Any) -> None:
    endpoint(receiver)
    usage = {"input_tokens": 12, "output_tokens": 34}
    done = streaming_reply(conversation, 1)
    runs.finish_run(done.pk, conversation.pk, runs.RunOutcome(
        status=Message.Status.COMPLETED, content="hello", usage=usage))
    failed = streaming_reply(conversation, 2)
    runs.finish_run(failed.pk, conversation.pk, runs.RunOutcome(
        status=Message.Status.FAILED, content="", error_code=ErrorCode.VENDOR_UNAVAILABLE))
    reaped = streaming_reply(conversation, 3)
    runs.reap_orphaned_runs(all_streaming=True)
    set_feedback(alice, done.pk, 1, "spot on")
    set_feedback(alice, done.pk, -1, "changed my mind")  # a change: no second event
    desk.assign(conversation.pk, alice, alice)
    flagged = Conversation.objects.filter(pk=conversation.pk)
    review.set_review_status(flagged, Conversation.ReviewStatus.FLAGGED, staff)
    review.set_review_status(flagged, Conversation.ReviewStatus.FLAGGED, staff)  # not newly
    config = ScoreConfig.objects.create(name="Accuracy", kind="numeric", min_value=1,
                                        max_value=5)
    scoring.set_score(staff, config=config, value=4, comment="good", message=done)
    scoring.set_score(staff, config=config, value=5, message=done)  # a change: no event

    drain(all_finished)

    assert receiver.events() == ["reply.completed", "reply.failed", "reply.failed",
                                 "feedback.created", "conversation.assigned",
                                 "conversation.flagged", "score.created"]
    for r in receiver.received:
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["User-Agent"] == "chatsite-webhooks/1"
        assert verify(SECRET, r.headers["X-Chatsite-Signature"], r.body)
        assert not verify("another-secret-0123456789", r.headers["X-Chatsite-Signature"], r.body)
        assert r.headers["X-Chatsite-Delivery"] == r.json["id"]
        assert r.json["event"] == r.headers["X-Chatsite-Event"]
        assert WebhookDelivery.objects.get(pk=r.json["id"]).status == "succeeded"
    data = [r.json["data"] for r in receiver.received]
    conv = str(conversation.pk)
    assert {k: data[0][k] for k in ("conversation_id", "message_id", "agent", "status",
                                    "error_code", "usage", "team", "owner_id")} == {
        "conversation_id": conv, "message_id": str(done.pk), "agent": "demo",
        "status": "completed", "error_code": None, "usage": usage, "team": None,
        "owner_id": alice.pk}
    assert (data[1]["message_id"], data[1]["status"], data[1]["error_code"]) == (
        str(failed.pk), "failed", "vendor_unavailable")
    assert (data[2]["message_id"], data[2]["error_code"]) == (str(reaped.pk), "server_restart")
    assert data[3] == {"feedback_id": done.feedback.pk, "conversation_id": conv,
                       "message_id": str(done.pk), "agent": "demo", "score": 1,
                       "comment": "spot on", "author": {"id": alice.pk, "username": "alice"}}
    assert data[4] == {"conversation_id": conv, "team": None,
                       "assignee": {"id": alice.pk, "username": "alice"},
                       "actor": {"id": alice.pk, "username": "alice"}}
    assert data[5] == {"conversation_id": conv,
                       "reviewer": {"id": staff.pk, "username": "root"}}
    score_id = data[6].pop("score_id")
    assert score_id > 0
    assert data[6] == {"config": {"id": config.pk, "name": "Accuracy", "kind": "numeric"},
                       "value": 4.0, "comment": "good", "source": "human",
                       "conversation_id": conv, "message_id": str(done.pk),
                       "author": {"id": staff.pk, "username": "root"}}


def test_it_retries_with_backoff_and_delivers_once(
        receiver: Receiver, conversation: Conversation, alice: Any) -> None:
    endpoint(receiver, "conversation.assigned")
    receiver.plan = [500, "drop"]  # then 200

    desk.assign(conversation.pk, alice, alice)
    drain(all_finished)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    attempts = list(delivery.attempt_rows.all())
    assert [a.http_status for a in attempts] == [500, None, 200]
    assert attempts[0].error == "HTTP 500"
    assert attempts[0].response_excerpt == "receiver error"
    assert "RemoteProtocolError" in attempts[1].error
    assert attempts[2].error == ""
    # One idempotency id on every attempt; the body is the same too.
    assert {r.headers["X-Chatsite-Delivery"] for r in receiver.received} == {str(delivery.pk)}
    assert len({r.body for r in receiver.received}) == 1
    gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    assert BASE * 0.9 <= gaps[0] < BASE + 2
    assert BASE * 2 * 0.9 <= gaps[1] < BASE * 2 + 2


def test_it_fails_a_delivery_when_its_retry_window_ends(
        receiver: Receiver, conversation: Conversation, alice: Any, settings: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    settings.WEBHOOK_RETRY_HOURS = 1 / 3600  # 1 s: attempts at ~0, 0.3, (0.9), then stop
    endpoint(receiver, "conversation.assigned")
    receiver.plan = [503] * 10

    with caplog.at_level(logging.WARNING):
        desk.assign(conversation.pk, alice, alice)
        drain(all_finished)

    delivery = WebhookDelivery.objects.get()
    n = delivery.attempts
    assert (delivery.status, delivery.next_attempt_at) == ("failed", None)
    assert n >= 2 and len(receiver.received) == n
    # Failed at the first attempt whose next retry would have fallen past the window.
    last = delivery.attempt_rows.order_by("at").last()
    assert last is not None
    assert last.at + timedelta(seconds=BASE * 2 ** (n - 1)) > delivery.retry_until
    assert delivery.retry_until == delivery.created_at + timedelta(seconds=1)
    lines = [r for r in caplog.records if r.name == "conversations.services.webhooks"]
    assert len(lines) == n
    assert lines[-1].getMessage().endswith("HTTP 503; no more retries")
    assert all(r.exc_info is None for r in caplog.records)


def test_it_records_hostile_answers_without_a_traceback(
        receiver: Receiver, conversation: Conversation, alice: Any, settings: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    settings.WEBHOOK_RETRY_HOURS = 0  # one attempt each
    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0
    endpoint(receiver, "conversation.assigned")
    receiver.plan = ["huge", "binary", ("sleep", 3), "redirect"]

    with caplog.at_level(logging.INFO):
        for _ in receiver.plan[:]:
            desk.assign(conversation.pk, alice, None if conversation.assignee_id else alice)
            conversation.refresh_from_db()
            drain(all_finished)

    huge, binary, slow, redirect = WebhookAttempt.objects.order_by("at", "pk")
    assert (huge.http_status, huge.error, huge.delivery.status) == (200, "", "succeeded")
    assert huge.response_excerpt == "x" * webhooks.RESPONSE_EXCERPT_CHARS
    assert (binary.http_status, binary.error) == (500, "HTTP 500")
    assert "\x00" not in binary.response_excerpt and "not utf-8" in binary.response_excerpt
    assert (slow.http_status, slow.error) == (None, "No answer within 1.0 s.")
    assert 900 <= slow.duration_ms < 2900
    assert (redirect.http_status, redirect.error) == (302, "HTTP 302")
    assert [r.headers["X-Chatsite-Event"] for r in receiver.received] == [
        "conversation.assigned"] * 4  # the redirect was not followed
    assert WebhookDelivery.objects.filter(status="failed").count() == 3
    assert all(r.exc_info is None for r in caplog.records)
    assert "Traceback" not in caplog.text


def test_it_redelivers_from_the_admin(receiver: Receiver, conversation: Conversation,
                                      alice: Any, staff_client: Any) -> None:
    endpoint(receiver, "conversation.assigned")
    desk.assign(conversation.pk, alice, alice)
    drain(all_finished)
    delivery = WebhookDelivery.objects.get()

    page = staff_client.post("/admin/conversations/webhookdelivery/", {
        "action": "redeliver_action", "_selected_action": [str(delivery.pk)]}, follow=True)
    assert page.status_code == 200
    assert "1 delivery queued again." in page.content.decode()
    drain(all_finished)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.run) == ("succeeded", 2, 2)
    assert [r.headers["X-Chatsite-Delivery"] for r in receiver.received] == [str(delivery.pk)] * 2
    shown = staff_client.get(f"/admin/conversations/webhookdelivery/{delivery.pk}/change/")
    assert shown.status_code == 200
    assert shown.content.decode().count("<td class=\"field-http_status\"") == 2


def test_it_stops_a_previous_runs_retry_after_a_redelivery(
        receiver: Receiver, conversation: Conversation, alice: Any) -> None:
    endpoint(receiver, "conversation.assigned")
    receiver.plan = [500]
    desk.assign(conversation.pk, alice, alice)
    run_worker()  # attempt 1 fails; attempt 2 waits 0.3 s
    webhooks.redeliver(WebhookDelivery.objects.all())
    time.sleep(BASE * 1.5)
    drain(all_finished)

    delivery = WebhookDelivery.objects.get()
    # The old run's retry found the run changed and sent nothing.
    assert (delivery.status, delivery.attempts, len(receiver.received)) == ("succeeded", 2, 2)


def test_it_keeps_the_secret_encrypted_and_never_shows_it(receiver: Receiver,
                                                          staff_client: Any) -> None:
    page = staff_client.post("/admin/conversations/webhookendpoint/add/", {
        "url": receiver.url, "description": "CRM", "events": ["reply.completed"],
        "active": "on", "new_secret": SECRET}, follow=True)
    assert page.status_code == 200
    hook = WebhookEndpoint.objects.get()
    assert hook.created_by is not None and hook.created_by.username == "root"
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM conversations_webhookendpoint")
        row = cursor.fetchone()
    assert SECRET not in " ".join(str(v) for v in row)
    assert webhooks.decrypt_secret(hook.secret_encrypted) == SECRET
    change = staff_client.get(f"/admin/conversations/webhookendpoint/{hook.pk}/change/")
    assert SECRET not in change.content.decode()
    assert hook.secret_encrypted not in change.content.decode()
    # Saving without a new secret keeps it; a new one replaces it.
    staff_client.post(f"/admin/conversations/webhookendpoint/{hook.pk}/change/", {
        "url": receiver.url, "description": "CRM 2", "events": ["score.created"],
        "active": "on", "new_secret": ""})
    hook.refresh_from_db()
    assert (hook.description, hook.events) == ("CRM 2", ["score.created"])
    assert webhooks.decrypt_secret(hook.secret_encrypted) == SECRET
    # Hostile form input: a clear error, nothing saved.
    bad = staff_client.post("/admin/conversations/webhookendpoint/add/", {
        "url": "javascript:alert(1)", "events": ["nope"], "new_secret": "short"})
    assert bad.status_code == 200
    assert WebhookEndpoint.objects.count() == 1
    assert "Enter an http:// or https:// URL with a host." in bad.content.decode()


def test_it_costs_no_query_when_nothing_subscribes(receiver: Receiver) -> None:
    with CaptureQueriesContext(connection) as cold:
        webhooks.emit("reply.completed", {"x": 1})
    with CaptureQueriesContext(connection) as warm:
        for _ in range(100):
            webhooks.emit("reply.completed", {"x": 1})
    assert (len(cold), len(warm)) == (1, 0)
    endpoint(receiver, "score.created")  # saved: the cache is forgotten at once
    webhooks.emit("score.created", {"x": 1})
    webhooks.emit("reply.completed", {"x": 1})  # nobody listens to this one
    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ["score.created"]


def test_it_manages_endpoints_with_the_command(receiver: Receiver) -> None:
    out = io.StringIO()
    call_command("webhooks", "add", receiver.url, "--secret", SECRET, "--event",
                 "reply.completed", "--event", "score.created", stdout=out)
    hook = WebhookEndpoint.objects.get()
    assert out.getvalue() == (f"added webhook endpoint {hook.pk} ({receiver.url}: "
                              "reply.completed, score.created)\n")
    listing = io.StringIO()
    call_command("webhooks", "list", stdout=listing)
    assert listing.getvalue() == (f"{hook.pk}\t{receiver.url}\treply.completed,score.created\t"
                                  "active\t\n")
    assert SECRET not in listing.getvalue()
    for args, message in [
        (["add", "ftp://example.com/", "--secret", SECRET, "--event", "reply.completed"],
         "url: Enter an http:// or https:// URL with a host."),
        (["add", "http://", "--secret", SECRET, "--event", "reply.completed"],
         "url: Enter an http:// or https:// URL with a host."),
        (["add", "http://[::1", "--secret", SECRET, "--event", "reply.completed"],
         "url: Enter an http:// or https:// URL with a host."),
        (["add", receiver.url, "--secret", SECRET, "--event", "reply.exploded"],
         "unknown event 'reply.exploded'"),
        (["add", receiver.url, "--secret", "short", "--event", "reply.completed"],
         "secret: The secret must be 16 to 256 printable characters without spaces."),
        (["add", receiver.url, "--secret", "a" * 20 + "\x00", "--event", "reply.completed"],
         "secret: The secret must be 16 to 256 printable characters without spaces."),
        (["remove", "abc"], "bad id 'abc'"),
        (["remove", "²"], "bad id '²'"),
        (["remove", "9" * 40], "bad id"),
        (["remove", "999999"], "no webhook endpoint 999999"),
    ]:
        with pytest.raises(CommandError) as caught:
            call_command("webhooks", *args, stdout=io.StringIO())
        assert str(caught.value).startswith(message), args
    assert WebhookEndpoint.objects.count() == 1
    call_command("webhooks", "remove", str(hook.pk), stdout=io.StringIO())
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.process
def test_it_delivers_a_demo_reply_through_the_real_worker_process(
        receiver: Receiver, tmp_path: Path) -> None:
    from tests.cluster import recv_until, socket_to

    with live_server(tmp_path) as server:
        server.manage("webhooks", "add", receiver.url + "/hook", "--secret", SECRET,
                      "--event", "reply.completed")
        session = server.session_for("dana")
        conversation_id = server.shell(
            "from django.contrib.auth import get_user_model\n"
            "from conversations.models import Agent, Conversation\n"
            "u = get_user_model().objects.get(username='dana')\n"
            "print(Conversation.objects.create(owner=u, agent=Agent.objects.get(slug='demo')).pk)")
        with open(tmp_path / "worker.log", "ab") as log:
            worker = subprocess.Popen(  # noqa: S603 - our own manage.py
                [PYTHON, str(ROOT / "manage.py"), "db_worker", "--no-startup-delay",
                 "--interval", "0.2", "--no-reload"],
                env=server.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            async def chat() -> str:
                ws = await socket_to(server, session, conversation_id)
                await recv_until(ws, "conversation.sync")
                await ws.send(json.dumps({"type": "message.send", "content": "hello"}))
                frames = await recv_until(ws, "message.completed", timeout=60)
                await ws.close()
                return str(frames[-1]["message"]["id"])

            reply_id = asyncio.run(chat())
            deadline = time.monotonic() + 30
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            worker.terminate()
            worker.wait(timeout=15)
    log_text = (tmp_path / "worker.log").read_text()
    assert len(receiver.received) == 1, log_text[-2000:]
    got = receiver.received[0]
    assert got.headers["X-Chatsite-Event"] == "reply.completed"
    assert verify(SECRET, got.headers["X-Chatsite-Signature"], got.body)
    assert got.json["data"]["message_id"] == reply_id
    assert got.json["data"]["conversation_id"] == conversation_id
    assert (got.json["data"]["agent"], got.json["data"]["status"]) == ("demo", "completed")
    assert "Traceback" not in log_text
