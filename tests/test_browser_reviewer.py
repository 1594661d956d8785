"""The reviewer page in a real browser (issue 13 §3): a reviewer scores three items and skips a
fourth with the keyboard only, and the scores are stored; axe-core finds no serious or critical
violation on the item page in either theme."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests import test_browser as base
from tests.livesrv import LiveServer
from tests.test_browser import PASSWORD
from tests.test_browser_a11y import scan

pytestmark = pytest.mark.browser

browser = base.browser

SETUP = """
from django.contrib.auth.models import Group, User
from conversations.models import Agent, Conversation, Message, ReviewQueue, ScoreConfig
from conversations.services import queues
group = Group.objects.get(name="reviewer")
owner = User.objects.create_user("carol", "", "{password}")
agent = Agent.objects.get(is_default=True)
accuracy = ScoreConfig.objects.create(name="Accuracy", kind="numeric", min_value=1,
    max_value=5, description="1: wrong facts, 5: every fact checks out.")
resolved = ScoreConfig.objects.create(name="Resolved", kind="boolean",
    description="Did the reply solve the problem?")
tone = ScoreConfig.objects.create(name="Tone", kind="categorical",
    options=["friendly", "neutral", "rude"], description="How it sounds to the customer.")
for name, reviewer, count in (("Keyboard", "rita", 4), ("Accessibility", "ray", 2)):
    user = User.objects.create_user(reviewer, "", "{password}", is_staff=True)
    user.groups.add(group)
    queue = ReviewQueue.objects.create(name=name)
    queue.configs.set([accuracy, resolved, tone])
    queue.assignees.add(user)
    for n in range(1, count + 1):
        c = Conversation.objects.create(owner=owner, agent=agent, title=f"{{name}} {{n}}",
            external_user_id=f"cust-{{n}}", metadata={{"plan": "pro"}})
        Message.objects.create(conversation=c, seq=1, role="user", content=f"Question {{n}}?")
        reply = Message.objects.create(conversation=c, seq=2, role="assistant",
            content=f"Answer **{{n}}** with `code`.", ttft_ms=200)
        Message.objects.create(conversation=c, seq=3, role="user", content="Thanks")
        queues.enqueue(queue, conversation=c, message=reply, reason="manual")
print("ok")
"""

SCORES = """
import json
from conversations.models import Score
print(json.dumps(sorted(
    [s.conversation.title, s.config.name, s.value, s.comment, s.author.username]
    for s in Score.objects.select_related("config", "author", "conversation"))))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with base.live_server(tmp_path_factory.mktemp("live")) as srv:
        assert srv.shell(SETUP.format(password=PASSWORD)) == "ok"
        yield srv


