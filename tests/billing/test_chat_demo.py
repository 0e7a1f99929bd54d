from __future__ import annotations

import httpx

from lipika.billing.pricebook import PriceBook
from lipika.providers.base import ChatRequest, Message
from lipika.providers.demo import DemoProvider

FREE_MONTHLY = 100_000_000


async def test_signup_grants_the_free_allowance(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert balance == {
        "workspace_id": account.personal_workspace_id,
        "plan": "free",
        "unit": "micro_credits",
        "balance": FREE_MONTHLY,
        "held": 0,
        "available": FREE_MONTHLY,
    }


async def test_demo_completion_is_charged_its_usage(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    body = {"model": "demo", "messages": [{"role": "user", "content": "Hello there, demo!"}], "max_tokens": 20}
    response = await client.post("/v1/chat/completions", json=body, headers=account.headers)
    assert response.status_code == 200, response.text
    completion = response.json()
    usage = completion["usage"]
    assert usage["completion_tokens"] == 20
    expected_input = DemoProvider().estimate_input_tokens(
        ChatRequest("demo", [Message("user", "Hello there, demo!")], 20)
    )
    assert usage["prompt_tokens"] == expected_input
    price = PriceBook.load().get("demo")
    expected_cost = price.cost({"input_tokens": expected_input, "output_tokens": 20})
    assert usage["credits_charged"] == expected_cost
    assert usage["balance_after"] == FREE_MONTHLY - expected_cost
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert balance["balance"] == FREE_MONTHLY - expected_cost
    assert balance["held"] == 0
    ledger = (await client.get("/v1/billing/ledger", headers=account.headers)).json()
    assert [e["kind"] for e in ledger["data"]] == ["usage", "grant"]
    assert ledger["data"][0]["amount"] == -expected_cost
    assert ledger["data"][0]["model"] == "demo"
