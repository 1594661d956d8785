"""Which agent a conversation talks to, the configuration a provider is handed, the provider
kinds and option checks the admin's agent form offers, and the admin's "Test connection" probe
(through `Provider.run`, so its errors are mapped and redacted as the relay's are)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils.text import Truncator
from django.utils.translation import gettext as _

from conversations import events as ev
from conversations.models import Agent, Conversation
from conversations.providers import get_provider, provider_class

# Re-exported: the admin's agent form lists the kinds and imports no provider module itself.
from conversations.providers import provider_kinds as provider_kinds
from conversations.providers.base import AgentConfig, RunRequest, Timeouts, error_for_exception
from conversations.services.costs import price_problems
from conversations.services.errors import InvalidInput
from conversations.token_env import token_env_problem


def resolve_agent(slug: Any) -> Agent:
    if slug in (None, ""):
        agent = Agent.objects.default()
        if agent is None:
            raise InvalidInput(
                "invalid", _("No agent is configured."), field="agent", status=422
            )
        return agent
    if not isinstance(slug, str):
        raise InvalidInput("invalid", _("agent must be an agent slug."), field="agent")
    agent = Agent.objects.active().filter(slug=slug).first()
    if agent is None:
        raise InvalidInput(
            "invalid", _("Unknown agent “%(slug)s”.") % {"slug": slug}, field="agent",
            status=422,
        )
    return agent


def last_used_agent(user: Any, agents: list[Agent]) -> Agent:
    """Among `agents` (those offered to the user), the agent of the user's most recently
    updated conversation (stored, so it follows the user across devices), else the default
    agent, else the first offered."""
    last = (
        Conversation.objects.for_user(user).filter(agent__is_active=True)
        .order_by("-updated_at", "-pk").values_list("agent_id", flat=True).first()
    )
    by_id = {agent.pk: agent for agent in agents}
    if last in by_id:
        return by_id[last]
    default = Agent.objects.default()
    return default if default is not None and default.pk in by_id else agents[0]


def vendor_timeouts() -> Timeouts:
    """VENDOR_CONNECT_TIMEOUT / VENDOR_READ_TIMEOUT, for every call to a vendor."""
    return Timeouts(connect=settings.VENDOR_CONNECT_TIMEOUT, read=settings.VENDOR_READ_TIMEOUT)


def agent_config(agent: Agent) -> AgentConfig:
    return AgentConfig(
        slug=agent.slug,
        provider=agent.provider,
        name=agent.name,
        base_url=agent.base_url,
        token_env=agent.token_env,
        options=dict(agent.options or {}),
        token_refused=token_env_problem(agent.token_env) or "",
    )


def ensure_demo_agent() -> Agent:
    agent, _created = Agent.objects.get_or_create(
        slug="demo",
        defaults={"name": "Demo agent", "provider": "demo", "is_active": True},
    )
    if not Agent.objects.filter(is_default=True).exists():
        agent.is_default = True
        agent.save(update_fields=["is_default"])
    return agent


def agent_options_problems(kind: str, options: dict[str, Any]) -> list[str]:
    """What is wrong with `options` for a provider of `kind` (empty when nothing is), the
    prices every kind may carry (services.costs) included."""
    return [*provider_class(kind).validate_options(options), *price_problems(options)]

# 20 s: long enough for a cold vendor to send its first token, short enough that a person waits
# for the page.
CONNECTION_TEST_TIMEOUT = 20.0


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str
    code: str = ""
    elapsed_ms: int = 0


async def _probe(agent: Agent) -> ConnectionResult:
    config = agent_config(agent)
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    provider = get_provider(
        agent.provider,
        Timeouts(connect=min(10.0, CONNECTION_TEST_TIMEOUT), read=CONNECTION_TEST_TIMEOUT),
    )
    request = RunRequest(
        agent=config, conversation_id=f"connection-test-{uuid.uuid4()}", message="ping"
    )
    # aclosing: leaving at the first text delta must close the vendor's HTTP stream now.
    async with contextlib.aclosing(provider.run(request)) as stream:  # type: ignore[type-var]
        async for event in stream:
            if isinstance(event, ev.TextDelta) and event.text:
                return ConnectionResult(
                    True, _("the vendor answered “%(text)s”")
                    % {"text": Truncator(event.text).chars(60)}, elapsed_ms=elapsed(),
                )
            if isinstance(event, ev.RunCompleted | ev.InterruptRequested):
                return ConnectionResult(True, _("the vendor completed the run"),
                                        elapsed_ms=elapsed())
            if isinstance(event, ev.RunFailed):
                return ConnectionResult(False, event.message, event.code, elapsed())
    return ConnectionResult(
        False, _("the vendor's stream ended without a reply"), ev.ErrorCode.VENDOR_TRUNCATED,
        elapsed(),
    )


def check_connection(agent: Agent) -> ConnectionResult:
    """Stream "ping" to the agent's vendor and stop at the first text (or terminal event).

    The result's message never contains the token: vendors sometimes echo the credential they
    refused, and `Provider.run` redacts whatever comes back.
    """

    async def run() -> ConnectionResult:
        try:
            return await asyncio.wait_for(_probe(agent), CONNECTION_TEST_TIMEOUT)
        except TimeoutError:
            return ConnectionResult(
                False, _("no answer within %(seconds)s seconds")
                % {"seconds": f"{CONNECTION_TEST_TIMEOUT:g}"}, ev.ErrorCode.VENDOR_TIMEOUT,
            )
        except LookupError as exc:
            return ConnectionResult(False, str(exc), ev.ErrorCode.AGENT_MISCONFIGURED)
        except Exception as exc:
            err = error_for_exception(exc, agent_config(agent))
            return ConnectionResult(False, err.message, err.code)

    # Vendor text in the result was redacted at the provider boundary (Provider.run).
    return async_to_sync(run)()
