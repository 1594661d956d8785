from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from conversations.models import Agent, Conversation

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("agents", *args, stdout=out)
    return out.getvalue()


def test_it_adds_lists_and_removes_agents():
    out = run("add", "local", "--provider", "openai", "--base-url", "http://127.0.0.1:11434/v1",
              "--token-env", "OLLAMA_KEY", "--option", "model=llama3", "--option",
              "temperature=0.2", "--name", "Local Llama", "--default")
    assert out.strip() == "added agent local (openai) [default]"
    agent = Agent.objects.get(slug="local")
    assert agent.options == {"model": "llama3", "temperature": 0.2}
    assert (agent.name, agent.token_env, agent.is_default) == ("Local Llama", "OLLAMA_KEY", True)
    listing = run("list")
    assert "local\topenai\thttp://127.0.0.1:11434/v1\tOLLAMA_KEY" in listing
    assert run("remove", "local").strip() == "removed agent local"
    assert not Agent.objects.exists()


def test_it_moves_the_default_flag():
    run("add", "a", "--provider", "demo")
    run("add", "b", "--provider", "demo", "--default")
    assert list(Agent.objects.filter(is_default=True).values_list("slug", flat=True)) == ["b"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["add", "x", "--provider", "nope"], "unknown provider 'nope'"),
        (["add", "x", "--provider", "openai", "--base-url", "not a url",
          "--option", "model=m"], "bad URL 'not a url'"),
        (["add", "x", "--provider", "openai", "--option", "model=m"], "needs --base-url"),
        (["add", "x", "--provider", "openai", "--base-url", "http://h/v1"],
         "missing option 'model'"),
        (["add", "x", "--provider", "openai", "--base-url", "http://h/v1", "--option", "model"],
         "malformed option 'model'"),
        (["add", "x", "--provider", "demo", "--token-env", "sk-123 secret"], "bad --token-env"),
        (["remove", "ghost"], "no agent with slug 'ghost'"),
    ],
)
def test_it_prints_one_clear_line_for_bad_input(args: list[str], error: str):
    with pytest.raises(CommandError) as exc:
        run(*args)
    assert error in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not Agent.objects.exists()


def test_it_refuses_duplicate_slugs(demo_agent: Agent):
    with pytest.raises(CommandError, match="already exists"):
        run("add", "demo", "--provider", "demo")


def test_it_refuses_to_remove_an_agent_in_use(conversation: Conversation):
    with pytest.raises(CommandError, match="has 1 conversation"):
        run("remove", "demo")
    assert Agent.objects.filter(slug="demo").exists()


def test_it_bootstraps_a_fresh_database_once(capsys: Any):
    out = StringIO()
    call_command("bootstrap", stdout=out)
    text = out.getvalue()
    assert "username: admin" in text and "http://127.0.0.1:8000/accounts/login/" in text
    password = text.split("password: ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    demo = Agent.objects.get(slug="demo")
    assert demo.provider == "demo" and demo.is_default
    again = StringIO()
    call_command("bootstrap", stdout=again)
    assert "password" not in again.getvalue()
    assert get_user_model().objects.count() == 1 and Agent.objects.count() == 1
