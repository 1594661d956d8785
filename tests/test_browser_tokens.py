"""Personal API tokens in a real browser against Daphne: create one on /settings/, copy it with
the button, use it over HTTP from outside the browser, revoke it (see tests/test_browser.py for
the set-up)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer

pytestmark = pytest.mark.browser

server = base.server
browser = base.browser
page = base.page

TOKEN = re.compile(r"cst_[A-Za-z0-9_-]{43}")


def api_get(server: LiveServer, path: str, token: str) -> tuple[int, dict[str, Any]]:
    # A script's request: no cookie, no CSRF token, through the real Daphne.
    r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return r.status_code, r.json()


def test_it_creates_copies_uses_and_revokes_a_token(page: Any, server: LiveServer):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                   origin=server.url)
    page.goto(server.url + "/settings/")
    page.fill("input[name=name]", "browser script")
    page.check("input[name=scopes][value=read]")
    page.check("input[name=expires][value='30']")
    page.click("#api-tokens button.button-primary")
    shown = page.locator("#new-token").text_content()
    assert TOKEN.fullmatch(shown)
    page.click("[data-copy-target=new-token]")
    page.wait_for_function(
        "() => document.querySelector('[data-copy-target]').textContent === 'Copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == shown

    status, body = api_get(server, "/api/v1/conversations", shown)
    assert (status, body["data"]) == (200, [])

    page.goto(server.url + "/settings/")
    assert shown not in page.content()
    row = page.locator("#token-table tbody tr", has_text="browser script")
    assert shown[:10] in row.text_content()
    row.locator("button", has_text="Revoke").click()
    page.wait_for_url(server.url + "/settings/")
    assert "Revoked" in page.locator("#token-table tbody tr",
                                     has_text="browser script").text_content()
    status, body = api_get(server, "/api/v1/conversations", shown)
    assert status == 401
    assert body["error"]["code"] == "unauthenticated"
