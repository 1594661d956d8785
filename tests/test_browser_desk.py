"""The support desk in two real browsers (issue 12): a colleague sees who is here, notes stay
internal, a conversation is taken, assigned and handed to another team, live on both screens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer, live_server
from tests.test_browser import PASSWORD

pytestmark = pytest.mark.browser

browser = base.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("desk")) as srv:
        srv.shell(
            "from django.contrib.auth.models import User; "
            f"[User.objects.create_user(n, '', '{PASSWORD}', first_name=n.title()) "
            "for n in ('ann', 'ben', 'cat')]"
        )
        srv.manage("teams", "add", "support", "--name", "Support")
        srv.manage("teams", "add", "billing", "--name", "Billing")
        srv.manage("teams", "members", "support", "--add", "ann", "--lead")
        srv.manage("teams", "members", "support", "--add", "ben")
        srv.manage("teams", "members", "billing", "--add", "cat")
        yield srv


def login(browser: Any, server: LiveServer, username: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.on("dialog", lambda d: pytest.fail(f"unexpected dialog: {d.message}"))
    page.goto(server.url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(server.url + "/")
    return page


def test_it_hands_a_conversation_over_between_two_browsers(browser: Any, server: LiveServer):
    ann = login(browser, server, "ann")
    ann.fill("#composer-input", "Customer asks for a refund of 500 dollars")
    ann.press("#composer-input", "Enter")
    ann.wait_for_url("**/c/*/")
    ann.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                          timeout=20_000)
    url = ann.url

    # Ben, in the same team, opens it: each sees the other.
    ben = login(browser, server, "ben")
    ben.goto(url)
    ben.wait_for_selector("#connection-status[data-state=connected]")
    ben.wait_for_selector("#presence .presence-user:has-text('Ann')")
    ann.wait_for_selector("#presence .presence-user:has-text('Ben')")
    assert "refund of 500" in ben.locator("article.message[data-role=user]").first.inner_text()

    # A note from Ann: Ben sees it, styled apart; the agent does not answer it.
    ann.check("#note-toggle")
    ann.fill("#composer-input", "Over the limit: needs Billing")
    ann.press("#composer-input", "Enter")
    note = ben.locator("article.message[data-role=note]")
    note.wait_for()
    assert "Over the limit" in note.inner_text() and "Ann" in note.inner_text()
    assert ben.locator("article.message[data-role=assistant]").count() == 1
    ann.uncheck("#note-toggle")

    # Ben takes it: the event and the assignee reach Ann's screen.
    ben.click("#desk-take")
    ann.wait_for_selector("article.message[data-role=event]:has-text('Ben took this conversation')")
    ann.wait_for_function(
        "() => document.getElementById('assignee-label').textContent.includes('Ben')")
    assert ben.locator("#assignee-label").inner_text() == "Assigned to you"

    # Ann hands it to Billing with a note: Ben's tab loses it, Cat (Billing) gets it.
    ann.click("#desk-panel summary")
    ann.select_option("#desk-team", "billing")
    ann.fill("#desk-note", "refund over limit")
    ann.click("#desk-transfer")
    ann.wait_for_selector(
        "article.message[data-role=event]:has-text('transferred this conversation to Billing')")
    ben.wait_for_selector("#connection-status[data-state=gone], #connection-banner:not([hidden])",
                          timeout=10_000)
    cat = login(browser, server, "cat")
    cat.goto(url)
    cat.wait_for_selector("#connection-status[data-state=connected]")
    assert "refund over limit" in cat.locator("article.message[data-role=event]").last.inner_text()
    assert cat.locator("#assignee-label").inner_text() == "Unassigned"
    for page in (ann, ben, cat):
        page.context.close()
