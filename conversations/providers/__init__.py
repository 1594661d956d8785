"""Provider registry: one module per vendor, selected by the agent's provider kind."""

from __future__ import annotations

from typing import Any

from conversations.providers.base import AgentConfig, Capabilities, Provider, Timeouts


def _registry() -> dict[str, type[Provider]]:
    from conversations.providers.agkit import AGKitProvider
    from conversations.providers.demo import DemoProvider
    from conversations.providers.dimedove import DimedoveProvider
    from conversations.providers.dynamiq import DynamiqProvider
    from conversations.providers.loop import LoopProvider
    from conversations.providers.openai import OpenAIProvider

    return {cls.kind: cls for cls in (
        DemoProvider, OpenAIProvider, DimedoveProvider, DynamiqProvider, LoopProvider,
        AGKitProvider,
    )}


def provider_kinds() -> list[str]:
    return sorted(_registry())


def provider_class(kind: str) -> type[Provider]:
    try:
        return _registry()[kind]
    except KeyError:
        raise LookupError(f"unknown provider {kind!r}") from None


def get_provider(kind: str, timeouts: Timeouts | None = None) -> Provider:
    """The provider for `kind`; callers pass the configured timeouts
    (services.vendor_timeouts), so providers read no settings."""
    return provider_class(kind)(timeouts)


def capabilities(kind: str, options: dict[str, Any] | None = None) -> Capabilities:
    """What an agent of provider `kind` with `options` supports (docs/providers.md); nothing
    beyond plain messages for an unknown kind."""
    try:
        cls = provider_class(kind)
    except LookupError:
        return Capabilities(branches_in_place=False)
    return cls.capabilities_for(AgentConfig(slug="", provider=kind, options=dict(options or {})))
