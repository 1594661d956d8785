"""A websocket ends with its login session (conversations/sessions.py): logout closes that
session's sockets, deactivation and a password change close all the user's sockets (close code
4401, in every process), and a frame on a socket whose session is gone is refused."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.db import transaction
from django.test import Client
from django.utils import timezone
from websockets.exceptions import ConnectionClosed

from conversations.models import Agent, Conversation, Message
from conversations.sessions import session_group
from tests.cluster import (
    recv,
    seed,
    socket_to,
)
from tests.fakevendor import FakeVendor
from tests.livesrv import LiveServer
from tests.test_browser import (  # noqa: F401 - the real-browser fixtures
    browser,
    new_conversation,
    page,
    server,
)
from tests.wsclient import Socket, open_socket

# The in-process tests; the real-process ones below use their own servers' databases.
in_process = pytest.mark.django_db(transaction=True)

SESSION_ENDED = 4401
# The bound: every socket of the ended session is closed within 5 s.
CLOSE_WITHIN = 5.0


def db(fn: Any) -> Any:
    return database_sync_to_async(fn)


def logged_in(user: Any) -> Client:
    """Another browser: its own session for `user`."""
    client = Client()
    client.force_login(user)
    return client


async def closed_with(sock: Socket, timeout: float = CLOSE_WITHIN) -> int | None:
    """The close code the server sent, skipping any frames still queued before it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        out = await sock.comm.receive_output(timeout=max(0.01, deadline - loop.time()))
        if out["type"] == "websocket.close":
            return out.get("code")


async def still_open(sock: Socket) -> None:
    await sock.assert_usable()
    # Nothing more arrives but `presence` frames (another socket of the conversation closed).
    while not await sock.comm.receive_nothing(timeout=0.2):
        out = await sock.comm.receive_output(timeout=1)
        assert out["type"] == "websocket.send", out
        assert json.loads(out["text"])["type"] == "presence", out


# Pushed closes --------------------------------------------------------------------------------


@in_process
async def test_it_closes_only_the_logged_out_sessions_sockets(
    alice_client: Client, alice: Any, conversation: Conversation
):
    other_browser = await db(logged_in)(alice)
    _, tab1 = await open_socket(alice_client, conversation.id)
    _, tab2 = await open_socket(alice_client, conversation.id)
    _, elsewhere = await open_socket(other_browser, conversation.id)
    response = await db(alice_client.post)("/accounts/logout/")  # the real LogoutView
    assert response.status_code == 302
    assert await closed_with(tab1) == SESSION_ENDED
    assert await closed_with(tab2) == SESSION_ENDED
    await still_open(elsewhere)
    await elsewhere.close()


@in_process
async def test_it_closes_every_socket_of_a_deactivated_user(
    alice_client: Client, alice: Any, bob: Any, demo_agent: Agent, conversation: Conversation
):
    other_browser = await db(logged_in)(alice)
    bob_conversation = await db(Conversation.objects.create)(owner=bob, agent=demo_agent)
    _, one = await open_socket(alice_client, conversation.id)
    _, two = await open_socket(other_browser, conversation.id)
    _, bobs = await open_socket(await db(logged_in)(bob), bob_conversation.id)

    def deactivate() -> None:
        alice.is_active = False
        alice.save()

    await db(deactivate)()
    assert await closed_with(one) == SESSION_ENDED
    assert await closed_with(two) == SESSION_ENDED
    await still_open(bobs)
    await bobs.close()


@in_process
async def test_it_closes_every_socket_after_a_password_change(
    staff: Any, demo_agent: Agent
):
    conversation = await db(Conversation.objects.create)(owner=staff, agent=demo_agent)
    changer, other_browser = await db(logged_in)(staff), await db(logged_in)(staff)
    _, here = await open_socket(changer, conversation.id)
    _, there = await open_socket(other_browser, conversation.id)
    # Django's own password change view (update_session_auth_hash keeps `changer` logged in).
    response = await db(changer.post)("/admin/password_change/", {
        "old_password": "pw-root-123",
        "new_password1": "a-new-Passw0rd-9",
        "new_password2": "a-new-Passw0rd-9",
    })
    assert response.status_code == 302
    assert await closed_with(here) == SESSION_ENDED
    assert await closed_with(there) == SESSION_ENDED


