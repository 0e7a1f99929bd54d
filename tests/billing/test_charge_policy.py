"""The published charge policy is what the meter charges, outcome by outcome."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from lipika.billing.meter import Meter
from lipika.billing.models import EntryKind, HoldStatus
from lipika.billing.policy import (
    CAPTURE_ABOVE_HOLD,
    POLICY,
    SPEECH_SESSIONS,
    STALLED_STREAM,
    USAGE_SO_FAR,
    Charge,
    Outcome,
    charge_for,
)
from lipika.billing.pricebook import Price, PriceBook
from lipika.billing.repository import WalletState
from lipika.providers import demo as demo_module
from lipika.providers.base import (
    ChatRequest,
    Message,
    ProviderError,
    ProviderOverloaded,
    ProviderRejected,
    ProviderTimeout,
)
from lipika.providers.demo import DemoProvider
from tests.fixtures.ledger import Books

FREE_MONTHLY = 100_000_000
DEMO = PriceBook.load().get("demo")
assert DEMO is not None

MAX_USAGE = {"input_tokens": 100, "output_tokens": 100}  # 10_000 + 50_000
HOLD = 60_000
ABOVE_HOLD = {
    "input_tokens": 150,
    "cached_input_tokens": 10,
    "output_tokens": 200,
}  # 15_000 + 100 + 100_000
ABOVE_HOLD_COST = 115_100
SO_FAR = {"input_tokens": 100, "output_tokens": 30}  # 10_000 + 15_000
SO_FAR_COST = 25_000


def test_the_price_constants_used_here() -> None:
    assert DEMO.cost(MAX_USAGE) == HOLD
    assert DEMO.cost(ABOVE_HOLD) == ABOVE_HOLD_COST
    assert DEMO.cost(SO_FAR) == SO_FAR_COST


async def test_the_charge_policy_is_public_and_lists_every_outcome_once(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/billing/charge-policy")
    assert response.status_code == 200, response.text
    body = response.json()
    outcomes = [row["outcome"] for row in body["rules"]]
    assert sorted(outcomes) == sorted(o.value for o in Outcome)
    assert len(outcomes) == len(set(outcomes)) == len(Outcome)
    for row in body["rules"]:
        rule = POLICY[Outcome(row["outcome"])]
        assert row["charge"] == rule.charge.value == charge_for(Outcome(row["outcome"])).value
        assert row["description"] == rule.why
    assert body["capture_above_hold"] == CAPTURE_ABOVE_HOLD
    # our failures are free; only success, a client hang-up and, for a speech session cut
    # short by its provider or our shutdown, the final segments already delivered are charged
    charged = {row["outcome"] for row in body["rules"] if row["charge"] != "nothing"}
    assert charged == {
        "success",
        "client_disconnect",
        "provider_error_mid_session",
        "server_shutdown",
    }


async def test_the_usage_so_far_and_stalled_stream_rules_are_published(
    client: httpx.AsyncClient,
) -> None:
    """Served and documented word for word (the slow-reader test in tests/chat holds the
    stalled-stream rule to the relay; the session tests below hold the usage-so-far rule)."""
    body = (await client.get("/v1/billing/charge-policy")).json()
    assert (body["usage_so_far"], body["stalled_stream"]) == (USAGE_SO_FAR, STALLED_STREAM)
    assert body["speech_sessions"] == SPEECH_SESSIONS
    docs = " ".join((Path(__file__).parents[2] / "docs" / "charge-policy.md").read_text().split())
    for rule in (USAGE_SO_FAR, STALLED_STREAM, SPEECH_SESSIONS):
        assert rule in docs


@pytest.mark.parametrize("outcome", list(Outcome))
async def test_settle_charges_what_the_policy_says(books: Books, outcome: Outcome) -> None:
    meter = books.meter
    workspace_id = await books.new_wallet()
    user_id = uuid.uuid4()
    ticket = await meter.admit(
        workspace_id, user_id, operation="test", price="demo", max_usage=MAX_USAGE
    )
    assert ticket.amount == HOLD
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY, HOLD)

    settlement = await meter.settle(ticket.hold_id, outcome, usage=ABOVE_HOLD, usage_so_far=SO_FAR)

    charge = charge_for(outcome)
    expected_charge, expected_overage, expected_usage, expected_status = {
        Charge.REPORTED_USAGE: (HOLD, ABOVE_HOLD_COST - HOLD, ABOVE_HOLD, HoldStatus.CAPTURED),
        Charge.USAGE_SO_FAR: (SO_FAR_COST, 0, SO_FAR, HoldStatus.CAPTURED),
        Charge.NOTHING: (0, 0, None, HoldStatus.RELEASED),
    }[charge]
    assert settlement.charged == expected_charge
    assert settlement.status == expected_status
    assert settlement.already_settled is False
    assert settlement.balance_after == FREE_MONTHLY - expected_charge

    state = await books.state(workspace_id)
    assert (state.balance, state.held) == (FREE_MONTHLY - expected_charge, 0)

    hold = await books.hold(ticket.hold_id)
    assert hold.status == expected_status
    assert hold.captured == expected_charge
    assert hold.overage == expected_overage
    assert hold.usage == expected_usage
    assert hold.outcome == outcome.value
    assert hold.settled_at is not None

    usage_entries = await books.entries(workspace_id, EntryKind.USAGE)
    if expected_charge:
        assert [(e.amount, e.hold_id, e.model, e.reason, e.user_id) for e in usage_entries] == [
            (-expected_charge, ticket.hold_id, "demo", outcome.value, user_id)
        ]
        assert usage_entries[0].balance_after == FREE_MONTHLY - expected_charge
    else:
        assert usage_entries == []
    await books.assert_balanced()


@pytest.mark.parametrize("outcome", [Outcome.SUCCESS, Outcome.CLIENT_DISCONNECT])
async def test_a_charged_outcome_without_its_usage_is_refused(books: Books, outcome: Outcome) -> None:
    """Settling a charged outcome without the usage it charges is a caller's bug: it is refused
    loudly (never silently free) and the hold stays open for a correct settle."""
    workspace_id = await books.new_wallet()
    ticket = await books.meter.admit(
        workspace_id, None, operation="test", price="demo", max_usage=MAX_USAGE
    )
    wrong = {"usage_so_far": SO_FAR} if outcome is Outcome.SUCCESS else {"usage": ABOVE_HOLD}
    with pytest.raises(ValueError, match=outcome.value):
        await books.meter.settle(ticket.hold_id, outcome, **wrong)
    hold = await books.hold(ticket.hold_id)
    assert hold.status is HoldStatus.OPEN
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY, ticket.amount)
    settlement = await books.meter.release(ticket.hold_id, Outcome.INTERNAL_ERROR)
    assert (settlement.status, settlement.charged) == (HoldStatus.RELEASED, 0)
    await books.assert_balanced()


async def test_success_below_the_hold_charges_the_reported_usage_and_releases_the_rest(
    books: Books,
) -> None:
    workspace_id = await books.new_wallet()
    ticket = await books.meter.admit(
        workspace_id, None, operation="test", price="demo", max_usage=MAX_USAGE
    )
    usage = {"input_tokens": 7, "cached_input_tokens": 3, "output_tokens": 11}  # 700 + 30 + 5500
    settlement = await books.meter.settle(ticket.hold_id, Outcome.SUCCESS, usage=usage)
    assert settlement.charged == 6_230
    state = await books.state(workspace_id)
    assert (state.balance, state.held) == (FREE_MONTHLY - 6_230, 0)
    hold = await books.hold(ticket.hold_id)
    assert (hold.status, hold.captured, hold.overage) == (HoldStatus.CAPTURED, 6_230, 0)
    await books.assert_balanced()


async def test_the_price_is_frozen_on_the_hold(books: Books) -> None:
    """A price change after admission does not reprice the operation in flight."""
    workspace_id = await books.new_wallet()
    ticket = await books.meter.admit(
        workspace_id, None, operation="test", price="demo", max_usage=MAX_USAGE
    )
    hold = await books.hold(ticket.hold_id)
    assert hold.rates == dict(DEMO.rates)
    assert hold.price_version == books.meter.price_book.version
    doubled = {unit: rate * 2 for unit, rate in DEMO.rates.items()}
    repriced = Meter(
        books.engine,
        PriceBook(
            books.meter.price_book.version + "-x", {"demo": Price("demo", "model", doubled, "demo")}
        ),
        books.meter.plans,
    )
    settlement = await repriced.capture(ticket.hold_id, {"input_tokens": 10, "output_tokens": 10})
    assert settlement.charged == 6_000


# -- the context manager -------------------------------------------------------------------------


class Boom(Exception):
    pass


class TimedOut(Exception):
    outcome = Outcome.PROVIDER_TIMEOUT


def open_hold(books: Books, workspace_id: uuid.UUID):
    return books.meter.hold(workspace_id, None, operation="test", price="demo", max_usage=MAX_USAGE)


async def test_an_exception_inside_the_block_releases_the_hold_and_propagates(books: Books) -> None:
    workspace_id = await books.new_wallet()
    seen: list[uuid.UUID] = []
    with pytest.raises(Boom, match="provider exploded"):
        async with open_hold(books, workspace_id) as held:
            seen.append(held.ticket.hold_id)
            assert (await books.state(workspace_id)).held == HOLD
            raise Boom("provider exploded")
    hold = await books.hold(seen[0])
    assert (hold.status, hold.captured, hold.outcome) == (
        HoldStatus.RELEASED,
        0,
        Outcome.INTERNAL_ERROR.value,
    )
    state = await books.state(workspace_id)
    assert (state.balance, state.held) == (FREE_MONTHLY, 0)
    assert await books.entries(workspace_id, EntryKind.USAGE) == []
    await books.assert_balanced()


@pytest.mark.parametrize(
    "error, outcome",
    [
        (TimedOut("slow"), Outcome.PROVIDER_TIMEOUT),
        (ProviderTimeout("slow"), Outcome.PROVIDER_TIMEOUT),
        (ProviderRejected("no"), Outcome.REFUSED_BY_PROVIDER),
        (ProviderOverloaded("busy"), Outcome.PROVIDER_ERROR_BEFORE_OUTPUT),
    ],
)
async def test_an_exception_with_an_outcome_is_released_with_that_outcome(
    books: Books, error: Exception, outcome: Outcome
) -> None:
    workspace_id = await books.new_wallet()
    seen: list[uuid.UUID] = []
    with pytest.raises(type(error)):
        async with open_hold(books, workspace_id) as held:
            seen.append(held.ticket.hold_id)
            raise error
    hold = await books.hold(seen[0])
    assert (hold.status, hold.captured, hold.outcome) == (HoldStatus.RELEASED, 0, outcome.value)
    assert (await books.state(workspace_id)).held == 0
    assert (await books.state(workspace_id)).balance == FREE_MONTHLY


async def test_leaving_the_block_without_settling_releases_the_hold(books: Books) -> None:
    workspace_id = await books.new_wallet()
    async with open_hold(books, workspace_id) as held:
        hold_id = held.ticket.hold_id
    hold = await books.hold(hold_id)
    assert (hold.status, hold.captured, hold.outcome) == (
        HoldStatus.RELEASED,
        0,
        Outcome.INTERNAL_ERROR.value,
    )
    assert held.settlement is None
    state = await books.state(workspace_id)
    assert (state.balance, state.held) == (FREE_MONTHLY, 0)


async def test_an_exception_after_settling_keeps_the_charge(books: Books) -> None:
    workspace_id = await books.new_wallet()
    with pytest.raises(Boom):
        async with open_hold(books, workspace_id) as held:
            settled = await held.settle(Outcome.SUCCESS, usage=SO_FAR)
            raise Boom("after the charge")
    assert settled.charged == SO_FAR_COST
    hold = await books.hold(held.ticket.hold_id)
    assert (hold.status, hold.captured, hold.outcome) == (
        HoldStatus.CAPTURED,
        SO_FAR_COST,
        "success",
    )
    state = await books.state(workspace_id)
    assert (state.balance, state.held) == (FREE_MONTHLY - SO_FAR_COST, 0)
    await books.assert_balanced()


# -- over HTTP -----------------------------------------------------------------------------------

CHAT = {
    "model": "demo",
    "messages": [{"role": "user", "content": "Tell me a story."}],
    "max_tokens": 50,
}


@pytest.mark.parametrize(
    "error, status, code, outcome",
    [
        (ProviderError, 502, "provider_error", Outcome.PROVIDER_ERROR_BEFORE_OUTPUT),
        (ProviderTimeout, 504, "provider_timeout", Outcome.PROVIDER_TIMEOUT),
        (ProviderRejected, 400, "provider_rejected_request", Outcome.REFUSED_BY_PROVIDER),
    ],
)
async def test_a_failed_provider_call_is_mapped_and_free(
    client: httpx.AsyncClient,
    signup,
    books: Books,
    monkeypatch: pytest.MonkeyPatch,
    error,
    status: int,
    code: str,
    outcome: Outcome,
) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)

    async def failing(self, request: ChatRequest):  # noqa: ANN001
        raise error("upstream said no")

    monkeypatch.setattr(demo_module.DemoProvider, "complete", failing)
    response = await client.post("/v1/chat/completions", json=CHAT, headers=account.headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"] == "upstream said no"

    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert (balance["balance"], balance["held"], balance["available"]) == (
        FREE_MONTHLY,
        0,
        FREE_MONTHLY,
    )
    assert await books.entries(workspace_id, EntryKind.USAGE) == []
    [hold] = await books.holds(workspace_id)
    expected_hold = (
        DemoProvider().estimate_input_tokens(
            ChatRequest("demo", [Message("user", "Tell me a story.")], 50)
        )
        * 100
        + 50 * 500
    )
    assert (hold.status, hold.captured, hold.amount) == (HoldStatus.RELEASED, 0, expected_hold)
    # released under the provider's outcome, not as our own internal error
    assert hold.outcome == outcome.value
    await books.assert_balanced()


async def test_the_demo_model_is_predictable() -> None:
    demo = DemoProvider()
    request = ChatRequest(
        "demo", [Message("system", "Be brief."), Message("user", "Hello there, demo!")], 20
    )
    assert demo.estimate_input_tokens(request) == (3 + 4) + (5 + 4)
    first, second = await demo.complete(request), await demo.complete(request)
    assert first == second
    assert (first.usage.input_tokens, first.usage.output_tokens, first.finish_reason) == (
        16,
        20,
        "length",
    )
    assert len(first.text.split()) == 20


@pytest.mark.parametrize(
    "content, limit, expected",
    [
        ("hi", 200, 65),  # 64 + 5 // 4
        ("hi", 10, 10),
        (" ".join(["word"] * 400), 4096, 64 + 404 // 4),
        (" ".join(["word"] * 400), 100, 100),
    ],
)
async def test_the_demo_model_writes_its_documented_length(
    content: str, limit: int, expected: int
) -> None:
    """min(64 + input_tokens // 4, max_output_tokens): the hold is exact only up to that length."""
    result = await DemoProvider().complete(ChatRequest("demo", [Message("user", content)], limit))
    assert result.usage.output_tokens == expected
    assert result.finish_reason == ("length" if expected == limit else "stop")
