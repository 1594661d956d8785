"""OpenTelemetry tracing (issue 15): with OTEL_EXPORTER_OTLP_ENDPOINT set, a real Daphne process
exports Django, websocket and httpx spans and one `chatsite.reply` span per reply to a real
OTLP/HTTP receiver on loopback; the reply's trace id is stored with it and shown to reviewers.
Unset, nothing is exported, nothing of the SDK is loaded and the trace id stays blank."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from chatsite import tracing
from conversations.models import Agent, Conversation, Message
from tests.cluster import recv_until, socket_to
from tests.fakevendor import FakeVendor, json_script, openai_chunk, sse, sse_script
from tests.livesrv import ROOT, LiveServer, django_setup_with, live_server

TRACE_URL = "https://tempo.example.com/trace/{trace_id}"
TRACE_ID = re.compile(r"[0-9a-f]{32}")
SECRET = "sk-live-0123456789abcdefTRACE"


# A real OTLP/HTTP receiver ---------------------------------------------------------------------


@dataclass
class ExportedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    status_code: int
    status_message: str
    service_name: str


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


@dataclass
class Receiver:
    """POST /v1/traces with an ExportTraceServiceRequest (protobuf, gzip or not), as a
    collector takes it; every span kept, flattened."""

    url: str = ""
    spans: list[ExportedSpan] = field(default_factory=list)
    posts: int = 0
    hooks: int = 0  # POST /hook: a webhook endpoint, for the worker's test
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    found.append(ExportedSpan(
                        name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(), kind=s.kind,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                        status_code=s.status.code, status_message=s.status.message,
                        service_name=str(resource.get("service.name"))))
        with self.lock:
            self.posts += 1
            self.spans.extend(found)

    def named(self, name: str) -> list[ExportedSpan]:
        with self.lock:
            return [s for s in self.spans if s.name == name]

    def wait_for(self, test: Any, timeout: float = 15, count: int = 1) -> list[ExportedSpan]:
        """The spans passing `test` once there are `count` of them (or at the timeout): spans
        arrive in batches, each socket's when it closes."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [s for s in self.spans if test(s)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/hook":
                with received.lock:
                    received.hooks += 1
                self.send_response(204)
                self.end_headers()
                return
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.take(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Helpers ---------------------------------------------------------------------------------------


def seed(server: LiveServer, vendor: FakeVendor) -> tuple[str, str, str]:
    """A staff user's session, an OpenAI-compatible agent on the fake vendor (its token in the
    environment), and a conversation with it."""
    session = server.session_for("tess")
    slug = f"oai-{uuid.uuid4().hex[:6]}"
    conversation_id = server.shell(
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Agent, Conversation\n"
        f"a = Agent.objects.create(slug={slug!r}, name='o', provider='openai', "
        f"base_url={vendor.url + '/v1'!r}, token_env='ACME_API_KEY', options={{'model': 'm'}})\n"
        "u = get_user_model().objects.get(username='tess')\n"
        "u.is_staff = u.is_superuser = True; u.save()\n"
        "print(Conversation.objects.create(owner=u, agent=a).pk)"
    )
    return session, slug, conversation_id


async def one_reply(server: LiveServer, session: str, conversation_id: str,
                    content: str) -> dict[str, Any]:
    """Send a message over a real websocket; the reply's final message JSON."""
    ws = await socket_to(server, session, conversation_id)
    try:
        await recv_until(ws, "conversation.sync")
        await ws.send(json.dumps({"type": "message.send", "content": content}))
        frames = await recv_until(ws, "message.completed", "message.failed")
    finally:
        await ws.close()
    return frames[-1]["message"]


def stored_trace_id(server: LiveServer, message_id: str) -> str:
    return server.shell(
        "from conversations.models import Message\n"
        f"print(repr(Message.objects.get(pk={message_id!r}).trace_id))").strip("'")


# With tracing on ------------------------------------------------------------------------------


@pytest.mark.process
async def test_it_traces_a_page_a_socket_and_a_reply_with_its_vendor_call(
        tmp_path: Path, receiver: Receiver, fake_vendor: FakeVendor):
    fake_vendor.add_route("POST", "/v1/chat/completions", [
        sse_script(sse(openai_chunk("Hel")), sse(openai_chunk("lo")),
                   sse(openai_chunk(finish_reason="stop")), sse("[DONE]")),
        json_script({"error": {"message": "overloaded"}}, status=503),
    ])
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200",
           "OTEL_SERVICE_NAME": "chatsite-test", "OTEL_TRACE_URL_TEMPLATE": TRACE_URL,
           "ACME_API_KEY": SECRET}
    with live_server(tmp_path, env) as server:
        session, slug, conversation_id = seed(server, fake_vendor)
        cookies = {"Cookie": f"sessionid={session}"}
        async with httpx.AsyncClient(base_url=server.url, headers=cookies) as http:
            assert (await http.get("/healthz")).status_code == 200  # a probe: no span
            assert (await http.get(f"/c/{conversation_id}/")).status_code == 200

        reply = await one_reply(server, session, conversation_id, "trace me")
        assert reply["status"] == "completed" and reply["content"] == "Hello"
        trace_id = reply["trace_id"]
        assert TRACE_ID.fullmatch(trace_id)
        assert stored_trace_id(server, reply["id"]) == trace_id

        failed = await one_reply(server, session, conversation_id, "fail me")
        assert failed["status"] == "failed"
        assert TRACE_ID.fullmatch(failed["trace_id"]) and failed["trace_id"] != trace_id

        async with httpx.AsyncClient(base_url=server.url, headers=cookies) as http:
            page = await http.get(f"/admin/conversations/conversation/{conversation_id}/change/")
        assert page.status_code == 200
        link = TRACE_URL.replace("{trace_id}", trace_id)
        assert (f'Trace <a href="{link}" target="_blank" rel="noopener noreferrer">'
                f"<code>{trace_id}</code></a>") in page.text

        # The Django span: the page's route, as a server span.
        [page_span] = receiver.wait_for(
            lambda s: s.attributes.get("http.route") == "c/<uuid:conversation_id>/")
        assert page_span.name == "GET c/<uuid:conversation_id>/"
        assert page_span.kind == 2  # SERVER
        assert page_span.attributes["http.status_code"] == 200
        assert page_span.service_name == "chatsite-test"

        # The reply span, with its vendor call as its child, in the trace stored on the reply.
        [reply_span] = receiver.wait_for(
            lambda s: s.name == "chatsite.reply" and s.trace_id == trace_id)
        assert reply_span.attributes == {
            "chatsite.agent": slug, "chatsite.provider": "openai",
            "chatsite.conversation_id": conversation_id, "chatsite.message_id": reply["id"],
            "chatsite.status": "completed", "chatsite.error_code": "", "chatsite.deltas": 2,
            "chatsite.ttft_ms": reply["ttft_ms"],
        }
        assert reply_span.parent_span_id == ""  # each reply is a trace of its own
        assert reply_span.status_code == 0  # unset
        [vendor_call] = receiver.wait_for(
            lambda s: s.trace_id == trace_id and s.name == "POST")
        assert vendor_call.parent_span_id == reply_span.span_id
        assert vendor_call.kind == 3  # CLIENT
        assert vendor_call.attributes["http.url"] == f"{fake_vendor.url}/v1/chat/completions"
        assert vendor_call.attributes["http.status_code"] == 200

        [failed_span] = receiver.wait_for(
            lambda s: s.name == "chatsite.reply" and s.trace_id == failed["trace_id"])
        assert failed_span.attributes["chatsite.status"] == "failed"
        assert failed_span.attributes["chatsite.error_code"] == failed["error"]["code"]
        assert failed_span.attributes["chatsite.deltas"] == 0
        assert "chatsite.ttft_ms" not in failed_span.attributes
        assert (failed_span.status_code, failed_span.status_message) == (
            2, failed["error"]["code"])  # ERROR
        [failed_call] = receiver.wait_for(
            lambda s: s.trace_id == failed["trace_id"] and s.name == "POST")
        assert failed_call.parent_span_id == failed_span.span_id
        assert failed_call.attributes["http.status_code"] == 503

        # One span per socket session (none per frame), which each reply links to.
        sockets = receiver.wait_for(
            lambda s: s.attributes.get("http.target", "").startswith("/ws/conversations/"),
            count=2)
        assert len(sockets) == 2, [s.name for s in sockets]
        assert all(s.kind == 2 for s in sockets)
        assert {s.name for s in sockets} == {"WS ws/conversations/<uuid:conversation_id>/"}
        assert {s.attributes["http.target"] for s in sockets} == {
            f"/ws/conversations/{conversation_id}/"}
        assert not receiver.named("websocket receive")
        assert not receiver.named("websocket send")
        assert reply_span.links == [(sockets[0].trace_id, sockets[0].span_id)] or \
            reply_span.links == [(sockets[1].trace_id, sockets[1].span_id)]
        assert {reply_span.links[0][1], failed_span.links[0][1]} == {s.span_id for s in sockets}

    # Every span left the process, none of a probe, and no span carries the agent's token.
    assert receiver.posts >= 1
    assert not [s for s in receiver.spans if "healthz" in json.dumps(s.attributes)]
    assert all(SECRET not in json.dumps(s.attributes) for s in receiver.spans)
    log = (tmp_path / "daphne.log").read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.process
