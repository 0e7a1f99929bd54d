"""API keys like a gateway's virtual keys: an expiry, the models a key may use, and a credit
budget of its own enforced at admission (never overspent, even by concurrent requests)."""

from __future__ import annotations

import asyncio
import collections
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.apikeys.models import ApiKey
from lipika.billing.errors import ModelNotAllowedForKey
from lipika.billing.models import EntryKind
from lipika.billing.rules import KeyLimits
from tests.fixtures.ledger import Books

CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
COST = 5_500  # one CHAT on demo, held and charged (tests/billing/test_concurrency.py)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def create(client: httpx.AsyncClient, headers: dict[str, str], **fields) -> httpx.Response:
    return await client.post("/v1/api-keys", json={"name": "k", **fields}, headers=headers)


async def listed(client: httpx.AsyncClient, headers: dict[str, str], key_id: str) -> dict:
    response = await client.get("/v1/api-keys", headers=headers)
    assert response.status_code == 200, response.text
    return next(k for k in response.json()["data"] if k["id"] == key_id)


async def test_a_key_shows_its_expiry_models_budget_and_spend(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    created = await create(
        client,
        account.headers,
        expires_at=expires.isoformat(),
        allowed_models=["demo", "gpt-5-mini", "demo"],
        credit_budget="0.02",
    )
    assert created.status_code == 201, created.text
    key = created.json()
    assert datetime.fromisoformat(key["expires_at"]) == expires
    assert key["allowed_models"] == ["demo", "gpt-5-mini"]
    assert key["credit_budget"] == 20_000 and key["credits_used"] == 0

    chat = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key["key"]))
    assert chat.status_code == 200, chat.text
    shown = await listed(client, account.headers, key["id"])
    assert shown["credits_used"] == chat.json()["usage"]["credits_charged"] > 0


async def test_a_plain_key_works_as_before(client: httpx.AsyncClient, signup) -> None:
    account = await signup()
    key = (await create(client, account.headers)).json()
    assert key["expires_at"] is None and key["allowed_models"] is None and key["credit_budget"] is None
    chat = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key["key"]))
    assert chat.status_code == 200, chat.text


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"expires_at": "2001-01-01T00:00:00Z"}, 400, "invalid_expiry"),
        ({"allowed_models": ["no-such-model"]}, 400, "model_not_found"),
        ({"allowed_models": ["web_search_nonexistent", "demo"]}, 400, "model_not_found"),
        ({"credit_budget": "0"}, 400, "invalid_amount"),
        ({"credit_budget": "-1"}, 400, "invalid_amount"),
        ({"credit_budget": "0.0000001"}, 400, "invalid_amount"),
        ({"allowed_models": [""]}, 422, "validation_error"),
    ],
)
async def test_bad_key_settings_are_refused(
    client: httpx.AsyncClient, signup, fields: dict, status: int, code: str
) -> None:
    account = await signup()
    response = await create(client, account.headers, **fields)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_an_expired_key_is_401_with_its_own_code(
    client: httpx.AsyncClient, signup, db_engine: AsyncEngine
) -> None:
    account = await signup()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    key = (await create(client, account.headers, expires_at=soon)).json()
    assert (await client.get("/v1/me", headers=bearer(key["key"]))).status_code == 200
    async with db_engine.begin() as conn:
        await conn.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(key["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    refused = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key["key"]))
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "api_key_expired"


async def test_a_key_uses_only_its_models(
    client: httpx.AsyncClient, signup, books: Books
) -> None:
    account = await signup()
    key = (await create(client, account.headers, allowed_models=["gpt-5-mini"])).json()
    refused = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key["key"]))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "model_not_allowed_for_key"
    assert refused.headers["x-should-retry"] == "false"
    assert await books.holds(uuid.UUID(account.personal_workspace_id)) == []
    # The login itself is not held to the key's list.
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=account.headers)).status_code == 200


