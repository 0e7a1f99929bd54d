"""The registry builds one adapter per provider from the settings."""

from __future__ import annotations

from typing import Any

from lipika.config import Settings
from lipika.providers.base import ChatRequest, Message, Usage
from lipika.providers.registry import build_registry
from lipika.providers.xai import XAIProvider
from tests.fixtures.fakes.fixtures import PROVIDERS, FakeProviders


async def test_configured_providers_answer(
    fake_provider_settings: dict[str, Any], fake_providers: FakeProviders
) -> None:
    registry = build_registry(Settings(_env_file=None, **fake_provider_settings))
    try:
        assert set(registry.providers) == {"demo", *PROVIDERS}
        for name in PROVIDERS:
            provider = registry.get(name)
            assert provider is not None and provider.available and provider.name == name
            request = ChatRequest("test-model", [Message("user", "[[tokens=2]]")], 10)
            result = await provider.complete(request)
            assert result.text == "w1 w2"
            assert result.usage == Usage(1 + 3, 2, 0)
            assert fake_providers[name].last_call.status == "completed"
    finally:
        await registry.aclose()


async def test_providers_without_a_key_are_listed_but_unavailable() -> None:
    registry = build_registry(Settings(_env_file=None))
    assert set(registry.providers) == {"demo", *PROVIDERS}
    assert [n for n, p in registry.providers.items() if p.available] == ["demo"]
    await registry.aclose()


async def test_xai_defaults_to_its_own_endpoint() -> None:
    """Without a base URL xAI must not fall back to the OpenAI SDK's default (api.openai.com)."""
    provider = XAIProvider("xai-key", None, timeout=5.0, max_retries=0)
    assert str(provider.client.base_url) == "https://api.x.ai/v1/"
    await provider.aclose()
