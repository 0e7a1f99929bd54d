"""Every provider end to end: the platform's OpenAI surface -> the real adapter -> its fake
server, with the ledger checked after each answer, failure and disconnect."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from lipika.billing.pricebook import PriceBook
from tests.chat.sse import parse
from tests.fixtures.fakes.scenario import FakeCall

MODELS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash-lite",
    "xai": "grok-3-mini",
}
PRICES = PriceBook.load()
FREE_MONTHLY = 100_000_000

pytestmark = pytest.mark.parametrize("provider", list(MODELS))


def ask(provider: str, content: str, *, stream: bool = True) -> dict:
    body = {
        "model": MODELS[provider],
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def charge_of(provider: str, call: FakeCall) -> int:
    """What the price book says the usage the fake reported costs."""
    return PRICES.get(MODELS[provider]).cost(
        {
            "input_tokens": call.input_tokens - call.cached_tokens,
            "cached_input_tokens": call.cached_tokens,
            "output_tokens": call.output_tokens,
        }
    )


async def ledger(client: httpx.AsyncClient, account) -> tuple[dict, list[dict]]:
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    entries = (await client.get("/v1/billing/ledger", headers=account.headers)).json()["data"]
    return balance, entries


async def test_a_stream_is_relayed_token_by_token_and_charged_the_reported_usage(
    provider: str,
    provider_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    signup,
    fake_providers,
    books,
) -> None:
    account = await signup()
    fake = fake_providers[provider]
    fake.reset()
    response = await provider_client.post(
        "/v1/chat/completions",
        json=ask(provider, "Tell me something [[tokens=7 cached=3 reasoning=4]]"),
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    stream = parse(response.text)
    call = await fake.wait_for_call_status("completed")
    assert stream.deltas == [f"w{i}" if i == 1 else f" w{i}" for i in range(1, 8)]
    assert stream.done and stream.error is None and stream.finish_reason == "stop"
    assert (call.cached_tokens, call.reasoning_tokens) == (3, 4)
    usage = stream.usage
    assert usage["prompt_tokens"] == call.input_tokens
    assert usage["completion_tokens"] == call.output_tokens == 7 + 4
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3
    assert usage["credits_charged"] == charge_of(provider, call) > 0
    balance, entries = await ledger(client, account)
    assert (balance["balance"], balance["held"]) == (FREE_MONTHLY - usage["credits_charged"], 0)
    assert (
        entries[0]["amount"] == -usage["credits_charged"]
        and entries[0]["model"] == MODELS[provider]
    )
    await books.assert_balanced()


async def test_a_completion_without_streaming_is_charged_the_reported_usage(
    provider: str, provider_client: httpx.AsyncClient, signup, fake_providers, books
) -> None:
    account = await signup()
    fake = fake_providers[provider]
    fake.reset()
    response = await provider_client.post(
        "/v1/chat/completions",
        json=ask(provider, "Hi [[tokens=5]]", stream=False),
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    call = fake.last_call
    assert body["choices"][0]["message"]["content"] == "w1 w2 w3 w4 w5"
    assert body["usage"]["credits_charged"] == charge_of(provider, call)
    await books.assert_balanced()


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("rate_limit", 429, "provider_rate_limited"), ("overloaded", 503, "provider_overloaded")],
)
async def test_a_failure_before_the_first_token_is_a_typed_error_and_free(
    provider: str,
    kind: str,
    status: int,
    code: str,
    provider_client,
    client,
    signup,
    fake_providers,
    books,
) -> None:
    account = await signup()
    fake_providers[provider].reset()
    response = await provider_client.post(
        "/v1/chat/completions", json=ask(provider, f"Hi [[fail={kind}]]"), headers=account.headers
    )
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    balance, entries = await ledger(client, account)
    assert (balance["balance"], balance["held"]) == (FREE_MONTHLY, 0)
    assert [e["kind"] for e in entries] == ["grant"]
    [hold] = await books.holds(uuid.UUID(account.personal_workspace_id))
    assert (hold.status.value, hold.captured or 0) == ("released", 0)
    await books.assert_balanced()


async def test_a_failure_mid_stream_ends_with_a_typed_error_and_is_free(
    provider: str, provider_client, client, signup, fake_providers, books
) -> None:
    account = await signup()
    fake_providers[provider].reset()
    response = await provider_client.post(
        "/v1/chat/completions",
        json=ask(provider, "Hi [[tokens=9 fail=overloaded at=3]]"),
        headers=account.headers,
    )
    assert response.status_code == 200
    stream = parse(response.text)
    assert len(stream.deltas) == 3
    assert not stream.done and stream.usage is None
    assert stream.error["code"] in {"provider_overloaded", "provider_error"}
    balance, entries = await ledger(client, account)
    assert (balance["balance"], balance["held"]) == (FREE_MONTHLY, 0)
    assert [e["kind"] for e in entries] == ["grant"]
    await books.assert_balanced()


async def test_a_connection_cut_mid_stream_is_an_error_and_free(
    provider: str, provider_client, client, signup, fake_providers, books
) -> None:
    account = await signup()
    fake_providers[provider].reset()
    response = await provider_client.post(
        "/v1/chat/completions",
        json=ask(provider, "Hi [[tokens=9 drop=4]]"),
        headers=account.headers,
    )
    stream = parse(response.text)
    assert len(stream.deltas) == 4 and stream.error["code"] == "provider_error" and not stream.done
    balance, _ = await ledger(client, account)
    assert (balance["balance"], balance["held"]) == (FREE_MONTHLY, 0)
    await books.assert_balanced()


async def test_a_client_disconnect_cancels_upstream_and_charges_the_usage_so_far(
    provider: str, provider_live_url: str, client, signup, fake_providers, books
) -> None:
    account = await signup()
    fake = fake_providers[provider]
    fake.reset()
    received = 0
    async with httpx.AsyncClient(base_url=provider_live_url, timeout=10) as http:
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            json=ask(provider, "Go on [[tokens=500 delay_ms=20]]"),
            headers=account.headers,
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    received += 1
                if received == 3:
                    break
    call = await fake.wait_for_call_status("disconnected")
    assert call.tokens_sent < 500
    workspace = uuid.UUID(account.personal_workspace_id)
    async with asyncio.timeout(5):
        while (hold := (await books.holds(workspace))[0]).status.value == "open":
            await asyncio.sleep(0.02)
    assert hold.status.value == "captured"
    price = PRICES.get(MODELS[provider])
    floor = price.cost({"input_tokens": call.input_tokens, "output_tokens": received})
    assert floor <= hold.captured <= hold.amount
    balance, entries = await ledger(client, account)
    assert balance["balance"] == FREE_MONTHLY - hold.captured and balance["held"] == 0
    assert entries[0]["kind"] == "usage"
    await books.assert_balanced()