async def test_the_meter_holds_every_paid_path_to_the_key(books: Books) -> None:
    """The agent's steps admit through the same call, with the key of the run."""
    workspace_id = await books.new_wallet("pro")
    limits = KeyLimits(uuid.uuid4(), frozenset({"demo"}))
    with pytest.raises(ModelNotAllowedForKey):
        await books.meter.admit(
            workspace_id,
            None,
            operation="agent.model",
            price="gpt-5-mini",
            max_usage={"input_tokens": 10, "output_tokens": 10},
            api_key=limits,
        )
    tool = await books.meter.admit(
        workspace_id, None, operation="agent.tool", price="agent.calculator", max_usage={"calls": 1}, api_key=limits
    )
    assert tool.amount >= 0  # a tool is not a model: the list does not bind it


async def test_a_budget_admits_what_it_can_hold_then_402(
    client: httpx.AsyncClient, signup, books: Books
) -> None:
    account = await signup()
    key = (await create(client, account.headers, credit_budget=str(2.5 * COST / 1_000_000))).json()
    answers = [
        await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key["key"])) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 402], answers[-1].text
    assert answers[-1].json()["error"]["code"] == "api_key_budget_exceeded"
    assert answers[-1].headers["x-should-retry"] == "false"
    charged = sum(a.json()["usage"]["credits_charged"] for a in answers[:2])
    assert (await listed(client, account.headers, key["id"]))["credits_used"] == charged
    # The workspace still has credits: the login spends them.
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=account.headers)).status_code == 200
    await books.assert_balanced()


@pytest.mark.postgres
async def test_concurrent_requests_on_one_key_never_overspend_its_budget(
    client: httpx.AsyncClient, signup, books: Books, backend: str
) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    await books.assign_plan(workspace_id, "team")  # neither a daily cap nor a low rate limit
    await books.set_available(workspace_id, 100 * COST)
    budget = 7 * COST
    key = (await create(client, account.headers, credit_budget=str(budget / 1_000_000))).json()
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=CHAT, headers=bearer(key["key"])) for _ in range(30))
    )

    statuses = collections.Counter(r.status_code for r in responses)
    assert set(statuses) == {200, 402}, [r.text for r in responses if r.status_code not in (200, 402)][:3]
    assert all(r.json()["error"]["code"] == "api_key_budget_exceeded" for r in responses if r.status_code == 402)
    charged = sum(r.json()["usage"]["credits_charged"] for r in responses if r.status_code == 200)
    assert charged <= budget
    assert statuses[200] >= budget // COST  # each hold is at most COST: at least 7 fit
    usage = await books.entries(workspace_id, EntryKind.USAGE)
    assert -sum(e.amount for e in usage) == charged
    assert (await listed(client, account.headers, key["id"]))["credits_used"] == charged
    await books.assert_balanced()


async def test_a_grown_hold_keeps_the_keys_spend_exact(books: Books) -> None:
    """`Meter.extend` grows the key's counter with the hold (uncapped: the budget is checked at
    admission), so what the capture or release takes back leaves exactly what was charged."""
    from lipika.billing.policy import Outcome
    from lipika.billing.rules import key_spend_counter

    workspace_id = await books.new_wallet("pro")  # a daily credit cap of 1,000 credits
    limits = KeyLimits(uuid.uuid4(), None, 5_000 * 1_000_000)
    counter = key_spend_counter(limits.id)
    usage = {"input_tokens": 100, "output_tokens": 100}

    captured = await books.meter.admit(
        workspace_id, None, operation="t", price="demo", max_usage=usage, api_key=limits
    )
    await books.meter.extend(captured.hold_id, 20_000)
    assert (await books.counters(counter))[counter] == captured.amount + 20_000
    settlement = await books.meter.capture(captured.hold_id, {"input_tokens": 50, "output_tokens": 50})
    assert (await books.counters(counter))[counter] == settlement.charged > 0

    released = await books.meter.admit(
        workspace_id, None, operation="t", price="demo", max_usage=usage, api_key=limits
    )
    await books.meter.extend(released.hold_id, 7_000)
    await books.meter.release(released.hold_id, Outcome.PROVIDER_TIMEOUT)
    assert (await books.counters(counter))[counter] == settlement.charged
    await books.assert_balanced()
