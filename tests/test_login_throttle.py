"""Login throttling (django-axes, chatsite/settings.py): 10 failures for one username from one
address lock that pair for 15 minutes, on the login page and the admin login alike; the client
address is REMOTE_ADDR unless TRUSTED_PROXY_COUNT says how many proxies to believe."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
LIMIT = 10


@pytest.fixture(autouse=True)
def _fast_hasher(settings: Any) -> None:
    """~90 password checks per file: the real hasher's cost is not what is tested here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def attempt(url: str, username: str, password: str, **meta: Any) -> Any:
    """One login POST from a fresh browser (no session to carry a lockout along)."""
    meta.setdefault("REMOTE_ADDR", "203.0.113.7")
    meta.setdefault("HTTP_ACCEPT_LANGUAGE", "en")
    return Client().post(url, {"username": username, "password": password,
                               "next": "/admin/" if url == ADMIN_LOGIN else "/"}, **meta)


def fail(url: str, username: str, times: int, **meta: Any) -> list[int]:
    return [attempt(url, username, "wrong-password", **meta).status_code for _ in range(times)]


def test_it_locks_the_pair_after_ten_failures(alice: Any):
    statuses = fail(LOGIN, "alice", LIMIT)
    # Nine wrong passwords redisplay the form; the tenth locks the pair.
    assert statuses == [200] * (LIMIT - 1) + [429]
    locked = attempt(LOGIN, "alice", "pw-alice-123")
    assert locked.status_code == 429  # the right password is refused too
    assert "sessionid" not in locked.cookies
    page = locked.content.decode()
    assert "Login locked" in page and "15 minutes" in page
    assert '<html lang="en" ' in page


def test_it_shows_the_lockout_page_in_the_requests_language(alice: Any):
    fail(LOGIN, "alice", LIMIT)
    page = attempt(LOGIN, "alice", "pw-alice-123", HTTP_ACCEPT_LANGUAGE="fr-CA")
    assert page.status_code == 429
    assert '<html lang="fr-ca" ' in page.content.decode()


def test_it_keeps_other_users_and_other_addresses_unlocked(alice: Any, bob: Any):
    fail(LOGIN, "alice", LIMIT)
    bob_login = attempt(LOGIN, "bob", "pw-bob-123")
    assert bob_login.status_code == 302 and "sessionid" in bob_login.cookies
    elsewhere = attempt(LOGIN, "alice", "pw-alice-123", REMOTE_ADDR="198.51.100.9")
    assert elsewhere.status_code == 302 and "sessionid" in elsewhere.cookies
    assert attempt(LOGIN, "alice", "pw-alice-123").status_code == 429


def test_it_does_not_lock_below_the_limit(alice: Any):
    assert fail(LOGIN, "alice", LIMIT - 1) == [200] * (LIMIT - 1)
    ok = attempt(LOGIN, "alice", "pw-alice-123")
    assert ok.status_code == 302 and ok["Location"] == "/"
    # A success starts the count again (AXES_RESET_ON_SUCCESS).
    assert fail(LOGIN, "alice", LIMIT - 1) == [200] * (LIMIT - 1)
    assert attempt(LOGIN, "alice", "pw-alice-123").status_code == 302


def test_it_throttles_the_admin_login_too(staff: Any):
    assert fail(ADMIN_LOGIN, "root", LIMIT) == [200] * (LIMIT - 1) + [429]
    locked = attempt(ADMIN_LOGIN, "root", "pw-root-123")
    assert locked.status_code == 429 and "sessionid" not in locked.cookies
    # Failures on either page count against the same pair.
    assert attempt(LOGIN, "root", "pw-root-123").status_code == 429


def test_it_ignores_x_forwarded_for_by_default(alice: Any):
    # Each attempt claims another address; all come from the same REMOTE_ADDR.
    for i in range(LIMIT):
        attempt(LOGIN, "alice", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
    assert attempt(LOGIN, "alice", "pw-alice-123",
                   HTTP_X_FORWARDED_FOR="192.0.2.200").status_code == 429


@pytest.mark.parametrize("forwarded_prefix", ["", "6.6.6.6, "])
def test_it_takes_the_address_from_one_trusted_proxy(
    alice: Any, settings: Any, forwarded_prefix: str
):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.1"}  # nginx in front; it appends the address it saw
    fail(LOGIN, "alice", LIMIT, HTTP_X_FORWARDED_FOR=forwarded_prefix + "192.0.2.1", **proxy)
    assert attempt(LOGIN, "alice", "pw-alice-123", HTTP_X_FORWARDED_FOR="192.0.2.1",
                   **proxy).status_code == 429
    # Anything left of the proxy's own entry came from the client and is not believed.
    assert attempt(LOGIN, "alice", "pw-alice-123", HTTP_X_FORWARDED_FOR="192.0.2.2, 192.0.2.1",
                   **proxy).status_code == 429
    other = attempt(LOGIN, "alice", "pw-alice-123", HTTP_X_FORWARDED_FOR="192.0.2.1, 192.0.2.2",
                    **proxy)
    assert other.status_code == 302


def test_it_reads_the_client_address_from_the_configured_proxy_count(settings: Any):
    from django.test import RequestFactory

    from conversations.ratelimit import client_ip

    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.1, 10.0.0.2"
    )
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request) == "192.0.2.1"
    settings.TRUSTED_PROXY_COUNT = 4  # more proxies than the header names: not theirs
    assert client_ip(request) == "10.0.0.1"
