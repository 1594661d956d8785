"""Every vendor provider refuses a misconfigured agent before sending anything (base.py
`Provider.check_agent`): `agent_misconfigured`, with a message saying what is missing."""

from __future__ import annotations

from typing import Any

import pytest

from conversations.events import ErrorCode
from conversations.providers import provider_class
from conversations.providers.base import AgentConfig, RunRequest, VendorError
from tests.fakevendor import FakeVendor
from tests.providers_helpers import FAST

MODEL = "8e9f0a1b-2c3d-4e4f-8a5b-6c7d8e9f0a1b"
APP = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"

# (provider kind, whether the agent has a base URL, its options, words the message must hold)
CASES = {
    "openai-no-url": ("openai", False, {"model": "m"}, "no base URL"),
    "openai-no-model": ("openai", True, {}, "missing option 'model'"),
    "agkit-no-url": ("agkit", False, {"agent_id": "a"}, "no base URL"),
    "agkit-no-agent-id": ("agkit", True, {}, "missing option 'agent_id'"),
    "dynamiq-no-url": ("dynamiq", False, {"model_id": MODEL}, "no base URL"),
    "dynamiq-model-and-app": (
        "dynamiq", True, {"model_id": MODEL, "app_id": APP}, "exclude each other"
    ),
    "loop-bad-mode": ("loop", True, {"mode": "stream"}, "'mode'"),
    # No base URL: Dimedove's default host would be used, but the option check comes first.
    "dimedove-no-app-id": ("dimedove", False, {}, "missing option 'app_id'"),
}


@pytest.mark.parametrize(("kind", "has_url", "options", "words"), CASES.values(), ids=CASES)
async def test_it_refuses_a_misconfigured_agent(
    fake_vendor: FakeVendor, kind: str, has_url: bool, options: dict[str, Any], words: str
) -> None:
    agent = AgentConfig(
        slug="misconfigured",
        provider=kind,
        base_url=fake_vendor.url if has_url else "",
        options=options,
    )
    request = RunRequest(agent=agent, conversation_id="c1", message="Hi")

    with pytest.raises(VendorError) as caught:
        [event async for event in provider_class(kind)(FAST).stream(request)]

    assert caught.value.code == ErrorCode.AGENT_MISCONFIGURED
    assert words in caught.value.message
    assert fake_vendor.requests == []