@in_process
async def test_it_keeps_sockets_open_through_other_saves_and_rolled_back_changes(
    alice_client: Client, alice: Any, conversation: Conversation
):
    _, sock = await open_socket(alice_client, conversation.id)

    def harmless() -> None:
        alice.first_name = "Alice"
        alice.save()
        alice.last_login = timezone.now()
        alice.save(update_fields=["last_login"])  # what every login does
        try:
            with transaction.atomic():
                alice.is_active = False
                alice.save()
                raise RuntimeError("rolled back")
        except RuntimeError:
            alice.is_active = True

    await db(harmless)()
    await still_open(sock)
    await sock.close()


def test_it_names_session_groups_by_a_digest_never_the_key() -> None:
    key = "k" * 32
    group = session_group(key)
    assert key not in group
    assert group.startswith("session.") and len(group) == len("session.") + 32
    assert session_group(key) == group != session_group("j" * 32)


# Frames on a dead session ---------------------------------------------------------------------


def _session_key(client: Client) -> str:
    return client.cookies["sessionid"].value


@in_process
@pytest.mark.parametrize("how", ["deleted", "expired", "deactivated", "new_password"])
async def test_it_refuses_a_message_when_the_session_is_gone(
    alice_client: Client, alice: Any, conversation: Conversation, how: str
):
    _, sock = await open_socket(alice_client, conversation.id)
    key = _session_key(alice_client)
    users = get_user_model().objects.filter(pk=alice.pk)
    # Each change bypasses the signals (a raw UPDATE/DELETE, an expiry): only the guard sees it.
    change = {
        "deleted": lambda: Session.objects.filter(session_key=key).delete(),
        "expired": lambda: Session.objects.filter(session_key=key).update(
            expire_date=timezone.now() - timedelta(seconds=1)),
        "deactivated": lambda: users.update(is_active=False),
        "new_password": lambda: users.update(password=make_password("another-pw-456")),
    }[how]
    await db(change)()
    await sock.assert_usable()  # ping is not guarded: it changes nothing
    await sock.send({"type": "message.send", "content": "still there?", "client_id": "c-1"})
    refused = await sock.recv()
    assert refused["type"] == "error"
    assert refused["code"] == "not_authenticated"
    assert refused["message"] == "Your session has ended. Log in again to continue."
    assert refused["client_id"] == "c-1"  # the chat drops that message rather than resend it
    assert await closed_with(sock) == SESSION_ENDED
    assert await db(Message.objects.count)() == 0


@in_process
@pytest.mark.parametrize("frame", [
    {"type": "run.cancel"},
    {"type": "interrupt.resume", "interrupt_id": "i-1", "payload": "yes"},
])
async def test_it_refuses_cancel_and_resume_on_a_deleted_session(
    alice_client: Client, conversation: Conversation, frame: dict[str, Any]
):
    _, sock = await open_socket(alice_client, conversation.id)
    key = _session_key(alice_client)
    await db(lambda: Session.objects.filter(session_key=key).delete())()
    await sock.send(frame)
    assert (await sock.recv())["code"] == "not_authenticated"
    assert await closed_with(sock) == SESSION_ENDED


@in_process
async def test_it_refuses_the_handshake_of_a_deactivated_user(
    alice_client: Client, alice: Any, conversation: Conversation
):
    await db(get_user_model().objects.filter(pk=alice.pk).update)(is_active=False)
    connected, _ = await open_socket(alice_client, conversation.id)
    assert connected is False


# Across processes -----------------------------------------------------------------------------


async def _logout_through(target: LiveServer, session: str) -> float:
    """POST /accounts/logout/ on `target` as the browser would (CSRF cookie and header)."""
    async with httpx.AsyncClient(base_url=target.url, cookies={"sessionid": session},
                                 timeout=10) as http:
        page = await http.get("/")
        assert page.status_code == 200
        token = http.cookies["csrftoken"]
        started = time.monotonic()
        done = await http.post("/accounts/logout/", headers={"X-CSRFToken": token})
        assert done.status_code == 302
        return started


