"""What the provider tests share: one `AgentSpec` per test file says what its agent and requests
look like; `request` builds a `RunRequest` from it, `collect` reads a whole stream.

    AGENT = AgentSpec(OpenAIProvider, slug="gpt", options={"model": "gpt-test"}, path="/v1/")
    make_request, collect = AGENT.request, AGENT.collect

    events = await collect(make_request(fake_vendor, "Hi", temperature=0.2))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conversations.events import ProviderEvent
from conversations.providers.base import AgentConfig, ChatTurn, Provider, RunRequest, Timeouts
from tests.fakevendor import FakeVendor

# Short enough that a test waiting on a hang fails in seconds, long enough for a loaded machine
# to answer a loopback request.
FAST = Timeouts(connect=2.0, read=5.0)


@dataclass(frozen=True)
class AgentSpec:
    provider: type[Provider]
    slug: str
    # The options every agent of the file has (the required ones).
    options: dict[str, Any] = field(default_factory=dict)
    token_env: str = ""
    # Appended to the vendor's URL to make the agent's base URL ("/v1/" for OpenAI).
    path: str = ""
    message: str = "Hello?"
    conversation_id: str = "c1"
    vendor_conversation_id: str = ""
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    timeouts: Timeouts = FAST

    def agent(
        self,
        vendor: FakeVendor | str | None = None,
        *,
        base_url: str | None = None,
        options: dict[str, Any] | None = None,
        **extra: Any,
    ) -> AgentConfig:
        """The agent at `vendor` (a FakeVendor or a URL; None: no base URL). `options` replaces
        the spec's options; keyword arguments are added to them."""
        if base_url is None:
            url = vendor.url if isinstance(vendor, FakeVendor) else vendor
            base_url = "" if url is None else f"{url}{self.path}"
        return AgentConfig(
            slug=self.slug,
            provider=self.provider.kind,
            name=self.name,
            base_url=base_url,
            token_env=self.token_env,
            options={**self.options, **extra} if options is None else options,
        )

    def request(
        self,
        vendor: FakeVendor | str | None = None,
        message: str | None = None,
        *,
        # RunRequest.history; not `history`, which is an AG-Kit option.
        turns: list[ChatTurn] | None = None,
        title: str | None = None,
        external_user_id: str = "",
        metadata: dict[str, Any] | None = None,
        vendor_conversation_id: str | None = None,
        resume: dict[str, Any] | None = None,
        base_url: str | None = None,
        options: dict[str, Any] | None = None,
        **extra: Any,
    ) -> RunRequest:
        """A request of the spec's agent; unset fields take the spec's defaults and any other
        keyword argument is an agent option."""
        return RunRequest(
            agent=self.agent(vendor, base_url=base_url, options=options, **extra),
            conversation_id=self.conversation_id,
            message=self.message if message is None else message,
            history=turns or [],
            title=self.title if title is None else title,
            external_user_id=external_user_id,
            metadata=dict(self.metadata) if metadata is None else metadata,
            vendor_conversation_id=(
                self.vendor_conversation_id
                if vendor_conversation_id is None
                else vendor_conversation_id
            ),
            resume=resume,
        )

    def make_provider(self) -> Provider:
        return self.provider(self.timeouts)

    async def collect(self, request: RunRequest) -> list[ProviderEvent]:
        """Every event the provider yields for `request`, read to the end."""
        return [event async for event in self.make_provider().stream(request)]