async def test_it_redacts_a_token_in_a_vendor_url(
        tmp_path: Path, receiver: Receiver, fake_vendor: FakeVendor):
    """A base URL carrying a token (`?key=`, as some vendors take it): the span's URL does not."""
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("ok")), sse(openai_chunk(finish_reason="stop")), sse("[DONE]")))
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200",
           "ACME_API_KEY": SECRET}
    with live_server(tmp_path, env) as server:
        session, _slug, conversation_id = seed(server, fake_vendor)
        server.shell(
            "from conversations.models import Agent, Conversation\n"
            f"a = Conversation.objects.get(pk={conversation_id!r}).agent\n"
            f"a.base_url = {fake_vendor.url + '/v1?key=' + SECRET!r}; a.save()\n"
            "print(a.pk)")
        reply = await one_reply(server, session, conversation_id, "hi")
        [call] = receiver.wait_for(lambda s: s.trace_id == reply["trace_id"] and s.name == "POST")
    assert SECRET not in call.attributes["http.url"]
    assert "[redacted]" in call.attributes["http.url"]
    assert call.attributes["http.url"].startswith(f"{fake_vendor.url}/v1")
    assert call.service_name == "chatsite"  # OTEL_SERVICE_NAME's default here


@pytest.mark.process
async def test_it_keeps_replying_when_the_collector_is_down(
        tmp_path: Path, fake_vendor: FakeVendor, refused_url: str):
    """Spans are exported from the SDK's thread: a collector that refuses connections costs the
    reply nothing, and the trace id is still stored (the collector may come back)."""
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("still here")), sse(openai_chunk(finish_reason="stop")), sse("[DONE]")))
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": refused_url, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    with live_server(tmp_path, env) as server:
        session, _slug, conversation_id = seed(server, fake_vendor)
        started = time.monotonic()
        reply = await one_reply(server, session, conversation_id, "hello?")
        assert time.monotonic() - started < 5
        assert reply["status"] == "completed" and reply["content"] == "still here"
        assert stored_trace_id(server, reply["id"]) == reply["trace_id"]
        assert TRACE_ID.fullmatch(reply["trace_id"])
        time.sleep(1.5)  # a few export attempts
    # One clear line per failed batch (the SDK's own), no traceback.
    log = (tmp_path / "daphne.log").read_text()
    assert "Failed to export spans batch" in log
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.process
async def test_it_traces_the_workers_webhook_deliveries(tmp_path: Path, receiver: Receiver):
    """The task worker (`manage.py db_worker`, the Procfile's worker) exports its webhook
    deliveries' HTTP calls."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    with live_server(tmp_path, env) as server:
        server.manage("webhooks", "add", receiver.url + "/hook", "--secret", "s" * 32,
                      "--event", "reply.completed")
        server.shell(
            "from conversations.models import Agent\n"
            "a = Agent.objects.get(slug='demo'); a.options = {'delay': 0}; a.save(); print(1)")
        session = server.session_for("wes")
        conversation_id = server.shell(
            "from django.contrib.auth import get_user_model\n"
            "from conversations.models import Agent, Conversation\n"
            "u = get_user_model().objects.get(username='wes')\n"
            "print(Conversation.objects.create(owner=u, agent=Agent.objects.get(slug='demo')).pk)")
        reply = await one_reply(server, session, conversation_id, "hook me")
        assert reply["status"] == "completed" and TRACE_ID.fullmatch(reply["trace_id"])
        with open(tmp_path / "worker.log", "ab") as log:
            worker = subprocess.Popen(  # noqa: S603 - our own manage.py
                [sys.executable, str(ROOT / "manage.py"), "db_worker", "--no-startup-delay",
                 "--interval", "0.2", "--no-reload"],
                env=server.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            calls = receiver.wait_for(
                lambda s: s.attributes.get("http.url") == f"{receiver.url}/hook", timeout=30)
        finally:
            worker.terminate()
            worker.wait(timeout=15)
    log = (tmp_path / "worker.log").read_text()
    assert receiver.hooks == 1, log[-2000:]
    [call] = calls
    assert call.name == "POST" and call.kind == 3  # CLIENT
    assert call.attributes["http.status_code"] == 204
    assert call.service_name == "chatsite"
    assert "Traceback" not in log


# With tracing off ------------------------------------------------------------------------------


@pytest.mark.process
async def test_it_exports_nothing_and_stores_no_trace_id_when_unset(
        tmp_path: Path, receiver: Receiver, fake_vendor: FakeVendor):
    """Only OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on: the SDK's per-signal variable alone
    (which it would honour) exports nothing."""
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("quiet")), sse(openai_chunk(finish_reason="stop")), sse("[DONE]")))
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with live_server(tmp_path, env) as server:
        session, _slug, conversation_id = seed(server, fake_vendor)
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/healthz")).status_code == 200
        reply = await one_reply(server, session, conversation_id, "untraced")
        assert reply["status"] == "completed" and reply["trace_id"] == ""
        assert stored_trace_id(server, reply["id"]) == ""
        async with httpx.AsyncClient(base_url=server.url,
                                     headers={"Cookie": f"sessionid={session}"}) as http:
            page = await http.get(f"/admin/conversations/conversation/{conversation_id}/change/")
        assert page.status_code == 200 and "turn-trace" not in page.text
        time.sleep(0.5)  # past a few of the schedule delays it would export on
    assert receiver.posts == 0 and receiver.spans == []


def test_it_loads_nothing_of_the_sdk_when_unset():
    """The ASGI app without the variable: no tracer provider, none of the SDK's tracing, the
    exporter or the instrumentations loaded (redis-py imports the SDK's metrics package for its
    own observability, tracing or not), and the relay's reply span is the shared no-op."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"DJANGO_SETTINGS_MODULE": "chatsite.settings", "SECRET_KEY": "x" * 50})
    code = (
        "import sys, chatsite.asgi\n"
        "from chatsite import tracing\n"
        "from opentelemetry import trace\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', "
        "'opentelemetry.instrumentation', 'opentelemetry.exporter')))\n"
        "print(tracing.enabled(), type(trace.get_tracer_provider()).__name__, loaded, "
        "tracing.reply_span(None) is tracing._NO_SPAN)\n"
    )
    done = subprocess.run(  # noqa: S603 - our own app
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False ProxyTracerProvider [] True"


def test_it_is_off_in_the_test_process():
    assert not tracing.enabled()
    assert tracing.reply_span(None) is tracing._NO_SPAN  # type: ignore[arg-type]


# Settings and hostile values ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "message"), [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "OTEL_EXPORTER_OTLP_ENDPOINT must be"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_ENDPOINT must"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a b:4318", "OTEL_EXPORTER_OTLP_ENDPOINT must be"),
    ("OTEL_TRACE_URL_TEMPLATE", "https://tempo.example.com/trace/", "OTEL_TRACE_URL_TEMPLATE"),
    ("OTEL_TRACE_URL_TEMPLATE", "javascript:alert(1)//{trace_id}", "OTEL_TRACE_URL_TEMPLATE"),
    ("OTEL_TRACE_URL_TEMPLATE", "https://t/{trace_id}/{trace_id}", "OTEL_TRACE_URL_TEMPLATE"),
])
def test_it_refuses_to_start_with_a_bad_setting(name: str, value: str, message: str):
    done = django_setup_with(name, value)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and message in done.stderr
    assert done.stderr.count("Traceback") == 1  # the start-up error only


