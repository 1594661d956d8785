"""An agent's token variable must match AGENT_TOKEN_ENV_PATTERN and never be one of chatsite's
own settings: the admin form, `agents add` and the run itself refuse it, so SECRET_KEY can never
be sent to a vendor URL a staff member typed."""

from __future__ import annotations

import asyncio
import re
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

from conversations.models import Agent, Conversation, Message
from conversations.relay import relay
from conversations.token_env import token_env_problem
from tests.fakevendor import openai_chunk, sse, sse_script
from tests.livesrv import ROOT
from tests.wsclient import open_socket

REFUSED = ["SECRET_KEY", "DATABASE_URL", "REDIS_URL", "openai_api_key", "MY_PASSWORD",
           "RATE_LIMIT_KEY", "DJANGO_SECRET_KEY"]
ACCEPTED = ["OPENAI_API_KEY", "LOOP_TOKEN", "OLLAMA_KEY", "DYNAMIQ_CLIENT_SECRET", "V2_API_KEY"]


def agent_form(token_env: str) -> dict[str, str]:
    return {"slug": "gpt", "name": "GPT", "provider": "openai",
            "base_url": "http://127.0.0.1:9/v1", "token_env": token_env,
            "options": '{"model": "m"}', "is_active": "on"}


@pytest.mark.parametrize("name", REFUSED)
def test_it_refuses_names_outside_the_pattern_or_reserved(name: str):
    problem = token_env_problem(name)
    assert problem is not None and name in problem


@pytest.mark.parametrize("name", [*ACCEPTED, ""])
def test_it_accepts_token_names_and_no_token(name: str):
    assert token_env_problem(name) is None


def test_it_follows_the_pattern_setting_but_never_unlocks_reserved_names(settings: Any):
    settings.AGENT_TOKEN_ENV_PATTERN = r"[A-Z_]+"
    assert token_env_problem("VENDOR_PASSWORD") is None
    assert token_env_problem("DATABASE_URL") is not None
    assert token_env_problem("SECRET_KEY") is not None


def test_it_refuses_every_variable_the_settings_read(settings: Any):
    # Even with a pattern that lets any name through, chatsite's own settings stay refused, so
    # this fails the day settings.py reads a variable token_env.RESERVED does not list.
    source = (ROOT / "chatsite" / "settings.py").read_text()
    names = set(re.findall(r"env\.\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DEBUG"} <= names
    settings.AGENT_TOKEN_ENV_PATTERN = r"[A-Z0-9_]+"
    assert sorted(n for n in names if token_env_problem(n) is None) == []


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["SECRET_KEY", "DATABASE_URL", "lowercase_key"])
def test_it_refuses_the_name_in_the_admin_form(staff_client: Client, name: str):
    response = staff_client.post("/admin/conversations/agent/add/", agent_form(name))
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["token_env"]
    assert name in errors["token_env"][0]
    assert not Agent.objects.exists()


@pytest.mark.django_db
def test_it_saves_an_allowed_name_from_the_admin_form(staff_client: Client):
    response = staff_client.post("/admin/conversations/agent/add/", agent_form("OPENAI_API_KEY"))
    assert response.status_code == 302
    assert Agent.objects.get().token_env == "OPENAI_API_KEY"


@pytest.mark.django_db
def test_it_refuses_the_name_in_model_validation():
    agent = Agent(slug="x", name="x", provider="demo", token_env="REDIS_URL")
    with pytest.raises(ValidationError) as exc:
        agent.full_clean()
    assert list(exc.value.message_dict) == ["token_env"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["SECRET_KEY", "DATABASE_URL", "lowercase_key"])
def test_it_refuses_the_name_in_the_agents_command(name: str):
    with pytest.raises(CommandError) as exc:
        call_command("agents", "add", "gpt", "--provider", "openai", "--base-url",
                     "http://127.0.0.1:9/v1", "--token-env", name, "--option", "model=m",
                     stdout=StringIO())
    assert f"bad --token-env {name!r}" in str(exc.value)
    assert "AGENT_TOKEN_ENV_PATTERN" in str(exc.value) or "own settings" in str(exc.value)
    assert not Agent.objects.exists()


@pytest.mark.django_db
def test_it_never_reads_a_refused_variable_from_the_model(monkeypatch: Any):
    monkeypatch.setenv("SECRET_KEY", "the-site-secret")
    assert Agent(slug="x", provider="openai", token_env="SECRET_KEY").token() is None
    monkeypatch.setenv("MY_API_KEY", "sk-fine")
    assert Agent(slug="y", provider="openai", token_env="MY_API_KEY").token() == "sk-fine"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["SECRET_KEY", "DATABASE_URL"])
async def test_it_fails_a_run_of_an_old_row_without_calling_the_vendor(
    alice_client: Client, alice: Any, fake_vendor: Any, monkeypatch: Any, name: str
):
    monkeypatch.setenv(name, "value-that-must-stay-home")
    # A row saved before the rule existed: create() skips validation, as old data did.
    agent = await database_sync_to_async(Agent.objects.create)(
        slug="old", name="Old", provider="openai", base_url=fake_vendor.url + "/v1",
        token_env=name, options={"model": "m"},
    )
    fake_vendor.add_route("POST", "/v1/chat/completions",
                          sse_script(sse(openai_chunk("hi")), sse("[DONE]")))
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, agent=agent)
    _, sock = await open_socket(alice_client, conversation.id)
    await sock.send({"type": "message.send", "content": "hello"})
    final = (await sock.recv_until("message.failed", "message.completed"))[-1]
    await sock.close()
    for _ in range(500):
        if not relay.runs:
            break
        await asyncio.sleep(0.01)
    assert final["type"] == "message.failed"
    assert final["message"]["error"]["code"] == "agent_misconfigured"
    assert name in final["message"]["error"]["message"]
    assert "value-that-must-stay-home" not in str(final)
    # The vendor was never called, so no Authorization header (or anything) reached it.
    assert [r.headers.get("authorization") for r in fake_vendor.requests] == []
    stored = await database_sync_to_async(Message.objects.get)(pk=final["message"]["id"])
    assert (stored.status, stored.error_code) == ("failed", "agent_misconfigured")


@pytest.mark.django_db(transaction=True)
def test_it_refuses_the_admin_connection_test_of_an_old_row(
    staff_client: Client, fake_vendor: Any, monkeypatch: Any
):
    monkeypatch.setenv("SECRET_KEY", "value-that-must-stay-home")
    agent = Agent.objects.create(
        slug="old", name="Old", provider="openai", base_url=fake_vendor.url + "/v1",
        token_env="SECRET_KEY", options={"model": "m"},
    )
    response = staff_client.post(f"/admin/conversations/agent/{agent.pk}/test-connection/",
                                 follow=True)
    shown = " ".join(str(m) for m in response.context["messages"])
    assert "agent_misconfigured" in shown
    assert "value-that-must-stay-home" not in response.content.decode()
    assert fake_vendor.requests == []
