"""Single sign-on in a real browser (Chromium), end to end: chatsite (Daphne, SSO_ONLY=1) and
a real OpenID provider (tests/oidc_provider/, django-oauth-toolkit), each its own process on
loopback. Login through the provider's form, the group map applied, a group removed at the
provider losing its role at the next login, logout at both ends, the admin's break-glass
superuser login, and a tampered callback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer, live_server
from tests.oidc_op import Provider, provider

pytestmark = pytest.mark.browser

browser = base.browser
CLIENT_ID = "chatsite-live"
SECRET = "live-secret-5d2c"
PASSWORD = "sam-pw-123"


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    with provider(tmp_path_factory.mktemp("op")) as p:
        p.user("sam", PASSWORD, "support-billing", "qa", "it-admins")
        yield p


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, op: Provider) -> Iterator[LiveServer]:
    env = {"OIDC_ISSUER": op.issuer, "OIDC_CLIENT_ID": CLIENT_ID, "OIDC_CLIENT_SECRET": SECRET,
           "OIDC_GROUP_MAP": "support-billing=team:billing,qa=reviewer,it-admins=staff",
           "OIDC_PROVIDER_NAME": "Test IdP", "SSO_ONLY": "1"}
    with live_server(tmp_path_factory.mktemp("live"), env) as srv:
        op.client(CLIENT_ID, SECRET, srv.url)
        srv.manage("teams", "add", "billing", "--name", "Billing")
        srv.shell("from django.contrib.auth.models import User; "
                  "User.objects.create_superuser('breakglass', '', 'glass-pw-123')")
        yield srv


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text
            else None)
    yield page
    assert csp == [], csp
    context.close()


def roles(server: LiveServer, username: str) -> dict[str, Any]:
    return json.loads(server.shell(
        "import json\n"
        "from django.contrib.auth.models import User\n"
        f"u = User.objects.get(username={username!r})\n"
        "print(json.dumps({'staff': u.is_staff, "
        "'groups': sorted(u.groups.values_list('name', flat=True)), "
        "'teams': sorted(u.team_memberships.values_list('team__slug', flat=True)), "
        "'identities': u.external_identities.count()}))"))


def sign_in(page: Any, server: LiveServer) -> None:
    page.goto(server.url + "/accounts/login/")
    assert page.locator("input[name=password]").count() == 0  # SSO_ONLY: no password form
    page.click("#sso-login")
    page.wait_for_selector("#op-login")  # the provider's own login form
    assert page.url.startswith(server.url.rsplit(":", 1)[0]) and "/login/" in page.url
    page.fill("#op-username", "sam")
    page.fill("#op-password", PASSWORD)
    page.click("#op-submit")
    page.wait_for_url(server.url + "/")


def test_it_signs_in_maps_groups_removes_a_role_and_logs_out(page: Any, server: LiveServer,
                                                              op: Provider):
    login_page = page.goto(server.url + "/accounts/login/")
    assert login_page.status == 200
    assert page.locator("#sso-login").inner_text() == "Sign in with Test IdP"

    sign_in(page, server)
    assert page.locator(".site-user").inner_text() == "sam"
    assert roles(server, "sam") == {"staff": True, "groups": ["reviewer"],
                                    "teams": ["billing"], "identities": 1}

    # Logout: here, then at the provider (its confirmation), then back on our login page.
    op.user("sam", PASSWORD, "support-billing")
    page.click(".logout-form button[type=submit]")
    page.wait_for_selector("input[name=allow]")
    page.click("input[name=allow]")
    page.wait_for_url(server.url + "/accounts/login/")
    assert page.locator("#sso-login").is_visible()
    assert page.goto(server.url + "/").url == server.url + "/accounts/login/?next=/"

    # The provider's session is gone too: signing in asks for the password again, and the
    # groups removed at the provider take their roles with them.
    sign_in(page, server)
    assert roles(server, "sam") == {"staff": False, "groups": [], "teams": ["billing"],
                                    "identities": 1}


def test_it_refuses_a_password_post_and_keeps_the_admin_break_glass(page: Any,
                                                                    server: LiveServer):
    answer = page.request.post(server.url + "/accounts/login/", form={
        "username": "breakglass", "password": "glass-pw-123"})
    assert answer.status == 403  # no password login here under SSO_ONLY
    page.goto(server.url + "/admin/login/?next=/admin/")
    page.fill("input[name=username]", "breakglass")
    page.fill("input[name=password]", "glass-pw-123")
    page.click("input[type=submit]")
    page.wait_for_url(server.url + "/admin/")
    assert page.locator("#user-tools").inner_text().upper().startswith("WELCOME")


def test_it_refuses_a_tampered_callback_with_a_clear_page(page: Any, server: LiveServer):
    answer = page.goto(server.url + "/oidc/callback/?code=forged&state=forged")
    assert answer.status == 400
    assert "not started here" in page.locator("#sso-error").inner_text()
    assert page.goto(server.url + "/").url.startswith(server.url + "/accounts/login/")