def test_it_links_only_a_real_trace_id(settings: Any):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert tracing.trace_url(trace_id) == ""  # no template: the id is shown as text
    settings.OTEL_TRACE_URL_TEMPLATE = TRACE_URL
    assert tracing.trace_url(trace_id) == f"https://tempo.example.com/trace/{trace_id}"
    for hostile in ("", "4BF92F3577B34DA6A3CE929D0E0E4736", trace_id + "0", trace_id[:-1],
                    '"><script>x</script>', "../../admin", None):
        assert tracing.trace_url(hostile) == "", hostile  # type: ignore[arg-type]


def test_it_reserves_the_otel_variables_from_agent_tokens():
    from conversations.token_env import token_env_problem

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACE_URL_TEMPLATE",
                 "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_API_KEY"):
        problem = token_env_problem(name)
        assert problem is not None and "chatsite's own settings" in problem, name


# Reviewers see it ------------------------------------------------------------------------------


@pytest.fixture
def traced_reply(alice: Any, demo_agent: Agent) -> Message:
    conversation = Conversation.objects.create(owner=alice, agent=demo_agent, title="Traced")
    Message.objects.create(conversation=conversation, seq=1, role="user", content="Hi")
    return Message.objects.create(conversation=conversation, seq=2, role="assistant",
                                  content="Hello", trace_id="4bf92f3577b34da6a3ce929d0e0e4736")


