"""Personal API tokens (issue 14, part 3): created on the settings page or with
`manage.py tokens`, shown once and stored hashed, revocable; `Authorization: Bearer` on the JSON
API with the user's permissions limited by the token's scopes, no CSRF, the same rate limits and
error shape."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from conversations import ratelimit, services
from conversations.models import ApiToken, Conversation
from conversations.services import tokens
from tests.conftest import csrf_headers, logged_in

pytestmark = pytest.mark.django_db

TOKEN_LINE = re.compile(r"cst_[A-Za-z0-9_-]{43}")
EXPORT = "/api/v1/conversations/export"


def make_token(user: Any, *scopes: str, lifetime: timedelta | None = timedelta(days=30),
               name: str = "script") -> tuple[ApiToken, str]:
    return services.create_token(user, name=name, scopes=list(scopes), lifetime=lifetime)


def bearer(secret: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def strict() -> Client:
    """No session, CSRF enforced: a script."""
    return Client(enforce_csrf_checks=True)


def assert_unauthenticated(r: Any) -> None:
    assert r.status_code == 401, r.content
    assert r["WWW-Authenticate"] == 'Bearer realm="chatsite"'
    error = r.json()["error"]
    assert error["code"] == "unauthenticated"
    assert error["message"]
    assert error["details"] == {}


# Creating: the command ------------------------------------------------------------------------


def test_it_creates_a_token_with_the_command_and_prints_it_alone_on_the_last_line(alice: Any):
    out = io.StringIO()
    call_command("tokens", "create", "alice", "--scope", "read", "--scope", "write",
                 "--expires", "90d", "--name", "ci", stdout=out)
    last = out.getvalue().rstrip("\n").split("\n")[-1]
    assert TOKEN_LINE.fullmatch(last)
    token = ApiToken.objects.get()
    assert token.user == alice
    assert token.name == "ci"
    assert token.scopes == ["read", "write"]
    assert token.prefix == last[:10]
    assert token.token_hash == hashlib.sha256(last.encode()).hexdigest()
    assert token.expires_at is not None
    days = (token.expires_at - token.created_at) / timedelta(days=1)
    assert days == pytest.approx(90)
    r = strict().get("/api/v1/conversations", **bearer(last))
    assert r.status_code == 200
    assert r.json()["data"] == []


@pytest.mark.parametrize(("expires", "lifetime"), [
    ("never", None), ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)),
    ("365D", timedelta(days=365)),
])
def test_it_accepts_the_commands_expiry_forms(alice: Any, expires: str, lifetime: Any):
    call_command("tokens", "create", "alice", "--scope", "review", "--expires", expires,
                 stdout=io.StringIO())
    token = ApiToken.objects.get()
    if lifetime is None:
        assert token.expires_at is None
    else:
        assert token.expires_at - token.created_at == lifetime


@pytest.mark.parametrize(("args", "message"), [
    (["create", "nobody", "--scope", "read"], "no user named 'nobody'"),
    (["create", "x" * 10_000, "--scope", "read"], "no such user"),
    (["create", "al\x00ice", "--scope", "read"], "no such user"),
    (["create", "alice"], "give at least one --scope"),
    (["create", "alice", "--scope", "admin"], "Unknown scope(s): admin"),
    (["create", "alice", "--scope", "read", "--expires", "soon"], "number of days or hours"),
    (["create", "alice", "--scope", "read", "--expires=-5d"], "number of days or hours"),
    (["create", "alice", "--scope", "read", "--expires", "0d"], "must be in the future"),
    (["create", "alice", "--scope", "read", "--expires", "999999d"], "at most 3650 days"),
    (["create", "alice", "--scope", "read", "--expires", "１２d"], "number of days or hours"),
    (["create", "alice", "--scope", "read", "--name", "  "], "Give the token a name"),
    (["create", "alice", "--scope", "read", "--name", "x" * 101], "at most 100 characters"),
    (["create", "alice", "--scope", "read", "--name", "a\x00b"], "plain text"),
    (["revoke", "abc"], "is not a token id"),
    (["revoke", "9" * 40], "is not a token id"),
    (["revoke", "²"], "is not a token id"),
    (["revoke", "12345"], "no token with id 12345"),
    (["list", "nobody"], "no user named 'nobody'"),
])
def test_it_refuses_hostile_command_arguments_clearly(alice: Any, args: list[str], message: str):
    with pytest.raises(CommandError) as caught:
        call_command("tokens", *args, stdout=io.StringIO())
    assert message in str(caught.value)
    assert ApiToken.objects.count() == 0


def test_it_lists_and_revokes_tokens_with_the_command(alice: Any, bob: Any):
    token, _secret = make_token(alice, "read", name="nightly")
    make_token(bob, "write", name="bobs")
    out = io.StringIO()
    call_command("tokens", "list", "alice", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].split("\t")[:5] == [str(token.pk), "alice", "nightly", f"{token.prefix}…",
                                        "read"]
    assert lines[0].endswith("\tactive")
    out = io.StringIO()
    call_command("tokens", "revoke", str(token.pk), stdout=out)
    assert out.getvalue() == f"revoked token {token.pk} ({token.prefix}…)\n"
    out = io.StringIO()
    call_command("tokens", "revoke", str(token.pk), stdout=out)
    assert out.getvalue() == f"token {token.pk} was already revoked\n"
    out = io.StringIO()
    call_command("tokens", "list", stdout=out)
    states = sorted(line.rsplit("\t", 1)[1] for line in out.getvalue().splitlines())
    assert states == ["active", "revoked"]


# Creating and revoking: the settings page -----------------------------------------------------


def test_it_creates_a_token_on_the_settings_page_and_shows_it_once(alice: Any):
    client = logged_in(alice)
    r = client.post("/settings/tokens", {"name": "Export job", "scopes": ["read", "review"],
                                         "expires": "365"})
    assert r.status_code == 200
    page = r.content.decode()
    secret = TOKEN_LINE.search(page).group()
    token = ApiToken.objects.get()
    assert (token.name, token.scopes) == ("Export job", ["read", "review"])
    assert token.expires_at - token.created_at == timedelta(days=365)
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert "it will not be shown again" in page
    assert 'data-copy-target="new-token"' in page
    assert r["Cache-Control"] == "private, no-store"
    # The list shows it by prefix; the token itself is gone for good.
    again = client.get("/settings/").content.decode()
    assert secret not in again
    assert f"{token.prefix}…" in again
    assert "Export job" in again


@pytest.mark.parametrize("form", [
    {"name": "x", "expires": "30"},  # no scope
    {"name": "x", "scopes": ["root"], "expires": "30"},
    {"name": "x", "scopes": ["read"], "expires": "7"},
    {"name": "x", "scopes": ["read"], "expires": "99999999999999999999"},
    {"name": "", "scopes": ["read"], "expires": "30"},
    {"name": "x" * 101, "scopes": ["read"], "expires": "30"},
    {"name": "   ", "scopes": ["read"], "expires": "never"},
])
def test_it_refuses_a_bad_token_form_and_creates_nothing(alice: Any, form: dict[str, Any]):
    r = logged_in(alice).post("/settings/tokens", form)
    assert r.status_code == 422
    assert 'class="field has-errors"' in r.content.decode()
    assert ApiToken.objects.count() == 0


def test_it_revokes_from_the_settings_page_with_csrf_and_only_ones_own(alice: Any, bob: Any):
    token, secret = make_token(alice, "read")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/settings/")
    url = f"/settings/tokens/{token.pk}/revoke"
    assert client.post(url).status_code == 403  # no CSRF token: refused, still live
    token.refresh_from_db()
    assert token.revoked_at is None
    # Bob cannot revoke it: the same answer as an id that does not exist.
    r = logged_in(bob).post(url, follow=True)
    assert "No such token." in r.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None
    r = client.post(url, **csrf_headers(client), follow=True)
    assert r.status_code == 200
    assert "Token “script” revoked." in r.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert_unauthenticated(strict().get("/api/v1/conversations", **bearer(secret)))


def test_it_sends_the_audit_signals_on_commit(alice: Any, django_capture_on_commit_callbacks):
    seen: list[tuple[str, Any, Any]] = []

    def created(sender: Any, token: ApiToken, actor: Any, **kwargs: Any) -> None:
        seen.append(("created", token.pk, actor))

    def revoked(sender: Any, token: ApiToken, actor: Any, **kwargs: Any) -> None:
        seen.append(("revoked", token.pk, actor))

    services.token_created.connect(created)
    services.token_revoked.connect(revoked)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            token, _secret = services.create_token(alice, name="x", scopes=["read"],
                                                   lifetime=None, actor=alice)
            assert seen == []  # not before the commit
        with django_capture_on_commit_callbacks(execute=True):
            services.revoke_token(token, actor=None)
        with django_capture_on_commit_callbacks(execute=True):
            services.revoke_token(token, actor=None)  # already revoked: no second signal
    finally:
        services.token_created.disconnect(created)
        services.token_revoked.disconnect(revoked)
    assert seen == [("created", token.pk, alice), ("revoked", token.pk, None)]


# Using a token: scopes -----------------------------------------------------------------------


def test_it_reads_with_the_read_scope_and_refuses_without_it(alice: Any, conversation: Any):
    _t, reader = make_token(alice, "read")
    r = strict().get("/api/v1/conversations", **bearer(reader))
    assert r.status_code == 200
    assert [c["id"] for c in r.json()["data"]] == [str(conversation.pk)]
    _t, writer = make_token(alice, "write")
    r = strict().get(f"/api/v1/conversations/{conversation.pk}", **bearer(writer))
    assert r.status_code == 403
    assert r.json()["error"] == {"code": "forbidden",
                                 "message": "This API token lacks the “read” scope.",
                                 "details": {"scope": "read"}}


def test_it_writes_with_the_write_scope_and_no_csrf_token(alice: Any, demo_agent: Any):
    _t, writer = make_token(alice, "write")
    r = strict().post("/api/v1/conversations", json.dumps({"title": "From a script"}),
                      content_type="application/json", **bearer(writer))
    assert r.status_code == 201, r.content
    created = Conversation.objects.get()
    assert (created.owner, created.title) == (alice, "From a script")
    r = strict().patch(f"/api/v1/conversations/{created.pk}", json.dumps({"title": "Renamed"}),
                       content_type="application/json", **bearer(writer))
    assert r.status_code == 200
    assert r.json()["title"] == "Renamed"


def test_it_refuses_a_write_without_the_write_scope(alice: Any, conversation: Any):
    _t, reader = make_token(alice, "read", "review")
    r = strict().post("/api/v1/conversations", "{}", content_type="application/json",
                      **bearer(reader))
    assert r.status_code == 403
    assert r.json()["error"]["details"] == {"scope": "write"}
    r = strict().delete(f"/api/v1/conversations/{conversation.pk}", **bearer(reader))
    assert r.status_code == 403
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_it_needs_the_review_scope_and_the_reviewer_role_for_review_endpoints(
        alice: Any, reviewer: Any, conversation: Any):
    _t, review = make_token(reviewer, "review")
    r = strict().get(EXPORT, {"format": "jsonl"}, **bearer(review))
    assert r.status_code == 200
    lines = [json.loads(line) for line in b"".join(r.streaming_content).splitlines()]
    assert [line["id"] for line in lines] == [str(conversation.pk)]
    assert strict().get("/api/v1/review/queues", **bearer(review)).status_code == 200
    # A reviewer's read token: the user may, the token may not.
    _t, read = make_token(reviewer, "read", "write")
    r = strict().get(EXPORT, {"format": "jsonl"}, **bearer(read))
    assert r.status_code == 403
    assert r.json()["error"]["details"] == {"scope": "review"}
    r = strict().post("/api/v1/scores", "{}", content_type="application/json", **bearer(read))
    assert r.json()["error"]["details"] == {"scope": "review"}
    # alice's review token: the token may, the user may not (the user's own 403).
    _t, alices = make_token(alice, "review")
    r = strict().get(EXPORT, {"format": "jsonl"}, **bearer(alices))
    assert r.status_code == 403
    assert r.json()["error"] == {"code": "forbidden", "details": {},
                                 "message": "You are not allowed to export conversations."}


def test_it_enforces_team_access_through_a_token(alice: Any, bob: Any, conversation: Any):
    _t, bobs = make_token(bob, "read", "write")
    r = strict().get(f"/api/v1/conversations/{conversation.pk}", **bearer(bobs))
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = strict().delete(f"/api/v1/conversations/{conversation.pk}", **bearer(bobs))
    assert r.status_code == 404
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert strict().get("/api/v1/conversations", **bearer(bobs)).json()["data"] == []


# Refused tokens -------------------------------------------------------------------------------


def _refused_headers(alice: Any) -> dict[str, str]:
    _t, expired = make_token(alice, "read")
    ApiToken.objects.filter(pk=_t.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked_token, revoked = make_token(alice, "read")
    services.revoke_token(revoked_token)
    unknown = "cst_" + "A" * 43
    return {
        "expired": f"Bearer {expired}",
        "revoked": f"Bearer {revoked}",
        "unknown": f"Bearer {unknown}",
        "empty": "Bearer",
        "spaces": "Bearer    ",
        "short": "Bearer cst_abc",
        "no prefix": "Bearer " + "A" * 47,
        "two tokens": f"Bearer {unknown} {unknown}",
        "huge": "Bearer " + "cst_" + "A" * 100_000,
        "non-ascii": "Bearer cst_" + "é" * 43,
        "nul": "Bearer cst_" + "\x00" * 43,
        "lower-case scheme": f"bearer {unknown}",
    }


def test_it_answers_401_to_every_refused_token_cleanly(alice: Any, caplog: Any):
    headers = _refused_headers(alice)
    caplog.set_level(logging.DEBUG)
    for case, header in headers.items():
        r = strict().get("/api/v1/conversations", HTTP_AUTHORIZATION=header)
        assert r.status_code == 401, case
        assert_unauthenticated(r)
        r = strict().post("/api/v1/conversations", "{}", content_type="application/json",
                          HTTP_AUTHORIZATION=header)
        assert_unauthenticated(r)
    assert Conversation.objects.count() == 0
    assert not [rec for rec in caplog.records if rec.exc_info or rec.levelno >= logging.ERROR]


def test_it_names_why_a_token_is_refused(alice: Any):
    headers = _refused_headers(alice)
    messages = {case: strict().get("/api/v1/conversations", HTTP_AUTHORIZATION=h)
                .json()["error"]["message"] for case, h in headers.items()}
    assert messages["expired"] == "The bearer token has expired."
    assert messages["revoked"] == "The bearer token has been revoked."
    assert messages["unknown"] == "The bearer token is not valid."
    assert messages["short"] == "The bearer token is malformed."
    assert messages["huge"] == "The Authorization header is too long."


def test_it_refuses_an_inactive_users_token(alice: Any):
    _t, secret = make_token(alice, "read")
    alice.is_active = False
    alice.save()
    assert_unauthenticated(strict().get("/api/v1/conversations", **bearer(secret)))


def test_it_answers_401_with_the_new_code_to_anonymous_requests(db: Any):
    assert_unauthenticated(Client().get("/api/v1/conversations"))


# Tokens and sessions --------------------------------------------------------------------------


def test_it_authenticates_by_the_bearer_only_when_a_session_is_sent_too(
        alice: Any, bob: Any, conversation: Any):
    bobs_session = logged_in(bob)
    _t, alices = make_token(alice, "read")
    r = bobs_session.get("/api/v1/conversations", **bearer(alices))
    assert [c["id"] for c in r.json()["data"]] == [str(conversation.pk)]
    # A refused bearer is refused, even with a good session beside it.
    alices_session = logged_in(alice)
    assert_unauthenticated(alices_session.get("/api/v1/conversations",
                                              HTTP_AUTHORIZATION="Bearer cst_nope"))


def test_it_still_needs_csrf_for_a_session_request(api_client: Client, demo_agent: Any):
    r = api_client.post("/api/v1/conversations", "{}", content_type="application/json")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "csrf_failed"
    # Another scheme (a proxy's Basic auth) neither authenticates nor skips CSRF.
    r = api_client.post("/api/v1/conversations", "{}", content_type="application/json",
                        HTTP_AUTHORIZATION="Basic YWxpY2U6cHc=")
    assert r.json()["error"]["code"] == "csrf_failed"
    r = api_client.get("/api/v1/conversations", HTTP_AUTHORIZATION="Basic YWxpY2U6cHc=")
    assert r.status_code == 200
    assert Conversation.objects.count() == 0


def test_it_applies_bearer_tokens_to_the_api_only(alice: Any):
    _t, secret = make_token(alice, "read", "write", "review")
    r = strict().get("/settings/", **bearer(secret))
    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/")
    r = strict().get("/admin/", **bearer(secret))
    assert r.status_code == 302


# Rate limits, last use ------------------------------------------------------------------------


def test_it_counts_token_writes_in_the_users_write_budget(
        alice: Any, demo_agent: Any, settings: Any):
    settings.RATE_LIMIT_WRITES_PER_MINUTE = 2
    settings.REDIS_URL = ""
    left = ratelimit.WINDOW - timezone.now().timestamp() % ratelimit.WINDOW
    if left < 5:
        import time

        time.sleep(left + 0.05)
    _t, secret = make_token(alice, "write")
    session = logged_in(alice)
    session.get("/")
    ok = session.post("/api/v1/conversations", "{}", content_type="application/json",
                      **csrf_headers(session))
    assert ok.status_code == 201
    assert strict().post("/api/v1/conversations", "{}", content_type="application/json",
                         **bearer(secret)).status_code == 201
    r = strict().post("/api/v1/conversations", "{}", content_type="application/json",
                      **bearer(secret))
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r["Retry-After"]) <= 60
    assert Conversation.objects.count() == 2


def test_it_records_the_last_use_at_most_once_a_minute(
        alice: Any, django_assert_num_queries: Any):
    token, secret = make_token(alice, "read")
    assert token.last_used_at is None
    before = timezone.now()
    assert strict().get("/api/v1/conversations", **bearer(secret)).status_code == 200
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and first >= before
    strict().get("/api/v1/conversations", **bearer(secret))
    token.refresh_from_db()
    assert token.last_used_at == first  # within the minute: not written again
    with django_assert_num_queries(1):
        tokens.authenticate(f"Bearer {secret}")  # the lookup only, no UPDATE
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    strict().get("/api/v1/conversations", **bearer(secret))
    token.refresh_from_db()
    assert token.last_used_at > first


# Secrecy --------------------------------------------------------------------------------------


def test_it_keeps_the_token_out_of_the_database_and_the_logs(
        alice: Any, conversation: Any, caplog: Any):
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    call_command("tokens", "create", "alice", "--scope", "read", stdout=out)
    secret = out.getvalue().splitlines()[-1]
    client = logged_in(alice)
    page = client.post("/settings/tokens", {"name": "web", "scopes": ["write"],
                                            "expires": "never"})
    web_secret = TOKEN_LINE.search(page.content.decode()).group()
    for s in (secret, web_secret):
        strict().get("/api/v1/conversations", **bearer(s))
        strict().get("/api/v1/nowhere", **bearer(s))
        strict().post("/api/v1/conversations", "{", content_type="application/json", **bearer(s))
    strict().get("/api/v1/conversations", HTTP_AUTHORIZATION=f"Bearer {secret[:-1]}x")
    for row in ApiToken.objects.values():
        dumped = json.dumps(row, default=str)
        assert secret not in dumped and web_secret not in dumped
        assert secret[10:] not in dumped and web_secret[10:] not in dumped
    from django.contrib.sessions.models import Session

    for session in Session.objects.all():
        decoded = json.dumps(session.get_decoded())
        assert secret not in decoded and web_secret not in decoded
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert caplog.records  # the 4xx answers were logged, without the token
    assert secret[10:] not in logged and web_secret[10:] not in logged


# Admin ----------------------------------------------------------------------------------------


def test_it_lists_and_revokes_tokens_in_the_admin_without_the_hash(
        alice: Any, staff_client: Client, reviewer_client: Client):
    token, _secret = make_token(alice, "read", name="nightly")
    page = staff_client.get("/admin/conversations/apitoken/").content.decode()
    assert "nightly" in page and f"{token.prefix}…" in page
    assert token.token_hash not in page
    detail = staff_client.get(f"/admin/conversations/apitoken/{token.pk}/change/")
    assert detail.status_code == 200
    assert token.token_hash not in detail.content.decode()
    assert staff_client.get("/admin/conversations/apitoken/add/").status_code == 403
    # Reviewers do not see other people's tokens.
    assert reviewer_client.get("/admin/conversations/apitoken/").status_code == 403
    r = staff_client.post("/admin/conversations/apitoken/", {
        "action": "revoke_tokens", "_selected_action": [token.pk]}, follow=True)
    assert "1 token revoked." in r.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
