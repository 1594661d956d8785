"""The websocket Origin check matches scheme, host and port exactly, as Django's CSRF origin check
does (chatsite/origin.py): the request's own origin, or an entry of CSRF_TRUSTED_ORIGINS."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from chatsite.asgi import application
from chatsite.origin import origin_allowed, request_origin
from conversations.models import Conversation
from tests.wsclient import session_cookie

# The site as the issue found it: served at http://127.0.0.1:8301.
SITE_HOST = b"127.0.0.1:8301"
SITE_ORIGIN = b"http://127.0.0.1:8301"


async def handshake(client: Client, conversation: Conversation, headers: list[tuple[bytes, bytes]]
                    ) -> tuple[bool, Any]:
    comm = WebsocketCommunicator(application, f"/ws/conversations/{conversation.id}/",
                                 [*headers, (b"cookie", session_cookie(client))])
    connected, detail = await comm.connect(timeout=5)
    if connected:
        assert (await comm.receive_json_from(timeout=5))["type"] == "conversation.sync"
        await comm.disconnect()
    return connected, detail


def scope(origin: bytes | None, host: bytes = SITE_HOST, scheme: str = "ws",
          extra: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    headers = [(b"host", host), *(extra or [])]
    if origin is not None:
        headers.append((b"origin", origin))
    return {"type": "websocket", "scheme": scheme, "headers": headers,
            "server": ("127.0.0.1", 8301)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", [
    b"http://127.0.0.1:1",        # another port
    b"http://127.0.0.1",          # no port (80)
    b"https://127.0.0.1:8301",    # another scheme
    b"http://127.0.0.1:8301.evil.example",
    b"null",                      # sandboxed iframe, file://
])
async def test_it_refuses_origins_that_differ_in_scheme_host_or_port(
    alice_client: Client, conversation: Conversation, origin: bytes
):
    connected, code = await handshake(
        alice_client, conversation, [(b"host", SITE_HOST), (b"origin", origin)])
    assert connected is False
    assert code == 1000  # refused before accept: Daphne answers the handshake with HTTP 403


@pytest.mark.django_db(transaction=True)
async def test_it_accepts_the_sites_own_origin(alice_client: Client, conversation: Conversation):
    connected, _ = await handshake(
        alice_client, conversation, [(b"host", SITE_HOST), (b"origin", SITE_ORIGIN)])
    assert connected is True


@pytest.mark.django_db(transaction=True)
async def test_it_accepts_a_trusted_origin_and_refuses_its_neighbours(
    alice_client: Client, conversation: Conversation, settings: Any
):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    base = [(b"host", SITE_HOST)]
    assert (await handshake(alice_client, conversation,
                            [*base, (b"origin", b"https://chat.example.com")]))[0] is True
    for neighbour in (b"http://chat.example.com", b"https://chat.example.com:8443",
                      b"https://evil.chat.example.com"):
        assert (await handshake(alice_client, conversation,
                                [*base, (b"origin", neighbour)]))[0] is False, neighbour


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_a_missing_or_repeated_origin(
    alice_client: Client, conversation: Conversation
):
    assert (await handshake(alice_client, conversation, [(b"host", SITE_HOST)]))[0] is False
    twice = [(b"host", SITE_HOST), (b"origin", SITE_ORIGIN), (b"origin", SITE_ORIGIN)]
    assert (await handshake(alice_client, conversation, twice))[0] is False


def test_it_refuses_a_host_outside_allowed_hosts(settings: Any) -> None:
    # DNS rebinding: a page on evil.example talking to its own (rebound) name.
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    assert request_origin(scope(b"http://evil.example", host=b"evil.example")) is None
    assert origin_allowed(scope(b"http://evil.example", host=b"evil.example")) is False
    assert origin_allowed(scope(b"http://127.0.0.1:8301")) is True


def test_it_takes_the_scheme_from_the_scope() -> None:
    assert request_origin(scope(None, scheme="wss")) == "https://127.0.0.1:8301"
    assert origin_allowed(scope(b"https://127.0.0.1:8301", scheme="wss")) is True
    assert origin_allowed(scope(b"http://127.0.0.1:8301", scheme="wss")) is False
    # No Host header: the server's address stands in, as Django's get_host() does.
    no_host = {"type": "websocket", "scheme": "ws", "server": ("127.0.0.1", 8301),
               "headers": [(b"origin", b"http://127.0.0.1:8301")]}
    assert origin_allowed(no_host) is True


def test_it_honours_secure_proxy_ssl_header_as_django_does(settings: Any) -> None:
    proto_https = [(b"x-forwarded-proto", b"https")]
    # Not configured: the header is ignored (anyone can send it).
    settings.SECURE_PROXY_SSL_HEADER = None
    assert origin_allowed(scope(b"https://127.0.0.1:8301", extra=proto_https)) is False
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(scope(b"https://127.0.0.1:8301", extra=proto_https)) is True
    assert origin_allowed(scope(b"http://127.0.0.1:8301", extra=proto_https)) is False
    # The proxy said plain http: an https origin is not this request's.
    proto_http = [(b"x-forwarded-proto", b"http")]
    assert origin_allowed(scope(b"https://127.0.0.1:8301", scheme="wss", extra=proto_http)) is False


def test_it_supports_wildcard_trusted_origins_like_django(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    foreign_host = b"internal:9000"  # served behind a proxy under another name
    settings.ALLOWED_HOSTS = ["internal"]
    allowed = [b"https://chat.example.com", b"https://a.b.example.com", b"https://example.com"]
    refused = [b"http://chat.example.com", b"https://chat.example.com:8443",
               b"https://chat.example.com.evil.io", b"https://evilexample.com"]
    for origin in allowed:
        assert origin_allowed(scope(origin, host=foreign_host)) is True, origin
    for origin in refused:
        assert origin_allowed(scope(origin, host=foreign_host)) is False, origin
