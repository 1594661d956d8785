"""Shared fixtures: users, agents, logged-in clients."""

from __future__ import annotations

import asyncio
import asyncio.runners
import importlib
import io
import sys
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from conversations.models import Agent, Conversation

# The loopback fake vendor's fixtures (`fake_vendor`, `refused_url`) and the multi-process
# harness's (`database_url`, `vendor`, `shared_redis`, `migrated`, `pair`).
pytest_plugins = ["tests.fakevendor", "tests.cluster"]

# A test's event loop is closed by cancelling every task left on it and waiting for them all,
# without a bound (asyncio.runners._cancel_all_tasks). A task that never finishes its
# cancellation held a whole `make test` pass until pytest-timeout killed it (two PostgreSQL
# passes in 2026-11, not reproduced in isolation). Here the wait is bounded: past 15 s each task
# still pending is printed with its stack (a lead to follow, listed again at the end of the run)
# and the loop closes anyway; the test itself has already passed or failed on its own
# assertions.
STUCK_TASK_SECONDS = 15
stuck_tasks: list[str] = []
_cancel_all_tasks = asyncio.runners._cancel_all_tasks


def _bounded_cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=STUCK_TASK_SECONDS))
    for task in pending:
        if not task.done():
            out = io.StringIO()
            task.print_stack(file=out)
            stuck_tasks.append(out.getvalue())
            print(f"\nA task did not end when cancelled:\n{out.getvalue()}", file=sys.stderr)
            asyncio.tasks._unregister_task(task)  # type: ignore[attr-defined]
    _cancel_all_tasks(loop)


asyncio.runners._cancel_all_tasks = _bounded_cancel_all_tasks  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if stuck_tasks:
        terminalreporter.section("tasks that did not end when their event loop closed")
        for stack in stuck_tasks:
            terminalreporter.write_line(stack)


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


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice: Any) -> Client:
    return logged_in(alice)


@pytest.fixture
def api_client(alice: Any) -> Client:
    """Logged in with CSRF enforced, as a browser's fetch() would be."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/")  # sets the csrftoken cookie
    return client


def ensure_reviewer_group() -> Group:
    """The group migration 0003 creates. Transactional tests flush the database, which
    removes it (permissions come back with post_migrate, groups do not), so tests that run
    after one rebuild it from the migration's own list."""
    codenames = [
        *importlib.import_module("conversations.migrations.0003_reviewer_group")
        .REVIEWER_PERMISSIONS,
        *importlib.import_module("conversations.migrations.0011_review_workspace")
        .REVIEWER_PERMISSIONS,
    ]
    group, created = Group.objects.get_or_create(name="reviewer")
    if created:
        group.permissions.set(Permission.objects.filter(
            content_type__app_label="conversations", codename__in=codenames,
        ))
    return group


@pytest.fixture
def reviewer(db: Any) -> Any:
    """A reviewer: staff + the reviewer group."""
    user = get_user_model().objects.create_user("rita", "rita@example.com", None, is_staff=True)
    user.groups.add(ensure_reviewer_group())
    return user


@pytest.fixture
def reviewer_client(reviewer: Any) -> Client:
    """The reviewer, logged in."""
    return logged_in(reviewer)


@pytest.fixture
def staff_client(staff: Any) -> Client:
    """The superuser, logged in."""
    return logged_in(staff)


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
    """Rate-limit counters live in the cache, the review queues' rules in the process (a few
    seconds: services/queue_rules.py); each test starts from zero, whatever the last one left."""
    from django.core.cache import cache

    from conversations.services import queue_rules

    cache.clear()
    queue_rules.forget_rules()
    yield
    cache.clear()
    queue_rules.forget_rules()


@pytest.fixture
def openai_agent(db: Any, fake_vendor: Any, monkeypatch: Any) -> Agent:
    """An OpenAI-compatible agent pointed at the loopback fake vendor."""
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test-secret")
    return Agent.objects.create(
        slug="oai", name="OpenAI-compatible", provider="openai",
        base_url=fake_vendor.url + "/v1", token_env="FAKE_OPENAI_KEY",
        options={"model": "gpt-test"},
    )


@pytest.fixture
def dimedove_agent(db: Any, fake_vendor: Any, monkeypatch: Any) -> Agent:
    """A Dimedove agent (app `app_1`) pointed at the loopback fake vendor."""
    monkeypatch.setenv("DIMEDOVE_TEST_KEY", "sk_live_secret")
    return Agent.objects.create(
        slug="dove", name="Dove", provider="dimedove", base_url=fake_vendor.url,
        token_env="DIMEDOVE_TEST_KEY", options={"app_id": "app_1"},
    )


@pytest.fixture(autouse=True)
def _default_language() -> Any:
    """Each test starts in the site's language: a request or a test that switched to French
    leaves the thread's active language behind."""
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


# The PostgreSQL + Redis pass of `make test` (DB_TESTS_ONLY=1) runs the tests that reach the
# database; the rest (vendor stream parsing, frames, settings checks, the fuzzers of pure code)
# cannot behave differently there and already ran in the first pass. That keeps `make test`
# within its budget on two cores (about 30 min with both passes whole).
DB_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences",
               "django_db_serialized_rollback", "django_db_setup"}


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    import os

    if os.environ.get("DB_TESTS_ONLY") != "1":
        return
    keep, drop = [], []
    for item in items:
        uses_db = item.get_closest_marker("django_db") is not None or bool(
            DB_FIXTURES & set(getattr(item, "fixturenames", ())))
        (keep if uses_db else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
