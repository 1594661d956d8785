from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from conversations import services
from conversations.models import Agent, Conversation, Message, validate_metadata

pytestmark = pytest.mark.django_db


def test_it_scopes_conversations_to_their_owner(alice: Any, bob: Any, demo_agent: Agent):
    mine = Conversation.objects.create(owner=alice, agent=demo_agent)
    Conversation.objects.create(owner=bob, agent=demo_agent)
    assert list(Conversation.objects.for_user(alice)) == [mine]


def test_it_reads_the_token_from_the_environment_only(monkeypatch: Any):
    agent = Agent(slug="x", name="x", provider="openai", token_env="MY_KEY")
    monkeypatch.setenv("MY_KEY", "s3cret")
    assert agent.token() == "s3cret"
    assert "s3cret" not in {str(getattr(agent, f.attname)) for f in Agent._meta.concrete_fields}


def test_it_allows_one_default_agent(demo_agent: Agent):
    with pytest.raises(IntegrityError):
        Agent.objects.create(slug="other", name="o", provider="demo", is_default=True)


def test_it_validates_metadata_size_and_shape():
    validate_metadata({"a": "b"})
    with pytest.raises(ValidationError):
        validate_metadata([1])
    with pytest.raises(ValidationError):
        validate_metadata({"x": "y" * 16_400})


def test_it_prefers_the_user_title_then_the_generated_one(alice: Any, demo_agent: Agent):
    c = Conversation(owner=alice, agent=demo_agent,
                     generated_titles={"en-ca": "Refund", "fr-ca": "Remboursement"})
    assert c.display_title("fr-CA") == "Remboursement"
    assert c.display_title("en") == "Refund"
    c.title = "Mine"
    assert c.display_title("fr") == "Mine"
    assert Conversation(owner=alice, agent=demo_agent).display_title() == "New conversation"


def test_it_keeps_client_ids_unique_per_conversation(conversation: Conversation):
    Message.objects.create(conversation=conversation, seq=1, role="user", client_id="k")
    with pytest.raises(IntegrityError):
        Message.objects.create(conversation=conversation, seq=2, role="user", client_id="k")


def test_it_builds_history_without_failed_replies(conversation: Conversation, alice: Any):
    first = services.accept_user_message(conversation.id, alice, content="one")
    services.finish_run(first.assistant_message.id, conversation.id, services.RunOutcome(
        status="failed", content="", error_code="vendor_timeout", error_message="t"))
    second = services.accept_user_message(conversation.id, alice, content="two",
                                          client_id="c2")
    assert [t.content for t in second.request.history] == ["one"]
    assert second.request.message == "two"
    with pytest.raises(services.InvalidInput) as exc:
        services.accept_user_message(conversation.id, alice, content="three")
    assert exc.value.code == "run_active"
