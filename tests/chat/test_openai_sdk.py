"""The official `openai` package as a client of the platform: a base URL and a key are enough."""

from __future__ import annotations

import openai
import pytest

from lipika.billing.pricebook import PriceBook

PRICE = PriceBook.load().get("demo")


@pytest.fixture
async def sdk(live_url: str, api_key: str):
    async with openai.AsyncOpenAI(
        base_url=f"{live_url}/v1", api_key=api_key, max_retries=0
    ) as client:
        yield client


async def test_the_sdk_completes(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hello from the SDK"}], max_tokens=12
    )
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 12
    extra = completion.usage.model_extra
    tokens = {"input_tokens": completion.usage.prompt_tokens, "output_tokens": 12}
    assert extra["credits_charged"] == PRICE.cost(tokens)


async def test_the_sdk_streams_with_usage(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "Stream to the SDK"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            deltas.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert len(deltas) == usage.completion_tokens > 0
    tokens = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
    assert usage.model_extra["credits_charged"] == PRICE.cost(tokens)
    assert usage.model_extra["balance_after"] == 100_000_000 - PRICE.cost(tokens)


async def test_the_sdk_lists_models_and_surfaces_our_errors(sdk: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in sdk.models.list()]
    assert "demo" in models and "claude-sonnet-4-5" in models
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        await sdk.with_options(api_key="lpk_wrong").models.list()
