"""Many streams at once from one process, across every provider: each charged its own usage."""

from __future__ import annotations

import asyncio

import httpx

from lipika.billing.pricebook import PriceBook
from tests.chat.sse import parse
from tests.chat.test_provider_streams import MODELS

PRICES = PriceBook.load()
FREE_MONTHLY = 100_000_000
STREAMS_PER_ACCOUNT = 12


async def test_concurrent_streams_are_charged_separately_and_exactly(
    provider_client: httpx.AsyncClient, client: httpx.AsyncClient, signup, books
) -> None:
    accounts = [await signup() for _ in range(4)]
    providers = list(MODELS)

    async def one(account, i: int) -> tuple[object, dict]:
        provider = providers[i % len(providers)]
        tokens = 5 + i
        body = {
            "model": MODELS[provider],
            "messages": [{"role": "user", "content": f"Stream {i} [[tokens={tokens} delay_ms=5]]"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 100,  # holds sized for the answer, not the model's ceiling: all fit the cap
        }
        response = await provider_client.post(
            "/v1/chat/completions", json=body, headers=account.headers
        )
        assert response.status_code == 200, response.text
        stream = parse(response.text)
        assert stream.done, stream.events[-1]
        assert len(stream.deltas) == tokens
        usage = stream.usage
        assert usage["completion_tokens"] == tokens
        expected = PRICES.get(MODELS[provider]).cost(
            {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
        )
        assert usage["credits_charged"] == expected
        return account, usage

    results = await asyncio.gather(
        *(one(account, i) for account in accounts for i in range(STREAMS_PER_ACCOUNT))
    )
    for account in accounts:
        charged = sum(usage["credits_charged"] for owner, usage in results if owner is account)
        balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
        assert (balance["balance"], balance["held"]) == (FREE_MONTHLY - charged, 0)
    await books.assert_balanced()
