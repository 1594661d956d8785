"""The admin review desk: roles, the annotated conversation list, the read-only transcript, the
review fields, bulk actions, labels, feedback and the agents' connection test."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Agent, Conversation, Feedback, Label, Message, ToolCall
from conversations.services import agents as conversations_admin
from tests.fakevendor import FakeVendor, Pause, json_script, openai_chunk, sse, sse_script

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/conversations/conversation/"


def add_message(conversation: Conversation, seq: int, role: str, content: str = "",
                **fields: Any) -> Message:
    return Message.objects.create(
        conversation=conversation, seq=seq, role=role, content=content, **fields
    )


def make_conversation(owner: Any, agent: Agent, title: str, *, failed: int = 0, up: int = 0,
                      down: int = 0, tools: int = 0, **fields: Any) -> Conversation:
    """A conversation with one user message, `up + down + failed + 1` replies (thumbs on the
    first ones), `failed` failed replies and `tools` tool calls on the last reply."""
    conversation = Conversation.objects.create(owner=owner, agent=agent, title=title, **fields)
    add_message(conversation, 1, "user", f"question about {title}")
    seq = 2
    for score in [1] * up + [-1] * down:
        reply = add_message(conversation, seq, "assistant", "answer")
        Feedback.objects.create(message=reply, author=owner, score=score)
        seq += 1
    for _ in range(failed):
        add_message(conversation, seq, "assistant", status="failed", error_code="vendor_auth")
        seq += 1
    last = add_message(conversation, seq, "assistant", "final answer")
    for i in range(tools):
        ToolCall.objects.create(message=last, index=i, call_id=f"call-{i}", name="lookup")
    return conversation


def result_titles(response: Any) -> set[str]:
    return {c.title for c in response.context["cl"].result_list}


# Roles -----------------------------------------------------------------------------------------


def test_it_keeps_regular_users_out_of_the_admin(alice_client: Client, conversation: Any):
    for url in ("/admin/", CHANGELIST, f"{CHANGELIST}{conversation.pk}/change/"):
        response = alice_client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_it_lets_reviewers_read_every_conversation(
    reviewer_client: Client, alice: Any, bob: Any, demo_agent: Agent
):
    make_conversation(alice, demo_agent, "Alice refund", failed=2, up=1, down=1, tools=1,
                      external_user_id="cust-42")
    bob_conversation = make_conversation(bob, demo_agent, "Bob invoice")

    response = reviewer_client.get(CHANGELIST)

    assert response.status_code == 200
    assert result_titles(response) == {"Alice refund", "Bob invoice"}
    rows = {c.title: c for c in response.context["cl"].result_list}
    alice_row = rows["Alice refund"]
    # user message + 2 rated + 2 failed + final reply
    assert (alice_row.n_messages, alice_row.n_failed, alice_row.n_up, alice_row.n_down) == (
        6, 2, 1, 1)
    assert (rows["Bob invoice"].n_messages, rows["Bob invoice"].n_failed) == (2, 0)
    html = response.content.decode()
    assert "cust-42" in html
    assert ('<span class="feedback-up">+1</span> <span class="feedback-down">−1</span>'
            in html)
    assert '<span class="review-failed">2</span>' in html
    assert '<span class="review-badge review-unreviewed">Unreviewed</span>' in html

    detail = reviewer_client.get(f"{CHANGELIST}{bob_conversation.pk}/change/")
    assert detail.status_code == 200
    assert "question about Bob invoice" in detail.content.decode()


def test_it_forbids_reviewers_to_add_or_delete_conversations(
    reviewer_client: Client, conversation: Conversation
):
    assert reviewer_client.get(f"{CHANGELIST}add/").status_code == 403
    assert reviewer_client.get(f"{CHANGELIST}{conversation.pk}/delete/").status_code == 403
    assert reviewer_client.post(f"{CHANGELIST}{conversation.pk}/delete/",
                                {"post": "yes"}).status_code == 403
    actions = dict(reviewer_client.get(CHANGELIST).context["action_form"].fields["action"].choices)
    assert "delete_selected" not in actions
    assert {"mark_reviewed", "mark_flagged", "add_label", "export_csv", "export_jsonl"} <= set(
        actions)
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_it_forbids_reviewers_to_change_agents_and_users(
    reviewer_client: Client, demo_agent: Agent, alice: Any
):
    url = f"/admin/conversations/agent/{demo_agent.pk}/change/"
    # Viewing is allowed (reviewers need to know the agents), saving is not.
    page = reviewer_client.get(url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert "Test connection" not in page.content.decode()
    response = reviewer_client.post(url, {
        "slug": "demo", "name": "Hacked", "provider": "demo", "options": "{}",
    })
    assert response.status_code == 403
    demo_agent.refresh_from_db()
    assert demo_agent.name == "Demo agent"
    assert reviewer_client.get("/admin/conversations/agent/add/").status_code == 403
    assert reviewer_client.post(
        f"/admin/conversations/agent/{demo_agent.pk}/test-connection/"
    ).status_code == 403
    assert reviewer_client.get("/admin/auth/user/").status_code == 403
    assert reviewer_client.get(f"/admin/auth/user/{alice.pk}/change/").status_code == 403
    assert reviewer_client.get("/admin/auth/group/").status_code == 403


def test_it_lets_staff_manage_agents(staff_client: Client, demo_agent: Agent):
    response = staff_client.post(f"/admin/conversations/agent/{demo_agent.pk}/change/", {
        "slug": "demo", "name": "Renamed", "provider": "demo", "base_url": "", "token_env": "",
        "options": '{"delay": 0}', "is_active": "on", "is_default": "on",
    })
    assert response.status_code == 302
    demo_agent.refresh_from_db()
    assert demo_agent.name == "Renamed"
    assert staff_client.get("/admin/auth/user/").status_code == 200


def test_it_links_the_statistics_from_the_admin(reviewer_client: Client, staff: Any):
    html = reviewer_client.get("/admin/").content.decode()
    assert 'href="/stats/"' in html
    assert "Review desk" in html
    plain_staff = get_user_model().objects.create_user("sam", "s@example.com", None,
                                                       is_staff=True)
    client = Client()
    client.force_login(plain_staff)
    assert 'href="/stats/"' not in client.get("/admin/").content.decode()


# The list ---------------------------------------------------------------------------------------


def _changelist_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST)
    assert response.status_code == 200
    return len(queries)


def test_it_keeps_the_changelist_query_count_constant(
    reviewer_client: Client, alice: Any, bob: Any, demo_agent: Agent
):
    label = Label.objects.create(name="refund")
    for i in range(3):
        make_conversation(alice, demo_agent, f"small {i}", failed=1, up=1, down=1, tools=1)
    Conversation.objects.first().labels.add(label)
    small = _changelist_queries(reviewer_client)
    other = Agent.objects.create(slug="other", name="Other", provider="demo")
    for i in range(27):
        conversation = make_conversation(bob if i % 2 else alice, other if i % 3 else demo_agent,
                                         f"large {i}", failed=i % 2, up=1, down=i % 3, tools=2)
        conversation.labels.add(label)
    large = _changelist_queries(reviewer_client)

    assert small == large
    assert large <= 15


def test_it_filters_the_list(reviewer_client: Client, alice: Any, bob: Any, demo_agent: Agent):
    other = Agent.objects.create(slug="other", name="Other", provider="demo")
    label = Label.objects.create(name="refund")
    make_conversation(alice, demo_agent, "thumbs down", down=1)
    make_conversation(alice, demo_agent, "thumbs up", up=1)
    make_conversation(bob, other, "failing", failed=1, review_status="flagged")
    make_conversation(bob, demo_agent, "with tools", tools=1).labels.add(label)
    old = make_conversation(alice, other, "old one", review_status="reviewed")
    old.created_at = timezone.now() - timedelta(days=60)
    old.save()

    def titles(query: str) -> set[str]:
        return result_titles(reviewer_client.get(f"{CHANGELIST}?{query}"))

    assert titles("feedback=down") == {"thumbs down"}
    # Facet counts ("Show counts") work with the custom filters.
    facets = reviewer_client.get(f"{CHANGELIST}?_facets=True&feedback=down")
    assert facets.status_code == 200
    assert "Has thumbs up (1)" in facets.content.decode()
    assert titles("feedback=up") == {"thumbs up"}
    assert titles("feedback=none") == {"failing", "with tools", "old one"}
    assert titles("failures=yes") == {"failing"}
    assert titles("failures=no") == {"thumbs down", "thumbs up", "with tools", "old one"}
    assert titles("tool_calls=yes") == {"with tools"}
    assert titles(f"agent__id__exact={other.pk}") == {"failing", "old one"}
    assert titles(f"owner__id__exact={bob.pk}") == {"failing", "with tools"}
    assert titles("review_status__exact=flagged") == {"failing"}
    assert titles(f"labels__id__exact={label.pk}") == {"with tools"}
    since = (timezone.now() - timedelta(days=7)).isoformat()
    recent = titles(urlencode({"created_at__gte": since}))
    assert recent == {"thumbs down", "thumbs up", "failing", "with tools"}


def test_it_searches_titles_messages_external_ids_and_metadata(
    reviewer_client: Client, alice: Any, demo_agent: Agent
):
    make_conversation(alice, demo_agent, "Billing")
    make_conversation(alice, demo_agent, "Other", external_user_id="crm-7781")
    make_conversation(alice, demo_agent, "Meta", metadata={"plan": "Entreprise Zoë", "seats": 12})
    chat = make_conversation(alice, demo_agent, "Chat")
    add_message(chat, 9, "user", "my parcel never arrived")

    def search(q: str) -> set[str]:
        return result_titles(reviewer_client.get(CHANGELIST, {"q": q}))

    assert search("billing") == {"Billing"}
    assert search("crm-77") == {"Other"}
    assert search("zoë") == {"Meta"}
    assert search("entreprise") == {"Meta"}
    assert search("parcel") == {"Chat"}
    assert search("nothing-like-this") == set()
    assert search(str(chat.pk)) == {"Chat"}


# The conversation page ---------------------------------------------------------------------------


@pytest.fixture
def reviewed_transcript(alice: Any, demo_agent: Agent) -> Conversation:
    conversation = Conversation.objects.create(
        owner=alice, agent=demo_agent, title="Transcript", metadata={"plan": "pro"}
    )
    start = timezone.now() - timedelta(hours=1)
    add_message(conversation, 1, "user", "Is <b>this</b> **bold**?", created_at=start)
    reply = add_message(
        conversation, 2, "assistant",
        "Here is **bold** and <script>alert('x')</script> and [docs](https://example.com/d) "
        "and [bad](javascript:alert(1)) and ![pixel](https://tracker.example/p.png)\n\n"
        "```python\nprint('hi')\n```",
        created_at=start, completed_at=start + timedelta(milliseconds=2500), ttft_ms=420,
        usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
        extra={"reasoning": "Thinking about <i>refunds</i>", "data_spec": [{"op": "add"}]},
    )
    ToolCall.objects.create(message=reply, call_id="c1", name="lookup_order",
                            arguments='{"order": 17}', result={"status": "shipped"},
                            status="completed")
    Feedback.objects.create(message=reply, author=alice, score=-1, comment="Too vague")
    add_message(
        conversation, 3, "assistant", "Need approval", status="completed",
        extra={"pending_interrupt": {"id": "int-1", "reason": "approve_refund",
                                     "payload": {"question": "Refund 20 EUR?"}},
               "interrupt_answer": {"id": "int-1", "payload": {"approved": True}}},
    )
    add_message(conversation, 4, "user", '{"approved": true}',
                extra={"answers_interrupt": "int-1"})
    add_message(conversation, 5, "assistant", "", status="failed", error_code="vendor_timeout",
                error_message="The vendor stopped sending data.")
    return conversation


def test_it_renders_the_transcript_read_only_and_safely(
    reviewer_client: Client, reviewed_transcript: Conversation
):
    page = reviewer_client.get(f"{CHANGELIST}{reviewed_transcript.pk}/change/").content.decode()
    html = page[page.index('class="module review-transcript"'):]
    html = html[:html.index("</section>")]

    assert "Transcript (5 messages)" in html
    # Markdown in replies, with raw HTML shown as text and dangerous links/images defused.
    assert "<strong>bold</strong>" in html
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert ('<a href="https://example.com/d" target="_blank" rel="noopener noreferrer">docs</a>'
            in html)
    assert "[bad](javascript:alert(1))" in html  # not a link: shown as typed
    assert 'href="javascript' not in html
    assert "<img" not in html
    assert ('<a href="https://tracker.example/p.png" target="_blank" rel="noopener noreferrer">'
            "image: pixel</a>") in html
    assert '<code class="language-python">' in html
    # User messages are plain text, as in the chat UI.
    assert "Is &lt;b&gt;this&lt;/b&gt; **bold**?" in html
    # Tool call, reasoning, data block, interrupt and answer, error, metrics, feedback.
    assert "<code>lookup_order</code> (completed)" in html
    assert "&quot;order&quot;: 17" in html
    assert "&quot;status&quot;: &quot;shipped&quot;" in html
    assert "Thinking about &lt;i&gt;refunds&lt;/i&gt;" in html
    assert "Data: data_spec" in html
    assert "approve_refund" in html and "Refund 20 EUR?" in html
    assert "&quot;approved&quot;: true" in html
    assert "Answer to interrupt int-1" in html
    assert "<code>vendor_timeout</code> The vendor stopped sending data." in html
    assert "Time to first token: 420 ms" in html
    assert "Duration: 2500 ms" in html
    assert "Tokens: 42 (30 prompt, 12 completion)" in html
    assert '<span class="feedback-down">Thumbs down</span> — “Too vague”' in html
    # Nothing but the review fields is a form field.
    assert "<textarea" not in html and "<input" not in html
    assert 'name="title"' not in page
    assert 'name="review_status"' in page and 'name="review_notes"' in page


def test_it_renders_the_transcript_in_a_fixed_number_of_queries(
    reviewer_client: Client, alice: Any, demo_agent: Agent
):
    def queries(n: int) -> int:
        conversation = make_conversation(alice, demo_agent, f"n{n}", up=n, down=n, tools=n,
                                         failed=n)
        with CaptureQueriesContext(connection) as captured:
            assert reviewer_client.get(
                f"{CHANGELIST}{conversation.pk}/change/").status_code == 200
        return len(captured)

    assert queries(1) == queries(12)


def test_it_saves_only_the_review_fields_and_stamps_the_reviewer(
    reviewer_client: Client, reviewer: Any, reviewed_transcript: Conversation
):
    refund = Label.objects.create(name="refund")
    url = f"{CHANGELIST}{reviewed_transcript.pk}/change/"
    response = reviewer_client.post(url, {
        "review_status": "flagged", "labels": [refund.pk], "review_notes": "Vague answer",
        # Not review fields: ignored.
        "title": "Changed", "external_user_id": "x", "archived": "on",
        "metadata": '{"plan": "free"}',
    })

    assert response.status_code == 302
    reviewed_transcript.refresh_from_db()
    assert reviewed_transcript.review_status == "flagged"
    assert list(reviewed_transcript.labels.values_list("name", flat=True)) == ["refund"]
    assert reviewed_transcript.review_notes == "Vague answer"
    assert reviewed_transcript.reviewed_by == reviewer
    assert timezone.now() - reviewed_transcript.reviewed_at < timedelta(seconds=10)
    assert reviewed_transcript.title == "Transcript"
    assert reviewed_transcript.external_user_id == ""
    assert reviewed_transcript.archived is False
    assert reviewed_transcript.metadata == {"plan": "pro"}
    assert reviewed_transcript.messages.count() == 5


def test_it_does_not_stamp_a_save_without_review_changes(
    reviewer_client: Client, conversation: Conversation
):
    response = reviewer_client.post(f"{CHANGELIST}{conversation.pk}/change/", {
        "review_status": "unreviewed", "review_notes": "",
    })
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.reviewed_by is None
    assert conversation.reviewed_at is None


def test_it_never_lets_anyone_edit_messages_in_the_admin(
    staff_client: Client, reviewed_transcript: Conversation
):
    message = reviewed_transcript.messages.get(seq=1)
    url = f"/admin/conversations/message/{message.pk}/change/"
    assert staff_client.get(url).status_code == 200
    assert staff_client.post(url, {"content": "rewritten"}).status_code == 403
    assert staff_client.get(f"/admin/conversations/message/{message.pk}/delete/").status_code \
        == 403
    message.refresh_from_db()
    assert message.content == "Is <b>this</b> **bold**?"


# Bulk actions -------------------------------------------------------------------------------


def _action(client: Client, action: str, conversations: list[Conversation],
            **extra: Any) -> Any:
    return client.post(CHANGELIST, {
        "action": action, "_selected_action": [str(c.pk) for c in conversations], "index": 0,
        **extra,
    })


def test_it_marks_reviewed_and_flags_in_bulk(
    reviewer_client: Client, reviewer: Any, alice: Any, demo_agent: Agent
):
    a, b, c = (make_conversation(alice, demo_agent, t) for t in ("a", "b", "c"))

    assert _action(reviewer_client, "mark_reviewed", [a, b]).status_code == 302
    assert _action(reviewer_client, "mark_flagged", [c]).status_code == 302

    states = dict(Conversation.objects.values_list("title", "review_status"))
    assert states == {"a": "reviewed", "b": "reviewed", "c": "flagged"}
    assert set(Conversation.objects.values_list("reviewed_by", flat=True)) == {reviewer.pk}


def test_it_adds_a_label_through_an_intermediate_page(
    reviewer_client: Client, reviewer: Any, alice: Any, demo_agent: Agent
):
    a, b, c = (make_conversation(alice, demo_agent, t) for t in ("a", "b", "c"))
    label = Label.objects.create(name="hallucination")
    a.labels.add(label)  # already labelled: adding again must not fail

    page = _action(reviewer_client, "add_label", [a, b])
    assert page.status_code == 200
    html = page.content.decode()
    assert "Choose the label to add to the 2 selected conversations." in html
    assert f'value="{a.pk}"' in html and f'value="{b.pk}"' in html

    done = _action(reviewer_client, "add_label", [a, b], apply="1", label=label.pk)
    assert done.status_code == 302
    assert set(label.conversations.values_list("title", flat=True)) == {"a", "b"}
    b.refresh_from_db()
    assert b.reviewed_by == reviewer

    # "Select all" across pages: no ids posted, the filtered changelist is used.
    done = reviewer_client.post(f"{CHANGELIST}?q=c", {
        "action": "add_label", "select_across": "1", "index": 0, "apply": "1",
        "label": label.pk, "_selected_action": [str(c.pk)],
    })
    assert done.status_code == 302
    assert set(label.conversations.values_list("title", flat=True)) == {"a", "b", "c"}


def test_it_asks_again_when_no_label_is_chosen(
    reviewer_client: Client, conversation: Conversation
):
    Label.objects.create(name="refund")
    page = _action(reviewer_client, "add_label", [conversation], apply="1", label="")
    assert page.status_code == 200
    assert "This field is required." in page.content.decode()
    assert conversation.labels.count() == 0


# Labels and feedback ---------------------------------------------------------------------------


def test_it_lets_reviewers_add_and_change_labels_but_not_delete(reviewer_client: Client):
    response = reviewer_client.post("/admin/conversations/label/add/",
                                    {"name": "refund", "color": "#1f6feb"})
    assert response.status_code == 302
    label = Label.objects.get(name="refund")
    response = reviewer_client.post(f"/admin/conversations/label/{label.pk}/change/",
                                    {"name": "refunds", "color": "#000000"})
    assert response.status_code == 302
    label.refresh_from_db()
    assert (label.name, label.color) == ("refunds", "#000000")
    assert reviewer_client.post(f"/admin/conversations/label/{label.pk}/delete/",
                                {"post": "yes"}).status_code == 403
    bad = reviewer_client.post("/admin/conversations/label/add/",
                               {"name": "x", "color": "red"})
    assert bad.status_code == 200
    assert "Use a colour such as #1f6feb." in bad.content.decode()


def test_it_lists_feedback_read_only_with_links_to_the_conversation(
    reviewer_client: Client, alice: Any, demo_agent: Agent
):
    good = make_conversation(alice, demo_agent, "good", up=1)
    bad = make_conversation(alice, demo_agent, "bad", down=1)
    down = Feedback.objects.get(score=-1)
    down.comment = "Wrong order number"
    down.save()

    response = reviewer_client.get("/admin/conversations/feedback/", {"score__exact": "-1"})
    assert response.status_code == 200
    assert [f.pk for f in response.context["cl"].result_list] == [down.pk]
    html = response.content.decode()
    assert "Wrong order number" in html
    assert f'href="/admin/conversations/conversation/{bad.pk}/change/#msg-{down.message_id}"' \
        in html
    assert len(reviewer_client.get("/admin/conversations/feedback/").context["cl"].result_list) \
        == 2
    assert reviewer_client.get("/admin/conversations/feedback/add/").status_code == 403
    detail = reviewer_client.get(f"/admin/conversations/feedback/{down.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert reviewer_client.post(f"/admin/conversations/feedback/{down.pk}/change/",
                                {"comment": "x"}).status_code == 403
    assert good.pk != bad.pk


# Agents' connection test -------------------------------------------------------------------------


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_it_tests_a_demo_agent_connection(staff_client: Client, demo_agent: Agent):
    response = staff_client.post(
        f"/admin/conversations/agent/{demo_agent.pk}/test-connection/", follow=True
    )
    assert response.status_code == 200
    [message] = _messages(response)
    assert message.startswith("Demo agent: connection works (")
    assert "the vendor answered" in message


def test_it_tests_a_vendor_connection_from_the_list_action(
    staff_client: Client, openai_agent: Agent, fake_vendor: FakeVendor
):
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(
        sse(openai_chunk("", role="assistant")), sse(openai_chunk("pong")),
        sse(openai_chunk(finish_reason="stop")), sse("[DONE]"),
    ))
    response = staff_client.post("/admin/conversations/agent/", {
        "action": "test_connection_action", "_selected_action": [openai_agent.pk], "index": 0,
    }, follow=True)

    [message] = _messages(response)
    assert message.startswith("OpenAI-compatible: connection works (")
    assert message.endswith("the vendor answered “pong”.")
    [request] = fake_vendor.requests
    assert request.json()["messages"][-1] == {"role": "user", "content": "ping"}
    assert request.headers["authorization"] == "Bearer sk-test-secret"


def test_it_reports_a_refused_token_without_showing_it(
    staff_client: Client, openai_agent: Agent, fake_vendor: FakeVendor
):
    # A vendor that echoes the credential it refused: the token must still not be shown.
    fake_vendor.add_route("POST", "/v1/chat/completions", json_script(
        {"error": {"message": "Incorrect API key provided: sk-test-secret"}}, status=401
    ))
    response = staff_client.post(
        f"/admin/conversations/agent/{openai_agent.pk}/test-connection/", follow=True
    )

    [message] = _messages(response)
    assert message.startswith("OpenAI-compatible: connection failed [vendor_auth]:")
    assert "FAKE_OPENAI_KEY" in message
    assert "sk-test-secret" not in message
    assert "sk-test-secret" not in response.content.decode()


def test_it_reports_an_unreachable_vendor(staff_client: Client, refused_url: str):
    agent = Agent.objects.create(slug="gone", name="Gone", provider="openai",
                                 base_url=refused_url + "/v1", options={"model": "m"})
    response = staff_client.post(
        f"/admin/conversations/agent/{agent.pk}/test-connection/", follow=True
    )
    [message] = _messages(response)
    assert message == "Gone: connection failed [vendor_unreachable]: Could not connect to the " \
        "vendor."


def test_it_gives_up_on_a_silent_vendor(
    staff_client: Client, openai_agent: Agent, fake_vendor: FakeVendor,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(conversations_admin, "CONNECTION_TEST_TIMEOUT", 0.5)
    fake_vendor.add_route("POST", "/v1/chat/completions", sse_script(Pause(5)))
    started = time.monotonic()
    response = staff_client.post(
        f"/admin/conversations/agent/{openai_agent.pk}/test-connection/", follow=True
    )
    assert time.monotonic() - started < 4
    [message] = _messages(response)
    assert message == ("OpenAI-compatible: connection failed [vendor_timeout]: no answer "
                       "within 0.5 seconds")


def test_it_refuses_a_get_on_the_connection_test(staff_client: Client, demo_agent: Agent):
    url = f"/admin/conversations/agent/{demo_agent.pk}/test-connection/"
    assert staff_client.get(url).status_code == 405
