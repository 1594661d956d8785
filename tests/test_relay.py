"""The relay: bounded database work, vendor faults mapped to codes, restart recovery."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db.backends.utils import CursorWrapper
from django.test import Client
from django.utils import timezone

from conversations import services
from conversations.models import Agent, Conversation, Message
from tests.fakevendor import Pause, json_script, openai_chunk, sse, sse_script
from tests.wsclient import assemble, open_socket, wait_for_no_runs

pytestmark = [pytest.mark.django_db(transaction=True)]

db = database_sync_to_async


def stream_of(n: int) -> Any:
    words = [sse(openai_chunk(f"w{i} ")) for i in range(n)]
    return sse_script(*words, sse(openai_chunk(finish_reason="stop")), sse("[DONE]"))


class QueryCounter:
    """Counts SQL statements from every thread: the consumer and relay run their ORM calls on
    Channels' database threads, not on the test's."""

    def __init__(self, monkeypatch: Any) -> None:
        self.statements: list[str] = []
        original = CursorWrapper._execute_with_wrappers

        def counting(cursor: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
            self.statements.append(sql)
            return original(cursor, sql, *args, **kwargs)

        monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", counting)

    def queries(self, start: int) -> list[str]:
        # SQLite's transaction control goes through the cursor too; it is not a query.
        return [q for q in self.statements[start:] if q not in ("BEGIN", "COMMIT")]


async def queries_for_one_reply(client: Client, conversation: Conversation,
                                counter: QueryCounter) -> tuple[list[str], str]:
    _, sock = await open_socket(client, conversation.id)
    before = len(counter.statements)
    await sock.send({"type": "message.send", "content": "count me"})
    frames = await sock.recv_until("message.completed", "message.failed")
    await wait_for_no_runs()
    queries = counter.queries(before)
    await sock.close()
    return queries, frames[-1]["message"]["content"]


async def test_it_does_not_query_per_delta(alice_client: Client, alice: Any,
                                           openai_agent: Agent, fake_vendor: Any, settings: Any,
                                           monkeypatch: Any):
    settings.RELAY_FLUSH_INTERVAL = 60  # only the final write; the timer is tested below
    # The review queues' rules are read once per process every few seconds (queue_rules), not
    # per reply: read them before counting, as a running process has.
    await db(services.queue_rules.rules)()
    # Likewise which webhook events have subscribers (services.webhooks).
    await db(services.webhooks.subscribed_events)()
    counter = QueryCounter(monkeypatch)
    few = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    many = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", "/v1/chat/completions", stream_of(5))
    small, text_small = await queries_for_one_reply(alice_client, few, counter)
    fake_vendor.add_route("POST", "/v1/chat/completions", stream_of(400))
    large, text_large = await queries_for_one_reply(alice_client, many, counter)
    assert text_small.count("w") == 5 and text_large.count("w") == 400
    assert len(small) == len(large) == 8, large  # the issue's bound is 10 per reply
    assert [q.split()[0] for q in large] == [
        # The socket's session, still valid, and its user, active with the same password: one
        # statement (sessions.session_is_valid).
        "SELECT",
        "SELECT",  # the user's streaming replies (RATE_LIMIT_RUNS_PER_USER)
        "SELECT",  # the conversation, locked
        "SELECT",  # its messages: repeat check, active run, history, position
        "INSERT",  # the user's message and the reply's placeholder, one statement
        "UPDATE",  # the conversation's activity time
        "UPDATE",  # the final text and status
        "UPDATE",  # the conversation's activity time
    ]


async def test_it_flushes_text_on_a_timer_during_a_long_reply(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any, settings: Any
):
    settings.RELAY_FLUSH_INTERVAL = 0.1
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("partial text")), Pause(0.6), sse(openai_chunk(" end")),
        sse("[DONE]")))
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "go"})
    frames = await sock.recv_until("message.delta")
    await asyncio.sleep(0.4)
    reply_id = frames[-1]["message_id"]
    mid_run = await db(Message.objects.get)(pk=reply_id)
    assert mid_run.status == "streaming" and mid_run.content == "partial text"
    assert mid_run.heartbeat_at is not None
    await sock.recv_until("message.completed")
    await wait_for_no_runs()
    await sock.close()


async def run_against(client: Client, conversation: Conversation) -> list[dict[str, Any]]:
    _, sock = await open_socket(client, conversation.id)
    await sock.send({"type": "message.send", "content": "hello"})
    frames = await sock.recv_until("message.completed", "message.failed")
    await wait_for_no_runs()
    await sock.assert_usable()
    await sock.close()
    return frames


@pytest.mark.parametrize(
    ("script", "code", "message_part"),
    [
        (json_script({"error": {"message": "Invalid API key"}}, status=401), "vendor_auth",
         "FAKE_OPENAI_KEY"),
        (json_script({"error": {"message": "no such model"}}, status=404), "vendor_not_found",
         "no such model"),
        (json_script({"error": {"message": "slow down"}}, status=429), "vendor_rate_limited",
         "slow down"),
        (json_script({"error": {"message": "overloaded"}}, status=503), "vendor_unavailable",
         "overloaded"),
        (sse_script(sse(openai_chunk("Half an ans"))), "vendor_truncated", "ended"),
        (sse_script(sse(openai_chunk("Half")), sse({"error": {"message": "model crashed"}})),
         "vendor_error", "model crashed"),
    ],
)
async def test_it_maps_vendor_faults_to_failed_messages(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any, script: Any,
    code: str, message_part: str, caplog: Any
):
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", "/v1/chat/completions", script)
    frames = await run_against(alice_client, conversation)
    final = frames[-1]
    assert final["type"] == "message.failed"
    assert final["message"]["error"]["code"] == code
    assert message_part in final["message"]["error"]["message"]
    assert final["message"]["content"] == assemble(frames, final["message"]["id"])
    stored = await db(Message.objects.get)(pk=final["message"]["id"])
    assert stored.status == "failed" and stored.error_code == code
    assert stored.content == final["message"]["content"]
    assert "sk-test-secret" not in caplog.text and "Traceback" not in caplog.text
    assert len(fake_vendor.requests) == 1  # never retried
    user = await db(Message.objects.get)(conversation=conversation, role="user")
    assert user.content == "hello"  # the user's message is never lost


async def test_it_reports_an_unreachable_vendor(alice_client: Client, alice: Any,
                                                openai_agent: Agent, refused_url: str):
    openai_agent.base_url = refused_url
    await db(openai_agent.save)()
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    frames = await run_against(alice_client, conversation)
    assert frames[-1]["message"]["error"]["code"] == "vendor_unreachable"


async def test_it_reports_an_idle_vendor_as_timed_out(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any, settings: Any
):
    settings.VENDOR_READ_TIMEOUT = 0.3
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("Thinking")), Pause(2.0), sse("[DONE]")))
    frames = await run_against(alice_client, conversation)
    assert frames[-1]["message"]["error"]["code"] == "vendor_timeout"
    assert frames[-1]["message"]["content"] == "Thinking"


async def test_it_sends_history_and_the_token_to_the_vendor(
    alice_client: Client, alice: Any, openai_agent: Agent, fake_vendor: Any
):
    conversation = await db(Conversation.objects.create)(owner=alice, agent=openai_agent)
    fake_vendor.add_route("POST", "/v1/chat/completions", stream_of(2))
    await run_against(alice_client, conversation)
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "second question"})
    await sock.recv_until("message.completed")
    await wait_for_no_runs()
    await sock.close()
    second = fake_vendor.requests[1]
    assert second.headers["authorization"] == "Bearer sk-test-secret"
    body = second.json()
    assert body["model"] == "gpt-test" and body["stream"] is True
    assert body["messages"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "w0 w1 "},
        {"role": "user", "content": "second question"},
    ]


# Restart recovery ----------------------------------------------------------------------------


def make_orphan(conversation: Conversation, age_seconds: int) -> Message:
    beat = timezone.now() - timezone.timedelta(seconds=age_seconds)
    return Message.objects.create(
        conversation=conversation, seq=2, role="assistant", status="streaming",
        content="half a rep", heartbeat_at=beat)


async def test_it_marks_orphaned_replies_failed_when_a_socket_syncs(
    alice_client: Client, conversation: Conversation
):
    orphan = await db(make_orphan)(conversation, age_seconds=120)
    _, sock = await open_socket(alice_client, conversation.id)
    assert sock.sync["active_run"] is None
    [message] = sock.sync["messages"]
    assert message["status"] == "failed"
    assert message["error"]["code"] == "server_restart"
    assert message["content"] == "half a rep"
    await db(orphan.refresh_from_db)()
    assert orphan.status == "failed"
    await sock.send({"type": "message.send", "content": "works again"})
    frames = await sock.recv_until("message.completed")
    assert frames[-1]["message"]["status"] == "completed"
    await wait_for_no_runs()
    await sock.close()


async def test_it_leaves_a_live_reply_of_another_process_alone(
    alice_client: Client, conversation: Conversation
):
    await db(make_orphan)(conversation, age_seconds=2)
    _, sock = await open_socket(alice_client, conversation.id)
    assert sock.sync["active_run"]["content"] == "half a rep"
    await sock.close()


def test_it_never_reaps_a_reply_its_own_process_is_running(conversation: Conversation):
    """A reply this process runs is alive whatever its heartbeat says: a flush or a final
    save the database keeps refusing leaves the heartbeat stale, and the process's own reaper
    failed the live reply under it (tests/test_faults.py, connections killed every 0.15 s)."""
    orphan = make_orphan(conversation, age_seconds=120)
    assert services.reap_orphaned_runs(alive=[orphan.pk]) == []
    orphan.refresh_from_db()
    assert orphan.status == "streaming"
    [reaped] = services.reap_orphaned_runs()
    assert reaped["message"]["id"] == str(orphan.pk)


async def test_it_reaps_at_a_handshake_only_the_conversation_opened(
    alice: Any, alice_client: Client, conversation: Conversation, demo_agent: Agent
):
    """The handshake reaps what its sync would show as streaming, not every conversation's
    (the relay's reaper sweeps those): one query fewer per socket opened."""
    other = await db(Conversation.objects.create)(owner=alice, agent=demo_agent)
    elsewhere = await db(make_orphan)(other, age_seconds=120)
    here = await db(make_orphan)(conversation, age_seconds=120)
    _, sock = await open_socket(alice_client, conversation.id)
    assert [m["status"] for m in sock.sync["messages"]] == ["failed"]
    await sock.close()
    await db(here.refresh_from_db)()
    await db(elsewhere.refresh_from_db)()
    assert (here.status, elsewhere.status) == ("failed", "streaming")


def test_it_fails_every_streaming_reply_on_a_single_process_start(conversation: Conversation):
    orphan = make_orphan(conversation, age_seconds=0)
    call_command("bootstrap")
    orphan.refresh_from_db()
    assert orphan.status == "failed" and orphan.error_code == "server_restart"
    assert orphan.content == "half a rep"


# Dropped connections -------------------------------------------------------------------------


def test_it_runs_a_relay_write_again_on_a_connection_the_server_dropped(db: Any) -> None:
    """Health checks are off, so a connection killed while idle is found by the next call: the
    relay's writes then run once more on a new connection at once, not after a flush interval
    (connections killed every 0.15 s left every 0.3 s flush on a dead one)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend: PostgreSQL only")
    import psycopg

    from conversations.relay import _in_relay_thread_reconnecting
    from tests.cluster import PG_ADMIN

    connection.ensure_connection()
    connection.close_at = None  # kept between calls, as with production's CONN_MAX_AGE=60
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (connection.connection.info.backend_pid,))
    calls: list[int] = []

    def write() -> int:
        calls.append(1)
        return Message.objects.count()

    assert _in_relay_thread_reconnecting(write) == 0
    assert len(calls) == 2


def test_it_does_not_run_a_relay_write_again_after_a_statement_error() -> None:
    """A lock timeout or a deadlock is the statement's error, not the connection's: the
    caller's own handling (backoff, fencing) decides, the write is not repeated here."""
    from django.db import OperationalError

    from conversations.relay import _in_relay_thread_reconnecting

    class LockTimeout(Exception):
        sqlstate = "55P03"

    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        raise OperationalError("canceling statement due to lock timeout") from LockTimeout()

    with pytest.raises(OperationalError):
        _in_relay_thread_reconnecting(write)
    assert len(calls) == 1
