"""Streamed completions on the demo model, through the app in process."""

from __future__ import annotations

import uuid

import httpx

from lipika.billing.pricebook import PriceBook
from lipika.providers.base import ChatRequest, ChatResult, Message, Usage
from lipika.providers.demo import DemoProvider
from tests.chat.sse import parse

FREE_MONTHLY = 100_000_000
PRICE = PriceBook.load().get("demo")


def ask(content: str, **extra) -> dict:
    return {"model": "demo", "messages": [{"role": "user", "content": content}], **extra}


async def test_a_stream_relays_every_token_and_charges_its_usage(
    client: httpx.AsyncClient, signup
) -> None:
    account = await signup()
    whole = await client.post(
        "/v1/chat/completions", json=ask("Tell me a story"), headers=account.headers
    )
    expected = whole.json()
    response = await client.post(
        "/v1/chat/completions",
        json=ask("Tell me a story", stream=True, stream_options={"include_usage": True}),
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in response.headers
    stream = parse(response.text)
    assert stream.chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["id"] for c in stream.chunks} == {stream.chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" for c in stream.chunks)
    assert "".join(stream.deltas) == expected["choices"][0]["message"]["content"]
    assert len(stream.deltas) == expected["usage"]["completion_tokens"]
    assert stream.finish_reason == "stop"
    assert stream.done and stream.error is None
    usage = stream.usage
    tokens = {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
    assert usage["prompt_tokens"] == expected["usage"]["prompt_tokens"]
    assert usage["credits_charged"] == PRICE.cost(tokens) == expected["usage"]["credits_charged"]
    assert usage["balance_after"] == FREE_MONTHLY - 2 * usage["credits_charged"]
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert (balance["balance"], balance["held"]) == (usage["balance_after"], 0)


async def test_without_include_usage_there_is_no_usage_chunk_but_the_charge_is_made(
    client: httpx.AsyncClient, signup
) -> None:
    account = await signup()
    response = await client.post(
        "/v1/chat/completions", json=ask("Hi", stream=True), headers=account.headers
    )
    stream = parse(response.text)
    assert stream.done and stream.usage is None and stream.deltas
    ledger = (await client.get("/v1/billing/ledger", headers=account.headers)).json()["data"]
    assert [e["kind"] for e in ledger] == ["usage", "grant"]
    assert ledger[0]["amount"] < 0


async def test_refusals_come_before_the_stream_as_plain_errors(
    client: httpx.AsyncClient, signup, books
) -> None:
    account = await signup()
    unknown = await client.post(
        "/v1/chat/completions",
        json={**ask("Hi", stream=True), "model": "nope"},
        headers=account.headers,
    )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
    too_big = await client.post(
        "/v1/chat/completions",
        json=ask("Hi", stream=True, max_tokens=10**9),
        headers=account.headers,
    )
    assert too_big.status_code == 200  # capped at the model's own ceiling, which fits
    await books.set_available(uuid.UUID(account.personal_workspace_id), 1)
    broke = await client.post(
        "/v1/chat/completions", json=ask("Hi", stream=True), headers=account.headers
    )
    assert (broke.status_code, broke.json()["error"]["code"]) == (402, "insufficient_credits")
    assert broke.headers["content-type"].startswith("application/json")


async def test_models_list_prices_availability_and_plan(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    listed = await client.get("/v1/models", headers=account.headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["object"] == "list"
    cards = {card["id"]: card for card in body["data"]}
    assert set(cards) == {price.name for price in PriceBook.load().models}
    demo = cards["demo"]
    assert demo["object"] == "model" and demo["owned_by"] == "demo"
    assert demo["available"] and demo["allowed"]
    assert demo["prices"] == dict(PRICE.rates)
    assert demo["context_window"] == PRICE.context_window
    assert cards["gpt-5"]["allowed"] is False  # not on the free plan
    assert cards["gpt-5-mini"]["allowed"] is True
    one = await client.get("/v1/models/demo", headers=account.headers)
    assert one.json() == demo
    missing = await client.get("/v1/models/nope", headers=account.headers)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "model_not_found")
    anonymous = await client.get("/v1/models")
    assert anonymous.status_code == 401



class Unmetered(DemoProvider):
    """The demo model, answering without usage."""

    async def complete(self, request: ChatRequest) -> ChatResult:
        result = await super().complete(request)
        return ChatResult(text=result.text, usage=Usage())


async def test_an_answer_without_usage_is_charged_the_estimate_not_nothing(
    app, client: httpx.AsyncClient, signup, monkeypatch
) -> None:
    """The hold's input estimate and the answer's text (four characters a token) are charged."""
    monkeypatch.setitem(app.lifespan_state["providers"].providers, "demo", Unmetered())
    account = await signup()

    answer = (
        await client.post("/v1/chat/completions", json=ask("Hello there"), headers=account.headers)
    ).json()

    usage = answer["usage"]
    estimate = DemoProvider().estimate_input_tokens(
        ChatRequest("demo", [Message("user", "Hello there")], max_output_tokens=1)
    )
    assert usage["prompt_tokens"] == estimate > 0
    assert usage["completion_tokens"] == -(-len(answer["choices"][0]["message"]["content"]) // 4)
    tokens = {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
    assert usage["credits_charged"] == PRICE.cost(tokens) > 0
    ledger = (await client.get("/v1/billing/ledger", headers=account.headers)).json()["data"]
    assert -ledger[0]["amount"] == usage["credits_charged"]
