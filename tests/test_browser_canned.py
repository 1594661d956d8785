"""Canned replies in a real browser (issue 12 §4): the composer's "/" picker with the keyboard
alone, a variable left unfilled that holds the send back, and a lead's new reply reaching a
member's picker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer, live_server
from tests.test_browser_a11y import AXE, RUN_AXE

pytestmark = pytest.mark.browser

browser = base.browser
PASSWORD = "canned-pw-123"

SETUP = f"""
from django.contrib.auth.models import User
from conversations.models import Agent, CannedReply, Conversation, Team
from conversations.services.teams import add_member
team = Team.objects.create(name="Billing", slug="billing")
lead = User.objects.create_user("lena", "", "{PASSWORD}", first_name="Lena")
member = User.objects.create_user("milo", "", "{PASSWORD}", first_name="Milo")
add_member(team, lead, lead=True)
add_member(team, member)
CannedReply.objects.create(
    scope="team", team=team, shortcut="refund", title="Refund",
    body="Hello {{{{ customer.external_user_id }}}}, your {{{{customer.metadata.plan}}}} plan "
         "is refunded. {{{{user.first_name}}}}")
CannedReply.objects.create(scope="everyone", shortcut="hello", title="Greeting", body="Hi!")
conversation = Conversation.objects.create(
    owner=lead, team=team, agent=Agent.objects.get(slug="demo"), external_user_id="C-42",
    metadata={{"tier": 1}})
print(conversation.pk)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("live-canned")) as srv:
        srv.conversation_id = srv.shell(SETUP)  # type: ignore[attr-defined]
        yield srv


def login(browser: Any, server: LiveServer, username: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server.url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(server.url + "/")
    return page


def open_conversation(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.url}/c/{server.conversation_id}/")  # type: ignore[attr-defined]
    page.wait_for_selector("#connection-status[data-state=connected]")
    page.focus("#composer-input")


def axe_violations(page: Any, server: LiveServer, within: str = "") -> list[str]:
    """axe-core's serious and critical findings (tests/test_browser_a11y.py), on the page or
    the part of it `within` names."""
    page.add_script_tag(url=server.url + AXE)
    script = RUN_AXE.replace("axe.run(document,", f"axe.run({within!r} || document,")
    return page.evaluate(script)


def selection(page: Any) -> str:
    return page.evaluate(
        "() => { const i = document.getElementById('composer-input');"
        " return i.value.slice(i.selectionStart, i.selectionEnd); }")


def test_it_inserts_a_reply_with_the_keyboard_and_holds_a_placeholder_back(
        browser: Any, server: LiveServer):
    page = login(browser, server, "milo")  # a member: the conversation is Lena's team's
    open_conversation(page, server)
    picker = page.locator(".canned-picker")
    page.keyboard.type("/ref")
    option = page.locator("#canned-picker [role=option][data-shortcut=refund]")
    option.wait_for()
    assert page.locator("#canned-picker [role=option]").count() == 1
    assert page.get_attribute("#composer-input", "aria-controls") == "canned-picker"
    page.keyboard.press("ArrowDown")
    assert option.get_attribute("aria-selected") == "true"
    assert page.get_attribute("#composer-input", "aria-activedescendant") == option.get_attribute(
        "id")
    page.keyboard.press("Enter")
    assert picker.is_hidden()
    text = page.input_value("#composer-input")
    # The customer's id and the user's name are filled; the plan is not in the metadata.
    assert text == "Hello C-42, your {{customer.metadata.plan}} plan is refunded. Milo"
    assert selection(page) == "{{customer.metadata.plan}}"
    assert page.evaluate("() => document.activeElement.id") == "composer-input"
    assert page.get_attribute("#composer-input", "aria-invalid") == "true"
    assert "has-placeholder" in page.get_attribute("#composer-input", "class")
    assert page.locator("#send-button").is_disabled()
    assert "{{customer.metadata.plan}}" in page.inner_text("#composer-hint")
    # Enter does not send it; the placeholder stays selected for typing over.
    page.keyboard.press("Enter")
    assert page.locator("article.message[data-role=user]").count() == 0
    assert selection(page) == "{{customer.metadata.plan}}"
    page.keyboard.type("gold")
    assert page.input_value("#composer-input") == "Hello C-42, your gold plan is refunded. Milo"
    assert not page.locator("#send-button").is_disabled()
    assert page.get_attribute("#composer-input", "aria-invalid") is None
    page.keyboard.press("Enter")
    sent = page.locator("article.message[data-role=user]").last
    sent.wait_for()
    assert "Hello C-42, your gold plan is refunded. Milo" in sent.inner_text()
    page.wait_for_selector("article.message[data-role=assistant][data-status=completed]",
                           timeout=20_000)

    # Esc closes the list and leaves the text; "/" typed as text can then be sent as it is.
    page.wait_for_function("() => !document.getElementById('composer-input').disabled")
    page.focus("#composer-input")
    page.keyboard.type("/hel")
    page.locator("#canned-picker [data-shortcut=hello]").wait_for()
    page.keyboard.press("Escape")
    assert picker.is_hidden()
    assert page.input_value("#composer-input") == "/hel"
    page.keyboard.type("p")
    assert picker.is_hidden()
    # Nothing matches: the list says so, and Enter is the composer's again.
    page.keyboard.press("Control+a")
    page.keyboard.type("/zzz")
    page.wait_for_function(
        "() => document.querySelector('.canned-empty-option')?.textContent.includes('No canned')")
    page.context.close()


def test_it_lets_a_lead_add_a_reply_that_a_member_then_picks(browser: Any, server: LiveServer):
    lead = login(browser, server, "lena")
    lead.goto(server.url + "/replies/")
    lead.click("a[href='/teams/billing/replies/']")
    lead.fill("input[name=shortcut]", "welcome")
    lead.fill("input[name=title]", "Welcome aboard")
    lead.fill("textarea[name=body]", "Welcome, {{customer.external_user_id}}!")
    lead.click("form.canned-form button[type=submit]")
    lead.wait_for_selector(".flash-success")
    assert "/welcome" in lead.inner_text(".canned-table")
    assert axe_violations(lead, server) == []
    lead.context.close()

    member = login(browser, server, "milo")
    assert member.goto(server.url + "/teams/billing/replies/").status == 404
    open_conversation(member, server)
    member.keyboard.type("/welc")
    member.locator("#canned-picker [data-shortcut=welcome]").wait_for()
    # The open list, as a screen reader meets it (the transcript is test_browser_a11y's).
    assert axe_violations(member, server, "#composer") == []
    member.keyboard.press("Enter")  # no option chosen yet: Enter takes the first
    assert member.input_value("#composer-input") == "Welcome, C-42!"
    assert not member.locator("#send-button").is_disabled()
    member.context.close()
