"""Shared fixtures: users, agents, logged-in clients."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from conversations.models import Agent, Conversation

# The loopback fake vendor's fixtures (`fake_vendor`, `refused_url`) and the multi-process
# harness's (`database_url`, `vendor`, `shared_redis`, `migrated`, `pair`).
pytest_plugins = ["tests.fakevendor", "tests.cluster"]


@pytest.fixture
def alice(db: Any) -> Any:
    return get_user_model().objects.create_user("alice", "alice@example.com", "pw-alice-123")


@pytest.fixture
def bob(db: Any) -> Any:
    return get_user_model().objects.create_user("bob", "bob@example.com", "pw-bob-123")


@pytest.fixture
def staff(db: Any) -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")


@pytest.fixture
def demo_agent(db: Any) -> Agent:
    # delay 0: the demo's realistic pace (~40 deltas/s) is for people, not for the suite.
    return Agent.objects.create(
        slug="demo", name="Demo agent", provider="demo", is_default=True, options={"delay": 0}
    )


@pytest.fixture
def alice_client(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def api_client(alice: Any) -> Client:
    """Logged in with CSRF enforced, as a browser's fetch() would be."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/")  # sets the csrftoken cookie
    return client


@pytest.fixture
def reviewer_client(db: Any) -> Client:
    """A reviewer (staff + the reviewer group) logged in."""
    from tests.test_admin_review import ensure_reviewer_group

    user = get_user_model().objects.create_user("rita", "rita@example.com", None, is_staff=True)
    user.groups.add(ensure_reviewer_group())
    client = Client()
    client.force_login(user)
    return client


def csrf_headers(client: Client) -> dict[str, str]:
    token = client.cookies["csrftoken"].value
    return {"HTTP_X_CSRFTOKEN": token}


@pytest.fixture
def conversation(alice: Any, demo_agent: Agent) -> Conversation:
    return Conversation.objects.create(owner=alice, agent=demo_agent, title="Refund question")


@pytest.fixture(autouse=True)
def _no_reaper_task(settings: Any) -> None:
    """In-process tests reap explicitly; the periodic task is exercised with real processes."""
    settings.RELAY_REAP_INTERVAL = 0


@pytest.fixture(autouse=True)
def _own_rate_limit_keys(settings: Any) -> None:
    """On Redis the limits' counters outlive a test (60 s windows): each test counts apart."""
    import uuid

    settings.RATE_LIMIT_KEY_PREFIX = f"test:{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    """Rate-limit counters live in the cache; each test starts from zero."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def openai_agent(db: Any, fake_vendor: Any, monkeypatch: Any) -> Agent:
    """An OpenAI-compatible agent pointed at the loopback fake vendor."""
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test-secret")
    return Agent.objects.create(
        slug="oai", name="OpenAI-compatible", provider="openai",
        base_url=fake_vendor.url + "/v1", token_env="FAKE_OPENAI_KEY",
        options={"model": "gpt-test"},
    )
