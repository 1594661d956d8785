"""Accessibility: axe-core (vendored, injected only here) finds no serious or critical violation
on the login page, the home page, a chat with a tool call and a pending interrupt, the
statistics page and the admin transcript, in the light and the dark theme (issue 11 §4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer
from tests.test_browser import PASSWORD

pytestmark = pytest.mark.browser

browser = base.browser

AXE = "/static/vendor/axe-core-4.14.1/axe.min.js"
REVIEWER = "rita"
# What axe reports, one line per violation and element, so a failure names what to fix.
RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .flatMap((v) => v.nodes.map((n) =>
      `${v.id} (${v.impact}): ${n.target.join(" ")} —${n.failureSummary.split("\\n")[1]}`));
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with base.live_server(tmp_path_factory.mktemp("live")) as srv:
        srv.shell(
            "from django.contrib.auth.models import User; "
            f"User.objects.create_user('carol', '', '{PASSWORD}'); "
            f"User.objects.create_superuser('{REVIEWER}', '', '{PASSWORD}')"
        )
        yield srv


def log_in(page: Any, server: LiveServer, username: str) -> None:
    page.goto(server.url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(server.url + "/")


def scan(page: Any, server: LiveServer, name: str, found: dict[str, list[str]]) -> None:
    # Served from our own origin (the CSP allows only 'self' scripts), never linked by a page.
    page.add_script_tag(url=server.url + AXE)
    found[name] = page.evaluate(RUN_AXE)


@pytest.fixture(scope="module")
def chat_url(browser: Any, server: LiveServer) -> str:
    """A conversation with a tool call, then an interrupt waiting for its answer."""
    context = browser.new_context()
    page = context.new_page()
    log_in(page, server, "carol")
    page.goto(server.url + "/conversations/new")
    page.fill("input[name=title]", "Accessibility")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/c/*/")
    # A function, not a bare expression: Playwright polls a bare expression with eval(), which
    # the page's CSP refuses once the first check is false (a slow connect under load).
    page.wait_for_function(
        "() => document.getElementById('connection-status').dataset.state === 'connected'")
    for text in ("Please use a tool to find my order", "I need approval for a refund"):
        page.fill("#composer-input", text)
        page.press("#composer-input", "Enter")
        page.wait_for_timeout(300)
        page.wait_for_function(
            "() => !window.chatsite.state.messages.some("
            "(m) => m.status === 'streaming' || m.status === 'pending')",
            timeout=20_000)
    page.wait_for_selector(".interrupt-card[data-state=pending]")
    url = page.url
    context.close()
    return url


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_it_finds_no_serious_violation(browser: Any, server: LiveServer, chat_url: str,
                                       theme: str):
    found: dict[str, list[str]] = {}
    context = browser.new_context()
    context.add_cookies([{"name": "theme", "value": theme, "url": server.url}])
    page = context.new_page()

    page.goto(server.url + "/accounts/login/")
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    scan(page, server, "login", found)

    log_in(page, server, "carol")
    scan(page, server, "home", found)

    page.goto(chat_url)
    page.wait_for_selector(".interrupt-card[data-state=pending]")
    page.wait_for_selector("details.tool-call")
    page.locator("details.tool-call summary").first.click()
    scan(page, server, "chat", found)

    context.clear_cookies()
    context.add_cookies([{"name": "theme", "value": theme, "url": server.url}])
    log_in(page, server, REVIEWER)
    page.goto(server.url + "/stats/")
    scan(page, server, "stats", found)

    conversation_id = chat_url.rstrip("/").split("/")[-1]
    page.goto(f"{server.url}/admin/conversations/conversation/{conversation_id}/change/")
    page.wait_for_selector(".review-transcript .turn")
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    scan(page, server, "admin transcript", found)
    context.close()

    assert set(found) == {"login", "home", "chat", "stats", "admin transcript"}
    report = [f"{name}: {line}" for name, lines in found.items() for line in lines]
    assert report == [], "\n".join(report)
