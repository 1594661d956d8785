"""/metrics (issue 15, part 1): the values after scripted replies through the real websocket,
who may read it, multiprocess mode with two real Daphne processes, and the Grafana dashboard's
queries against what /metrics serves."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from chatsite.asgi import application
from conversations import layer as layer_calls
from conversations import services
from conversations.backpressure import CLOSE_TOO_SLOW, MAX_PAUSED_SECONDS, WriteGauge
from conversations.models import Agent, Conversation, Message
from tests.cluster import recv_until, socket_to
from tests.livesrv import ROOT, LiveServer, django_setup_with, free_port, live_server, server_env
from tests.wsclient import HOST, ORIGIN, open_socket, session_cookie, wait_for_no_runs

in_process = pytest.mark.django_db(transaction=True)
db = database_sync_to_async

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_sync(**extra: Any) -> Samples:
    answer = Client().get("/metrics", **extra)
    assert answer.status_code == 200, answer.status_code
    assert answer["Content-Type"].startswith("text/plain; version=")
    return parse(answer.content.decode())


async def scrape() -> Samples:
    return await sync_to_async(scrape_sync)()


class Diff:
    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


# A scripted reply ------------------------------------------------------------------------------


@in_process
async def test_it_counts_a_demo_reply_streamed_through_the_websocket(
    alice_client: Client, conversation: Conversation
):
    before = await scrape()
    _, sock = await open_socket(alice_client, conversation.id)
    _, second_tab = await open_socket(alice_client, conversation.id)
    opened = await scrape()
    assert value(opened, "chatsite_open_sockets") == value(before, "chatsite_open_sockets") + 2

    await sock.send({"type": "message.send", "content": "count this reply"})
    frames = await sock.recv_until("message.completed", "message.failed", timeout=20)
    assert frames[-1]["type"] == "message.completed"
    others = await second_tab.recv_until("message.completed", timeout=20)
    await wait_for_no_runs()
    after = await scrape()
    diff = Diff(before, after)

    deltas = [f for f in frames if f["type"] == "message.delta"]
    assert len(deltas) > 10  # the demo streams its reply in pieces of <= 8 characters
    assert diff("chatsite_replies_total", agent="demo", status="completed", error_code="") == 1
    assert diff("chatsite_deltas_relayed_total", agent="demo") == len(deltas)
    assert diff("chatsite_reply_ttft_seconds_count", agent="demo") == 1
    assert diff("chatsite_reply_duration_seconds_count", agent="demo") == 1
    ttft = diff("chatsite_reply_ttft_seconds_sum", agent="demo")
    duration = diff("chatsite_reply_duration_seconds_sum", agent="demo")
    assert 0 < ttft <= duration < 20
    assert value(after, "chatsite_active_runs") == 0
    # The second tab was sent coalesced batches: each counted once, with its lag.
    batches = diff("chatsite_fanout_batches_total")
    assert 1 <= batches <= len(others)
    assert diff("chatsite_fanout_lag_seconds_count") == batches
    assert 0 < diff("chatsite_fanout_lag_seconds_sum") < batches * 5

    await sock.close()
    await second_tab.close()
    closed = await scrape()
    assert value(closed, "chatsite_open_sockets") == value(before, "chatsite_open_sockets")


@in_process
async def test_it_counts_a_failed_reply_by_its_error_code(
    alice_client: Client, conversation: Conversation
):
    before = await scrape()
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "please fail-demo"})
    frames = await sock.recv_until("message.completed", "message.failed", timeout=20)
    assert frames[-1]["type"] == "message.failed"
    code = frames[-1]["message"]["error"]["code"]
    await wait_for_no_runs()
    await sock.close()
    diff = Diff(before, await scrape())
    assert code == "vendor_error"
    assert diff("chatsite_replies_total", agent="demo", status="failed", error_code=code) == 1
    assert diff("chatsite_replies_total", agent="demo", status="completed", error_code="") == 0
    assert diff("chatsite_reply_duration_seconds_count", agent="demo") == 1


@in_process
async def test_it_times_the_flushes_of_a_long_reply(
    alice: Any, alice_client: Client, settings: Any
):
    settings.RELAY_FLUSH_INTERVAL = 0.05
    # The demo at ~100 deltas/s: a reply of ~1.5 s, about 30 flushes.
    slow = await db(Agent.objects.create)(slug="slow-demo", name="Slow", provider="demo",
                                           options={"delay": 0.01})
    conversation = await db(Conversation.objects.create)(owner=alice, agent=slow)
    before = await scrape()
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "take your time"})
    await sock.recv_until("message.completed", timeout=30)
    await wait_for_no_runs()
    await sock.close()
    diff = Diff(before, await scrape())
    flushes = diff("chatsite_db_flush_seconds_count")
    assert flushes >= 3
    assert 0 < diff("chatsite_db_flush_seconds_sum") < flushes * 1.0
    assert diff("chatsite_replies_total", agent="slow-demo", status="completed",
                error_code="") == 1


@in_process
async def test_it_counts_rate_limit_refusals(
    alice_client: Client, conversation: Conversation, settings: Any
):
    settings.RATE_LIMIT_SENDS_PER_MINUTE = 1
    before = await scrape()
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "first"})
    await sock.recv_until("message.completed", timeout=20)
    await sock.send({"type": "message.send", "content": "second", "client_id": "c2"})
    refused = await sock.recv_until("error")
    assert refused[-1]["code"] == "rate_limited"
    await wait_for_no_runs()
    await sock.close()
    diff = Diff(before, await scrape())
    assert diff("chatsite_rate_limit_refusals_total", limit="sends") == 1
    assert diff("chatsite_replies_total", agent="demo", status="completed", error_code="") == 1


@in_process
async def test_it_counts_a_backpressure_close(alice_client: Client, conversation: Conversation):
    # A real WriteGauge whose client has not read for longer than MAX_PAUSED_SECONDS: the first
    # frame sent (the sync) closes the socket with 4008.
    ticks = itertools.chain([0.0], itertools.repeat(MAX_PAUSED_SECONDS + 1))
    gauge = WriteGauge(clock=lambda: next(ticks))
    gauge.pauseProducing()
    before = await scrape()
    comm = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.id}/",
        [(b"host", HOST), (b"origin", ORIGIN), (b"cookie", session_cookie(alice_client))])
    comm.scope["write_gauge"] = gauge  # read by the consumer after accept()
    connected, _ = await comm.connect(timeout=5)
    assert connected
    out = await comm.receive_output(timeout=5)
    while out["type"] != "websocket.close":
        out = await comm.receive_output(timeout=5)
    assert out["code"] == CLOSE_TOO_SLOW
    await comm.disconnect()  # the client's side of the close: disconnect() runs
    after = await scrape()
    assert Diff(before, after)("chatsite_backpressure_closes_total") == 1
    assert value(after, "chatsite_open_sockets") == value(before, "chatsite_open_sockets")


@in_process
def test_it_counts_reaped_replies(conversation: Conversation):
    before = scrape_sync()
    Message.objects.create(
        conversation=conversation, seq=2, role="assistant", status="streaming", content="half",
        heartbeat_at=timezone.now() - timezone.timedelta(seconds=120))
    assert len(services.reap_orphaned_runs()) == 1
    assert Diff(before, scrape_sync())("chatsite_reaped_runs_total") == 1


async def test_it_counts_channel_layer_errors_by_operation():
    from channels_redis.pubsub import RedisPubSubChannelLayer

    # Redis on a port where nothing listens: a real refused connection, twice (with retry).
    layer = RedisPubSubChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"])
    before = await scrape()
    try:
        with pytest.raises(layer_calls.LayerUnavailable):
            await layer_calls.group_send("metrics.test", {"type": "x"}, layer)
    finally:
        # The process-wide throttled log would report a "recovery" in a later test.
        layer_calls.layer_log.failing = False
        layer_calls.layer_log.failures = 0
        await layer.flush()
    diff = Diff(before, await scrape())
    assert diff("chatsite_channel_layer_errors_total", operation="group_send") == 1
    assert diff("chatsite_channel_layer_errors_total", operation="send") == 0


# Who may read it -------------------------------------------------------------------------------


@in_process
def test_it_serves_loopback_by_default_and_hides_from_others():
    assert Client().get("/metrics").status_code == 200  # REMOTE_ADDR 127.0.0.1
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::ffff:127.0.0.1").get("/metrics").status_code == 200
    outside = Client(REMOTE_ADDR="203.0.113.7").get("/metrics")
    assert outside.status_code == 404
    assert b"chatsite_" not in outside.content


@in_process
def test_it_serves_the_allowed_networks(settings: Any):
    settings.METRICS_ALLOWED_CIDRS = ["10.1.0.0/16", "2001:db8::/32"]
    assert Client(REMOTE_ADDR="10.1.200.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="2001:db8::5").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.2.0.1").get("/metrics").status_code == 404
    assert Client().get("/metrics").status_code == 404  # loopback no longer listed


@in_process
def test_it_serves_a_bearer_token_from_anywhere(settings: Any):
    settings.METRICS_TOKEN = "metrics-token-0123456789abcdef"
    far = Client(REMOTE_ADDR="198.51.100.9")
    ok = far.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-0123456789abcdef")
    assert ok.status_code == 200 and b"chatsite_replies_total" in ok.content or (
        b"# TYPE chatsite_replies_total counter" in ok.content)
    assert far.get("/metrics", HTTP_AUTHORIZATION="bearer metrics-token-0123456789abcdef"
                   ).status_code == 200
    for wrong in ("Bearer metrics-token-0123456789abcdeX", "Bearer", "Bearer ",
                  "Basic metrics-token-0123456789abcdef", "metrics-token-0123456789abcdef"):
        assert far.get("/metrics", HTTP_AUTHORIZATION=wrong).status_code == 404, wrong
    assert far.get("/metrics").status_code == 404


@in_process
def test_it_has_no_token_access_without_a_token(settings: Any):
    settings.METRICS_TOKEN = ""
    far = Client(REMOTE_ADDR="198.51.100.9")
    assert far.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert far.get("/metrics", HTTP_AUTHORIZATION="Bearer  ").status_code == 404


@in_process
def test_it_answers_hostile_headers_with_a_clean_404(settings: Any, caplog: Any):
    settings.METRICS_TOKEN = "metrics-token-0123456789abcdef"
    settings.TRUSTED_PROXY_COUNT = 1
    far = Client(REMOTE_ADDR="198.51.100.9")
    hostile = [
        {"HTTP_AUTHORIZATION": "Bearer m\u00e9trics-\u00fe\u00ff-token"},  # latin-1 bytes
        {"HTTP_AUTHORIZATION": "Bearer " + "A" * 100_000},
        {"HTTP_AUTHORIZATION": "Bearer \x00\x01"},
        {"HTTP_X_FORWARDED_FOR": "not-an-address"},
        {"HTTP_X_FORWARDED_FOR": "127.0.0.1\r\n, <script>"},
        {"HTTP_X_FORWARDED_FOR": "127.0.0.1%eth0"},
        {"HTTP_X_FORWARDED_FOR": ""},
        {"HTTP_X_FORWARDED_FOR": "1" * 5000},
    ]
    for headers in hostile:
        assert far.get("/metrics", **headers).status_code == 404, headers
    # Behind one trusted proxy, the proxy's view of the client counts, not REMOTE_ADDR.
    assert far.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200
    assert far.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.1").status_code == 404
    assert "Traceback" not in caplog.text


@in_process
def test_it_refuses_writes_and_hides_them_from_strangers():
    assert Client().post("/metrics").status_code == 405
    assert Client().head("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="203.0.113.7").post("/metrics").status_code == 404


@pytest.mark.parametrize(("name", "value", "message"), [
    ("METRICS_ALLOWED_CIDRS", "10.0.0.0/8,not-a-network", "METRICS_ALLOWED_CIDRS"),
    ("METRICS_TOKEN", "short", "METRICS_TOKEN must be at least 16"),
    ("LOG_FORMAT", "xml", "LOG_FORMAT must be text or json"),
])
def test_it_refuses_to_start_with_a_bad_setting(name: str, value: str, message: str):
    done = django_setup_with(name, value)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and message in done.stderr


# The dashboard -------------------------------------------------------------------------------


DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"


def dashboard_metric_names() -> set[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    assert exprs, "the dashboard queries nothing"
    return {name for expr in exprs for name in re.findall(r"\bchatsite_[a-z_]+\b", expr)}


@in_process
async def test_it_serves_every_metric_the_dashboard_queries(
    alice_client: Client, conversation: Conversation
):
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["panels"] and board["schemaVersion"] >= 30
    assert all(p.get("datasource") for p in board["panels"] if p.get("targets"))
    # One reply, so every per-agent series exists.
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "for the dashboard"})
    await sock.recv_until("message.completed", timeout=20)
    await wait_for_no_runs()
    await sock.close()
    served = {name for name, _ in await scrape()}
    missing = dashboard_metric_names() - served
    assert not missing, f"the dashboard queries metrics /metrics does not serve: {missing}"
    # And it shows every metric chatsite has (a new metric gets a panel).
    ours = {n for n in served if n.startswith("chatsite_")}
    bases = {re.sub(r"_(bucket|count|sum)$", "", n) for n in ours}
    shown = {re.sub(r"_(bucket|count|sum)$", "", n) for n in dashboard_metric_names()}
    assert bases <= shown, bases - shown


# Multiprocess mode: two real Daphne processes ---------------------------------------------------


def fetch_metrics(server: LiveServer) -> Samples:
    answer = httpx.get(f"{server.url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text[:500]
    return parse(answer.text)


async def one_reply(server: LiveServer, session: str, conversation_id: str) -> int:
    ws = await socket_to(server, session, conversation_id)
    await recv_until(ws, "conversation.sync")
    await ws.send(json.dumps({"type": "message.send", "content": "from a process"}))
    frames = await recv_until(ws, "message.completed", "message.failed")
    await ws.close()
    assert frames[-1]["type"] == "message.completed"
    return sum(1 for f in frames if f["type"] == "message.delta")


@pytest.mark.process
async def test_it_sums_two_real_processes_in_multiprocess_mode(tmp_path: Path):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "DEBUG": "0"}
    with live_server(tmp_path, extra) as first:
        port = free_port()
        second = LiveServer(f"http://127.0.0.1:{port}",
                            server_env(first.env["DATABASE_URL"], port, extra),
                            tmp_path / "daphne-2.log")
        second.start()
        try:
            session = first.session_for("mp")
            conversations = [first.shell(
                "from django.contrib.auth import get_user_model\n"
                "from conversations.models import Agent, Conversation\n"
                "a = Agent.objects.get(slug='demo'); a.options = {'delay': 0}; a.save()\n"
                "u = get_user_model().objects.get(username='mp')\n"
                "print(Conversation.objects.create(owner=u, agent=a).pk)") for _ in range(2)]
            deltas = [await one_reply(first, session, conversations[0]),
                      await one_reply(second, session, conversations[1])]
            await asyncio.sleep(0.5)  # the closes' disconnect() ran
            ws = await socket_to(second, session, conversations[1])
            await recv_until(ws, "conversation.sync")
            for server in (first, second):  # either process answers for both
                samples = fetch_metrics(server)
                assert value(samples, "chatsite_replies_total", agent="demo",
                             status="completed", error_code="") == 2
                assert value(samples, "chatsite_deltas_relayed_total", agent="demo") == sum(
                    deltas)
                assert value(samples, "chatsite_reply_ttft_seconds_count", agent="demo") == 2
                assert value(samples, "chatsite_active_runs") == 0
                assert value(samples, "chatsite_open_sockets") == 1
            await ws.close()
            assert len(list(metrics_dir.glob("*.db"))) >= 2  # one file set per process
        finally:
            second.stop()
    # The processes exited: their live gauges were marked dead, their counters remain.
    leftover = {p.name for p in metrics_dir.glob("gauge_live*")}
    assert not leftover, leftover
