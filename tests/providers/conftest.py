"""Adapters under test, built against the fake provider servers (whose fixtures tests/conftest.py
loads for the whole suite)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from lipika.providers.anthropic import AnthropicProvider
from lipika.providers.base import ChatProvider
from lipika.providers.gemini import GeminiProvider
from lipika.providers.openai import OpenAIProvider
from lipika.providers.xai import XAIProvider
from tests.fixtures.fakes.fixtures import FakeProviders
from tests.fixtures.fakes.server import FakeServer

ADAPTERS: dict[str, type[ChatProvider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "xai": XAIProvider,
}


@pytest.fixture(params=list(ADAPTERS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fake(name: str, fake_providers: FakeProviders) -> FakeServer:
    """The fake server of this test's provider, its call log cleared."""
    server = fake_providers[name]
    server.reset()
    return server


@pytest.fixture(scope="session")
async def adapters(fake_providers: FakeProviders) -> AsyncIterator[Callable[..., ChatProvider]]:
    """`adapters(name, timeout=..., api_key=...)`: an adapter against the fake, built once per
    session for each set of arguments (building an SDK client costs up to a quarter second)."""
    built: dict[tuple[str, float, str | None], ChatProvider] = {}

    def get(name: str, *, timeout: float = 5.0, api_key: str | None = None) -> ChatProvider:
        key = (name, timeout, api_key)
        if key not in built:
            fake = fake_providers[name]
            built[key] = ADAPTERS[name](
                api_key or fake.api_key, fake.base_url, timeout=timeout, max_retries=0
            )
        return built[key]

    yield get
    for adapter in built.values():
        await adapter.aclose()


@pytest.fixture
def adapter(name: str, fake: FakeServer, adapters: Callable[..., ChatProvider]) -> ChatProvider:
    """This test's adapter, against its fake."""
    return adapters(name)