def log_in(page: Any, server: LiveServer, username: str) -> None:
    page.goto(server.url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")
    page.wait_for_url(server.url + "/")


def focused(page: Any) -> dict[str, Any]:
    return page.evaluate("""() => {
        const el = document.activeElement;
        return {tag: el.tagName, name: el.name || "", value: el.value ?? "", id: el.id || "",
                field: el.closest(".score-field")?.querySelector("legend")?.textContent || ""};
    }""")


def wait_for_item(page: Any, server: LiveServer, previous: str = "") -> str:
    page.wait_for_function(
        "(prev) => location.pathname.startsWith('/review/items/') && location.href !== prev",
        arg=previous)
    page.wait_for_load_state()
    page.wait_for_selector(".turn-under-review")
    return str(page.url)


def test_it_reviews_three_items_with_the_keyboard_only(browser: Any, server: LiveServer):
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, server, "rita")

    page.goto(server.url + "/review/")
    # "Start reviewing" has the focus: Enter claims the first item. The browser applies
    # `autofocus` at a rendering update, which may come after the load event under load.
    page.wait_for_function(
        "() => (document.activeElement?.textContent || '').startsWith('Start reviewing')",
        timeout=10_000)
    page.keyboard.press("Enter")
    url = wait_for_item(page, server)

    # Item 1: the first score (Accuracy, numeric) has the focus from page load.
    assert focused(page)["field"] == "Accuracy"
    assert page.evaluate("document.querySelector('.turn-under-review').id").startswith("msg-")
    assert "Answer 1" in page.inner_text(".turn-under-review")
    page.keyboard.press("4")
    page.keyboard.press("j")
    assert focused(page)["field"] == "Resolved"
    page.keyboard.press("1")  # yes
    page.keyboard.press("j")
    page.keyboard.press("2")  # neutral
    assert (focused(page)["field"], focused(page)["value"]) == ("Tone", "neutral")
    # In a comment every key is text ("s" does not skip, "?" does not open the list); Esc
    # leaves the field and the keys work again.
    page.keyboard.press("Tab")
    assert focused(page)["tag"] == "TEXTAREA"
    page.keyboard.type("sounds ok? j k 1")
    page.keyboard.press("Escape")
    assert focused(page)["value"] == "neutral"
    page.keyboard.press("k")
    page.keyboard.press("k")
    assert focused(page)["field"] == "Accuracy"
    assert focused(page)["value"] == "4"
    # "?" lists the keys in a dialog; Esc closes it and gives the focus back.
    page.keyboard.press("?")
    assert page.evaluate("document.getElementById('reviewer-keys').open") is True
    page.keyboard.press("Escape")
    assert page.evaluate("document.getElementById('reviewer-keys').open") is False
    assert focused(page)["field"] == "Accuracy"
    page.keyboard.press("Enter")
    url = wait_for_item(page, server, url)

    # Item 2: an out-of-range number is refused inline, the other choices kept.
    page.keyboard.press("9")
    page.keyboard.press("j")
    page.keyboard.press("2")  # no
    page.keyboard.press("j")
    page.keyboard.press("3")  # rude
    page.keyboard.press("Enter")
    page.wait_for_selector("#review-error")
    assert "Accuracy must be between 1 and 5." in page.inner_text(".score-field.has-errors")
    assert focused(page)["field"] == "Accuracy"  # the field in error has the focus
    assert page.evaluate("document.querySelector('input[value=rude]').checked") is True
    page.keyboard.press("Control+a")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    url = wait_for_item(page, server, url)

    # Item 3: scores in another order (k comes back to the number).
    page.keyboard.press("j")
    page.keyboard.press("1")
    page.keyboard.press("k")
    page.keyboard.press("5")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("1")  # friendly
    page.keyboard.press("Enter")
    url = wait_for_item(page, server, url)

    # Item 4: skipped; the queue is done.
    page.keyboard.press("s")
    page.wait_for_url(server.url + "/review/")
    assert "Queue “Keyboard” is done: nothing is pending." in page.inner_text(".flash-messages")
    context.close()

    assert dialogs == []
    stored = json.loads(server.shell(SCORES))
    assert stored == [
        ["Keyboard 1", "Accuracy", 4, "", "rita"],
        ["Keyboard 1", "Resolved", True, "", "rita"],
        ["Keyboard 1", "Tone", "neutral", "sounds ok? j k 1", "rita"],
        ["Keyboard 2", "Accuracy", 2, "", "rita"],
        ["Keyboard 2", "Resolved", False, "", "rita"],
        ["Keyboard 2", "Tone", "rude", "", "rita"],
        ["Keyboard 3", "Accuracy", 5, "", "rita"],
        ["Keyboard 3", "Resolved", True, "", "rita"],
        ["Keyboard 3", "Tone", "friendly", "", "rita"],
    ]
    statuses = server.shell(
        "from conversations.models import QueueItem; print(sorted(QueueItem.objects.filter("
        "queue__name='Keyboard').values_list('status', flat=True)))")
    assert statuses == "['done', 'done', 'done', 'skipped']"


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_it_finds_no_serious_violation_on_the_item_page(browser: Any, server: LiveServer,
                                                        theme: str):
    context = browser.new_context()
    context.add_cookies([{"name": "theme", "value": theme, "url": server.url}])
    page = context.new_page()
    log_in(page, server, "ray")
    found: dict[str, list[str]] = {}
    page.goto(server.url + "/review/")
    scan(page, server, "queues", found)
    page.keyboard.press("Enter")
    wait_for_item(page, server)
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    scan(page, server, "item", found)
    # With errors shown too.
    page.keyboard.press("Enter")
    page.wait_for_selector("#review-error")
    scan(page, server, "item with errors", found)
    context.close()
    report = [f"{name}: {line}" for name, lines in found.items() for line in lines]
    assert report == [], "\n".join(report)
