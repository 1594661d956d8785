"""Single sign-on (issue 14, part 1; chatsite/oidc.py, services/identity.py, docs/sso.md):
the group-map parser and mapping on their own, then the whole code flow against a real
OpenID provider (tests/oidc_provider/, django-oauth-toolkit) started as its own process.
The browser tests are in tests/test_browser_sso.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client

from chatsite import oidc
from conversations.models import ExternalIdentity, Team, TeamMembership
from conversations.services import identity, teams
from conversations.services.identity import Grant, GroupMapError, parse_group_map
from tests.conftest import ensure_reviewer_group
from tests.livesrv import free_port
from tests.oidc_op import Provider, provider, sign_in_at_provider

CLIENT_ID = "chatsite-inprocess"
SECRET = "inprocess-secret-0b9f"
GROUP_MAP = ("support-billing=team:billing, leads=team:billing:lead, qa=reviewer, "
             "it-admins=staff, /sales=team:sales")


def no_tracebacks(caplog: Any) -> None:
    assert not [r for r in caplog.records if r.exc_info], "no traceback may be logged"
    assert "Traceback" not in caplog.text


# The group map ---------------------------------------------------------------------------------


def test_it_parses_a_group_map():
    parsed = parse_group_map(GROUP_MAP + ",")
    assert parsed.entries == (
        ("support-billing", Grant("team", "billing")),
        ("leads", Grant("team", "billing", lead=True)),
        ("qa", Grant("reviewer")),
        ("it-admins", Grant("staff")),
        ("/sales", Grant("team", "sales")),
    )
    assert parsed.manages_teams == {"billing", "sales"}
    assert parsed.manages_reviewer and parsed.manages_staff
    assert parse_group_map("").entries == ()
    # The last '=' splits, so a group may hold one (LDAP-style names).
    assert parse_group_map("cn=ops=staff").entries == (("cn=ops", Grant("staff")),)
    assert parse_group_map("a=team:x:member").entries == (("a", Grant("team", "x")),)


@pytest.mark.parametrize(("text", "says"), [
    ("qa", "is not GROUP=ROLE"),
    ("=staff", "has no group"),
    ("qa=admin", "the role must be"),
    ("qa=team:", "is not a team slug"),
    ("qa=team:bad slug", "is not a team slug"),
    ("qa=team:x:owner", "the role must be"),
    ("qa=team:x:lead:y", "the role must be"),
    ("qa=team:" + "x" * 65, "is not a team slug"),
    ("q\x00a=staff", "control character"),
    ("ok=staff,bad\nline=staff", "entry 2"),
    ("g" * 256 + "=staff", "at most 255"),
    ("qa=STAFF", "the role must be"),
])
def test_it_refuses_a_bad_group_map_entry(text: str, says: str):
    with pytest.raises(GroupMapError) as caught:
        parse_group_map(text)
    assert says in str(caught.value)
    assert "OIDC_GROUP_MAP entry" in str(caught.value)


def test_it_refuses_to_start_with_a_bad_group_map(settings: Any):
    settings.OIDC_GROUP_MAP = "qa=reviewer,it-admins"
    with pytest.raises(SystemCheckError, match=r"chatsite.E002"):
        call_command("check")
    # Daphne runs no checks: the middleware stops the application from loading.
    with pytest.raises(ImproperlyConfigured, match=r"entry 2 \('it-admins'\).*chatsite.E002"):
        oidc.SSOSettingsRequired(lambda request: None)
    settings.OIDC_GROUP_MAP = ""
    settings.OIDC_ISSUER = "http://127.0.0.1:9/o"
    settings.OIDC_CLIENT_ID = ""
    with pytest.raises(ImproperlyConfigured, match="OIDC_CLIENT_ID is empty"):
        oidc.SSOSettingsRequired(lambda request: None)


@pytest.mark.parametrize(("claim", "groups"), [
    (["a", "b", "a"], {"a", "b"}),
    ("solo", {"solo"}),
    (None, set()),
    (42, set()),
    ({"a": 1}, set()),
    (["ok", 3, None, {"x": 1}, "", "z" * 300], {"ok"}),
])
def test_it_reads_only_strings_from_the_groups_claim(claim: Any, groups: set[str]):
    assert identity.groups_from_claims({"groups": claim}, "groups") == groups


# The mapping ---------------------------------------------------------------------------------


@pytest.fixture
def billing(db: Any) -> Team:
    return teams.create_team("billing", "Billing")


def test_it_sets_the_managed_roles_to_exactly_what_the_groups_say(alice: Any, billing: Team):
    ensure_reviewer_group()
    other = teams.create_team("other", "Other")
    teams.add_member(other, alice)
    gmap = parse_group_map(GROUP_MAP)

    changes = identity.apply_group_map(alice, {"support-billing", "qa", "unmapped"}, gmap)
    alice.refresh_from_db()
    assert changes.joined == ["billing:member"] and changes.reviewer is True
    assert changes.staff is True and alice.is_staff
    assert alice.groups.filter(name="reviewer").exists()
    assert TeamMembership.objects.get(user=alice, team=billing).role == "member"
    assert changes.missing_teams == ["sales"]

    changes = identity.apply_group_map(alice, {"support-billing", "leads"}, gmap)
    alice.refresh_from_db()
    assert changes.joined == ["billing:lead"] and changes.reviewer is False
    assert changes.staff is False and not alice.is_staff
    assert TeamMembership.objects.get(user=alice, team=billing).role == "lead"

    changes = identity.apply_group_map(alice, set(), gmap)
    assert changes.left == ["billing"] and changes.staff is None
    assert not TeamMembership.objects.filter(user=alice, team=billing).exists()
    # A team the map never names is not the map's to take away.
    assert TeamMembership.objects.filter(user=alice, team=other).exists()
    assert not identity.apply_group_map(alice, set(), gmap)  # nothing left to change


def test_it_leaves_staff_alone_when_the_map_does_not_manage_it(alice: Any, billing: Team):
    alice.is_staff = True
    alice.save()
    identity.apply_group_map(alice, set(), parse_group_map("support-billing=team:billing"))
    alice.refresh_from_db()
    assert alice.is_staff


def test_it_never_demotes_a_superuser(staff: Any):
    identity.apply_group_map(staff, set(), parse_group_map("it-admins=staff"))
    staff.refresh_from_db()
    assert staff.is_staff and staff.is_superuser


def test_it_warns_once_about_a_missing_team(alice: Any, caplog: Any):
    identity._warned_missing.discard("ghost")
    caplog.set_level(logging.WARNING)
    gmap = parse_group_map("g=team:ghost")
    identity.apply_group_map(alice, {"g"}, gmap)
    identity.apply_group_map(alice, {"g"}, gmap)
    warnings = [r for r in caplog.records if "ghost" in r.getMessage()]
    assert len(warnings) == 1 and "does not exist" in warnings[0].getMessage()
    assert not Team.objects.filter(slug="ghost").exists()


def test_it_links_users_by_subject_and_makes_usernames_unique(alice: Any):
    claims = {"sub": "s-1", "preferred_username": "alice", "email": "alice@example.com"}
    user = identity.user_for_identity("https://idp.example", "s-1", claims)
    assert user.pk != alice.pk and user.username == "alice-2"
    assert not user.has_usable_password()
    # The same subject with another e-mail is the same user; the e-mail follows the provider.
    again = identity.user_for_identity("https://idp.example", "s-1",
                                       {**claims, "email": "new@example.com"})
    assert again.pk == user.pk and again.email == "new@example.com"
    # The same subject at another issuer is someone else.
    other = identity.user_for_identity("https://other.example", "s-1", claims)
    assert other.pk not in (user.pk, alice.pk) and other.username == "alice-3"
    odd = identity.user_for_identity("https://idp.example", "s-2",
                                     {"sub": "s-2", "preferred_username": "Zoë <b>\x00",
                                      "email": 5, "given_name": "x\ny"})
    assert odd.username == "Zoëb" and odd.email == "" and odd.first_name == ""


# The code flow against the real provider -----------------------------------------------------


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    with provider(tmp_path_factory.mktemp("op")) as p:
        p.client(CLIENT_ID, SECRET, "http://testserver")
        p.user("pat", "pat-pw-123", "support-billing", "qa")
        yield p


@pytest.fixture
def sso(settings: Any, op: Provider, billing: Team) -> Provider:
    ensure_reviewer_group()
    settings.OIDC_ISSUER = op.issuer
    settings.OIDC_CLIENT_ID = CLIENT_ID
    settings.OIDC_CLIENT_SECRET = SECRET
    settings.OIDC_GROUP_MAP = GROUP_MAP
    settings.OIDC_PROVIDER_NAME = "Example SSO"
    oidc.forget_discovery()
    return op


def start(client: Client) -> str:
    started = client.get("/oidc/authenticate/?next=/settings/")
    assert started.status_code == 302
    return str(started["Location"])


PAT_PASSWORD = "pat-pw-123"


def login(client: Client, username: str = "pat", password: str = PAT_PASSWORD) -> Any:
    back = sign_in_at_provider(start(client), username, password)
    parts = urlsplit(back)
    assert parts.path == "/oidc/callback/"
    return client.get(f"{parts.path}?{parts.query}")


def test_it_logs_in_through_the_provider_with_pkce_state_and_nonce(sso: Provider, billing: Team):
    client = Client()
    query = parse_qs(urlsplit(start(client)).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) == 32 and len(query["nonce"][0]) == 32
    assert query["scope"] == ["openid email profile"] and query["client_id"] == [CLIENT_ID]

    done = login(client)
    assert done.status_code == 302 and done["Location"] == "/settings/"
    user = get_user_model().objects.get(username="pat")
    assert int(client.session["_auth_user_id"]) == user.pk
    assert client.session[oidc.SSO_SESSION_KEY] == sso.issuer
    ident = ExternalIdentity.objects.get(user=user)
    assert ident.issuer == sso.issuer and ident.subject.isdigit()
    assert user.email == "pat@example.com" and not user.has_usable_password()
    # support-billing → billing member; qa → reviewer (with the admin access it needs).
    assert TeamMembership.objects.get(user=user, team=billing).role == "member"
    assert user.groups.filter(name="reviewer").exists() and user.is_staff
    assert client.get("/").status_code == 200


def test_it_removes_a_role_whose_group_was_removed(sso: Provider, billing: Team):
    sso.user("quinn", "quinn-pw-123", "support-billing", "qa", "it-admins")
    assert login(Client(), "quinn", "quinn-pw-123").status_code == 302
    user = get_user_model().objects.get(username="quinn")
    other = teams.create_team("other", "Other")
    teams.add_member(other, user)
    assert user.is_staff and TeamMembership.objects.filter(user=user, team=billing).exists()

    sso.user("quinn", "quinn-pw-123", "leads")
    assert login(Client(), "quinn", "quinn-pw-123").status_code == 302
    user.refresh_from_db()
    assert TeamMembership.objects.get(user=user, team=billing).role == "lead"
    assert not user.groups.filter(name="reviewer").exists() and not user.is_staff
    assert TeamMembership.objects.filter(user=user, team=other).exists()
    assert ExternalIdentity.objects.filter(user=user).count() == 1


def test_it_refuses_a_tampered_or_replayed_callback(sso: Provider, caplog: Any):
    caplog.set_level(logging.INFO)
    client = Client()
    back = urlsplit(sign_in_at_provider(start(client), "pat", "pat-pw-123"))
    query = parse_qs(back.query)
    forged = client.get(f"/oidc/callback/?code={query['code'][0]}&state=forged")
    assert forged.status_code == 400
    assert "not started here" in forged.content.decode()
    assert "_auth_user_id" not in client.session
    # Another browser (no session) bringing the right code and state back is refused too.
    stranger = Client().get(f"{back.path}?{back.query}")
    assert stranger.status_code == 400 and "_auth_user_id" not in stranger.wsgi_request.session
    # A forged code with the right state: the provider refuses it, the page says so.
    client2 = Client()
    back2 = parse_qs(urlsplit(sign_in_at_provider(start(client2), "pat", "pat-pw-123")).query)
    wrong = client2.get(f"/oidc/callback/?code=forged&state={back2['state'][0]}")
    assert wrong.status_code == 502 and "could not be used" in wrong.content.decode()
    # And its state is spent: the real code cannot follow.
    replay = client2.get(f"/oidc/callback/?code={back2['code'][0]}&state={back2['state'][0]}")
    assert replay.status_code == 400 and "_auth_user_id" not in client2.session
    denied = Client().get("/oidc/callback/?error=access_denied&state=x")
    assert denied.status_code == 403
    assert "Example SSO did not sign you in" in denied.content.decode()
    no_tracebacks(caplog)


def test_it_refuses_a_disabled_account(sso: Provider):
    assert login(Client()).status_code == 302
    get_user_model().objects.filter(username="pat").update(is_active=False)
    refused = login(Client())
    assert refused.status_code == 403 and "disabled" in refused.content.decode()


def test_it_shows_a_clear_page_when_the_provider_is_unreachable(sso: Provider, settings: Any,
                                                                 caplog: Any):
    caplog.set_level(logging.INFO)
    settings.OIDC_ISSUER = f"http://127.0.0.1:{free_port()}/o"
    oidc.forget_discovery()
    page = Client().get("/oidc/authenticate/")
    assert page.status_code == 502
    assert "Example SSO cannot be reached right now" in page.content.decode()
    # A document that names another issuer is not used either (localhost ≠ 127.0.0.1).
    settings.OIDC_ISSUER = sso.issuer.replace("127.0.0.1", "localhost")
    oidc.forget_discovery()
    assert Client().get("/oidc/authenticate/").status_code == 502
    assert "names another issuer" in caplog.text
    no_tracebacks(caplog)


def test_it_logs_out_here_and_at_the_provider(sso: Provider, alice_client: Client):
    client = Client()
    assert login(client).status_code == 302
    out = client.post("/accounts/logout/")
    assert out.status_code == 302
    end = urlsplit(out["Location"])
    assert f"{end.scheme}://{end.netloc}{end.path}" == f"{sso.issuer}/logout/"
    assert parse_qs(end.query) == {"client_id": [CLIENT_ID], "post_logout_redirect_uri":
                                   ["http://testserver/accounts/login/"]}
    assert "_auth_user_id" not in client.session
    # A password user's logout stays here.
    password_out = alice_client.post("/accounts/logout/")
    assert password_out["Location"] == "/accounts/login/"
    assert alice_client.get("/accounts/logout/").status_code == 405


def test_it_keeps_everything_off_without_an_issuer(alice: Any):
    page = Client().get("/accounts/login/").content.decode()
    assert 'id="sso-login"' not in page and 'name="password"' in page
    assert Client().get("/oidc/authenticate/").status_code == 404
    assert Client().get("/oidc/callback/?code=a&state=b").status_code == 404
    assert Client().post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"}
                         ).status_code == 302


def test_it_offers_both_ways_in_unless_sso_only(sso: Provider, alice: Any, settings: Any):
    page = Client().get("/accounts/login/?next=/settings/").content.decode()
    assert "Sign in with Example SSO" in page and 'name="password"' in page
    assert 'href="/oidc/authenticate/?next=/settings/"' in page
    assert Client().post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"}
                         ).status_code == 302

    settings.SSO_ONLY = True
    page = Client().get("/accounts/login/").content.decode()
    assert "Sign in with Example SSO" in page and 'name="password"' not in page
    refused = Client().post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert refused.status_code == 403 and "sessionid" not in refused.cookies
    assert "Password sign-in is turned off" in refused.content.decode()


def test_it_keeps_a_superuser_break_glass_login_in_the_admin(sso: Provider, settings: Any,
                                                             staff: Any, reviewer: Any):
    settings.SSO_ONLY = True
    reviewer.set_password("pw-rita-123")
    reviewer.save()
    data = {"next": "/admin/"}
    root = Client().post("/admin/login/", {**data, "username": "root", "password": "pw-root-123"})
    assert root.status_code == 302 and root["Location"] == "/admin/"
    rita = Client().post("/admin/login/", {**data, "username": "rita", "password": "pw-rita-123"})
    assert rita.status_code == 200 and "sessionid" not in rita.cookies
    assert "Please enter the correct username and password" in rita.content.decode()
    # Without SSO_ONLY, staff keep their password login to the admin.
    settings.SSO_ONLY = False
    rita = Client().post("/admin/login/", {**data, "username": "rita", "password": "pw-rita-123"})
    assert rita.status_code == 302


def test_it_does_not_reach_the_provider_for_a_password_login(settings: Any, alice: Any):
    # The backend is always listed; without a callback's nonce it declines at once, even with an
    # issuer that cannot be reached.
    settings.OIDC_ISSUER = f"http://127.0.0.1:{free_port()}/o"
    settings.OIDC_CLIENT_ID = "x"
    oidc.forget_discovery()
    assert Client().post("/accounts/login/?code=a&state=b",
                         {"username": "alice", "password": "pw-alice-123"}).status_code == 302
    assert Path(oidc.__file__).name == "oidc.py"