def test_it_shows_the_trace_id_in_the_admin_transcript(
        traced_reply: Message, staff_client: Client, settings: Any):
    url = f"/admin/conversations/conversation/{traced_reply.conversation_id}/change/"
    html = staff_client.get(url).content.decode()
    assert 'Trace <code>4bf92f3577b34da6a3ce929d0e0e4736</code>' in html
    settings.OTEL_TRACE_URL_TEMPLATE = TRACE_URL
    html = staff_client.get(url).content.decode()
    assert ('Trace <a href="https://tempo.example.com/trace/4bf92f3577b34da6a3ce929d0e0e4736" '
            'target="_blank" rel="noopener noreferrer">'
            "<code>4bf92f3577b34da6a3ce929d0e0e4736</code></a>") in html
    # A row holding something else (written by hand) is shown as text, escaped, never a link.
    Message.objects.filter(pk=traced_reply.pk).update(trace_id='"><b>x</b>')
    html = staff_client.get(url).content.decode()
    assert "Trace <code>&quot;&gt;&lt;b&gt;x&lt;/b&gt;</code>" in html
    assert "tempo.example.com" not in html


def test_it_shows_the_trace_id_on_the_reviewer_page(
        traced_reply: Message, reviewer: Any, reviewer_client: Client):
    from conversations.models import ReviewQueue
    from conversations.services import queues

    queue = ReviewQueue.objects.create(name="Traced replies")
    queue.assignees.add(reviewer)
    item = queues.enqueue(queue, conversation=traced_reply.conversation, message=traced_reply,
                          reason="manual")
    assert item is not None
    assert reviewer_client.post(f"/review/queues/{queue.pk}/start").status_code == 302
    html = reviewer_client.get(f"/review/items/{item.pk}/").content.decode()
    assert "Trace <code>4bf92f3577b34da6a3ce929d0e0e4736</code>" in html


def test_it_puts_the_trace_id_in_the_message_json(traced_reply: Message, alice_client: Client):
    from conversations.frames import message_json

    assert message_json(traced_reply, [])["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    user_message = traced_reply.parent or Message.objects.get(
        conversation=traced_reply.conversation, seq=1)
    assert message_json(user_message, [])["trace_id"] == ""
