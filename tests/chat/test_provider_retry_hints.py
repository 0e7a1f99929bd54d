"""A provider's rate limit passes its hint on: our 429 (or 503) carries `Retry-After` and
`retry-after-ms` from the provider's own (`retry-after-ms`, `retry-after`, Anthropic's reset
headers, Google's RetryInfo), and the official SDK retries after it, each retry one request
here and one at the provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import openai
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from lipika.providers.errors import retry_hint
from tests.fixtures.live import serve

MODELS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash-lite",
    "xai": "grok-3-mini",
}
# Anthropic's retry-after is whole seconds: its hint is 1 s, so its SDK retries once here.
HINT_MS = {"openai": 50, "xai": 50, "gemini": 50, "anthropic": 1000}


class Counting:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.chat_requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            self.chat_requests += 1
        await self.app(scope, receive, send)


@pytest.fixture
async def counted(provider_app) -> AsyncIterator[tuple[Counting, str]]:
    counting = Counting(provider_app)
    async with serve(counting) as url:
        yield counting, url


@pytest.mark.parametrize("provider", list(MODELS))
async def test_the_sdk_retries_a_provider_rate_limit_after_the_providers_hint(
    provider: str, counted, api_key: str, fake_providers
) -> None:
    counting, url = counted
    fake = fake_providers[provider]
    retries = 1 if provider == "anthropic" else 2
    async with openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key=api_key, max_retries=retries
    ) as sdk:
        for stream in (False, True):  # a stream that fails at once is a plain HTTP error
            fake.reset()
            counting.chat_requests = 0
            with pytest.raises(openai.RateLimitError) as raised:
                await sdk.chat.completions.create(
                    model=MODELS[provider],
                    messages=[{"role": "user", "content": "Hi [[fail=rate_limit retry_ms=50]]"}],
                    stream=stream,
                )
            headers = raised.value.response.headers
            assert raised.value.code == "provider_rate_limited"
            assert headers["retry-after-ms"] == str(HINT_MS[provider])
            assert headers["retry-after"] == "1"
            assert "x-should-retry" not in headers  # the SDK's own rule: a 429 is retried
            assert counting.chat_requests == retries + 1 == len(fake.calls)


async def test_an_overloaded_provider_passes_its_hint_on_as_a_503(
    counted, api_key: str, fake_providers
) -> None:
    _, url = counted
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError) as raised:
            await sdk.chat.completions.create(
                model=MODELS["openai"],
                messages=[{"role": "user", "content": "Hi [[fail=overloaded retry_ms=2500]]"}],
            )
    assert raised.value.status_code == 503
    assert raised.value.response.headers["retry-after"] == "3"
    assert raised.value.response.headers["retry-after-ms"] == "2500"


def test_the_hint_is_read_from_each_providers_headers() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    assert retry_hint({"retry-after-ms": "120", "retry-after": "9"}) == 0.12
    assert retry_hint({"retry-after": "7"}) == 7
    assert 25 < retry_hint({"retry-after": format_datetime(soon, usegmt=True)}) <= 30
    reset = {
        "anthropic-ratelimit-requests-reset": soon.isoformat().replace("+00:00", "Z"),
        "anthropic-ratelimit-tokens-reset": (soon + timedelta(seconds=30)).isoformat(),
    }
    assert 25 < retry_hint(reset) <= 30
    assert retry_hint({"retry-after": "soon"}) is None and retry_hint({}) is None