@pytest.mark.scaleout
async def test_it_closes_a_socket_on_another_process_when_the_user_logs_out(
    pair: list[LiveServer], migrated: LiveServer, vendor: FakeVendor,
):
    a, b = pair
    session, conversation_id = seed(migrated, vendor)
    other_session = migrated.session_for("dana")  # the same user in another browser
    on_b = await socket_to(b, session, conversation_id)
    on_a = await socket_to(a, session, conversation_id)
    elsewhere = await socket_to(b, other_session, conversation_id)
    for ws in (on_b, on_a, elsewhere):
        assert (await recv(ws))["type"] == "conversation.sync"
    started = await _logout_through(a, session)
    for ws in (on_b, on_a):
        with pytest.raises(ConnectionClosed):
            while True:
                await recv(ws, timeout=CLOSE_WITHIN)
        assert ws.close_code == SESSION_ENDED
    assert time.monotonic() - started < CLOSE_WITHIN
    # The same user's other session on process B is untouched.
    await elsewhere.send(json.dumps({"type": "ping"}))
    assert await recv(elsewhere) == {"type": "pong"}
    await elsewhere.close()


# In the browser ----------------------------------------------------------------------------------


@pytest.mark.browser
def test_it_shows_the_ended_session_and_stops_reconnecting(
    page: Any, server: LiveServer  # noqa: F811 - fixtures
) -> None:
    new_conversation(page, server, "Ends with the session")
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    # Log out in another tab of the same browser (same cookies), through the header's form.
    other = page.context.new_page()
    other.goto(server.url + "/")
    other.click("form.logout-form button[type=submit]")
    other.wait_for_url("**/accounts/login/**")
    page.wait_for_selector("#connection-banner:not([hidden])", timeout=CLOSE_WITHIN * 1000)
    assert page.text_content("#connection-banner-text") == "Your session has ended."
    assert page.text_content("#reload-link") == "Log in again"
    assert page.get_attribute("#connection-status", "data-state") == "offline"
    page.wait_for_timeout(2_000)  # the first retry would come after ~0.5 s
    assert sockets == []
    # The link leads to the login form, then back to this conversation.
    page.click("#reload-link")
    page.wait_for_url("**/accounts/login/?next=**")


def _session_of(user: Any, backend: str) -> Any:
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    from conversations.sessions import SocketSession

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = backend
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store, SocketSession(user_id=str(user.pk), session_key=store.session_key)


@pytest.mark.django_db
@pytest.mark.parametrize("backend", [
    "django.contrib.auth.backends.ModelBackend", "chatsite.oidc.OIDCBackend"])
def test_it_checks_a_database_session_and_its_user_in_one_statement(
        backend: str, django_assert_num_queries: Any) -> None:
    from conversations.sessions import SocketSession, session_is_valid

    user = get_user_model().objects.create_user("sam", password="pw-1")
    other = get_user_model().objects.create_user("kim", password="pw-2")
    store, session = _session_of(user, backend)
    with django_assert_num_queries(1):
        assert session_is_valid(session)
    # The session names another user than the socket was opened as; a malformed id.
    assert not session_is_valid(SocketSession(user_id=str(other.pk),
                                              session_key=session.session_key))
    assert not session_is_valid(SocketSession(user_id="not-a-number",
                                              session_key=session.session_key))
    Session.objects.filter(pk=store.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1))
    assert not session_is_valid(session)
    Session.objects.filter(pk=store.session_key).update(
        expire_date=timezone.now() + timedelta(hours=1))
    assert session_is_valid(session)
    user.set_password("pw-3")
    user.save()
    assert not session_is_valid(session)


@pytest.mark.django_db
def test_it_asks_the_backend_for_the_user_when_it_does_not_load_by_key() -> None:
    from conversations.sessions import session_is_valid

    user = get_user_model().objects.create_user("sam", password="pw-1")
    # django-axes' backend authenticates nobody and has no get_user to load one with.
    _, session = _session_of(user, "axes.backends.AxesStandaloneBackend")
    assert not session_is_valid(session)


@pytest.mark.django_db
def test_it_checks_sessions_kept_elsewhere_the_engines_way(settings: Any) -> None:
    from conversations.sessions import session_is_valid

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    user = get_user_model().objects.create_user("sam", password="pw-1")
    store, session = _session_of(user, "django.contrib.auth.backends.ModelBackend")
    assert session_is_valid(session)
    user.is_active = False
    user.save()
    assert not session_is_valid(session)
    user.is_active = True
    user.save()
    assert session_is_valid(session)
    store.delete()
    assert not session_is_valid(session)
