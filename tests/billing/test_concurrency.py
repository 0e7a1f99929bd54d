"""Admission and settlement under real concurrency, on PostgreSQL (SQLite serialises every
writer with BEGIN IMMEDIATE, so races cannot happen there)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import uuid

import httpx
import pytest
from sqlalchemy import select, text

from lipika.billing.errors import DailyRequestLimitReached
from lipika.billing.meter import Settlement, Ticket
from lipika.billing.models import EntryKind, HoldStatus, UsageCounter, Wallet
from lipika.billing.policy import Outcome
from lipika.billing.pricebook import PriceBook
from lipika.billing.repository import LedgerRepository, WalletState
from lipika.billing.service import BillingService, Posted
from lipika.db import utcnow
from lipika.errors import Conflict
from lipika.providers.base import ChatRequest, Message
from lipika.providers.demo import DemoProvider
from tests.fixtures.ledger import Books

PRICES = PriceBook.load()
FREE_MONTHLY = 100_000_000


# Skipped on SQLite at collection (see conftest), which serialises every writer: no race to test.
pytestmark = pytest.mark.postgres


async def test_200_concurrent_completions_against_a_wallet_that_affords_50(
    client: httpx.AsyncClient, signup, books: Books
) -> None:
    account = await signup()
    workspace_id = uuid.UUID(account.personal_workspace_id)
    await books.assign_plan(workspace_id, "team")  # no daily credit cap: only the balance limits
    input_tokens = DemoProvider().estimate_input_tokens(
        ChatRequest("demo", [Message("user", "hi")], 10)
    )
    cost = PRICES.get("demo").cost({"input_tokens": input_tokens, "output_tokens": 10})  # type: ignore[union-attr]
    assert cost == 5_500
    await books.set_available(workspace_id, 50 * cost)

    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    responses = await asyncio.gather(
        *(
            client.post("/v1/chat/completions", json=body, headers=account.headers)
            for _ in range(200)
        )
    )

    statuses = collections.Counter(r.status_code for r in responses)
    assert statuses == {200: 50, 402: 150}, [
        r.text for r in responses if r.status_code not in (200, 402)
    ][:3]
    for response in responses:
        if response.status_code == 200:
            assert response.json()["usage"]["credits_charged"] == cost
        else:
            error = response.json()["error"]
            assert error["code"] == "insufficient_credits"
            assert error["type"] == "insufficient_credits"
            # every hold costs exactly what it charges, so a refusal only ever sees nothing left
            assert error["details"] == {"needed_micro": cost, "available_micro": 0}

    state = await books.state(workspace_id)
    assert (state.balance, state.held) == (0, 0)
    await books.assert_balanced()
    usage = await books.entries(workspace_id, EntryKind.USAGE)
    assert len(usage) == 50
    assert {e.amount for e in usage} == {-cost}
    assert sorted(e.balance_after for e in usage) == [cost * i for i in range(50)]
    holds = await books.holds(workspace_id)
    assert len(holds) == 50  # a refused admission leaves no hold behind
    assert {h.status for h in holds} == {HoldStatus.CAPTURED}
    balance = (await client.get("/v1/billing/balance", headers=account.headers)).json()
    assert (balance["balance"], balance["held"], balance["available"]) == (0, 0, 0)


async def test_the_daily_request_limit_holds_under_concurrent_admission(books: Books) -> None:
    meter = books.meter
    workspace_id = await books.new_wallet("free")
    user_id = uuid.uuid4()
    max_usage = {"input_tokens": 10, "output_tokens": 10}
    amount = PRICES.get("claude-haiku-4-5").cost(max_usage)  # type: ignore[union-attr]
    assert meter.plans.get("free").daily_request_limit("claude-haiku-4-5") == 50  # type: ignore[union-attr]

    def admit() -> asyncio.Future:
        return meter.admit(
            workspace_id, user_id, operation="test", price="claude-haiku-4-5", max_usage=max_usage
        )

    results = await asyncio.gather(*(admit() for _ in range(120)), return_exceptions=True)
    tickets = [r for r in results if isinstance(r, Ticket)]
    refused = [r for r in results if isinstance(r, DailyRequestLimitReached)]
    assert (len(tickets), len(refused)) == (50, 70), [
        r for r in results if isinstance(r, BaseException)
    ][:3]
    assert all(e.details == {"limit": 50, "model": "claude-haiku-4-5"} for e in refused)
    assert (await books.state(workspace_id)).held == 50 * amount
    assert await request_counter(books, workspace_id, user_id) == 50

    await asyncio.gather(
        *(meter.release(t.hold_id, Outcome.PROVIDER_ERROR_BEFORE_OUTPUT) for t in tickets[:10])
    )
    assert await request_counter(books, workspace_id, user_id) == 40

    results = await asyncio.gather(*(admit() for _ in range(30)), return_exceptions=True)
    more = [r for r in results if isinstance(r, Ticket)]
    assert len(more) == 10
    assert sum(isinstance(r, DailyRequestLimitReached) for r in results) == 20
    assert await request_counter(books, workspace_id, user_id) == 50
    assert (await books.state(workspace_id)).held == 50 * amount
    await books.assert_balanced()


async def request_counter(books: Books, workspace_id: uuid.UUID, user_id: uuid.UUID) -> int:
    table = UsageCounter.__table__
    async with books.engine.connect() as conn:
        values = (
            (
                await conn.execute(
                    select(table.c.value).where(table.c.key.like(f"req:{workspace_id}:{user_id}:%"))
                )
            )
            .scalars()
            .all()
        )
    assert len(values) == 1
    return values[0]


async def test_concurrent_settlements_of_one_hold_settle_it_once(books: Books) -> None:
    meter = books.meter
    workspace_id = await books.new_wallet("free")
    usage = {"input_tokens": 40, "output_tokens": 40}  # 4_000 + 20_000
    for round_ in range(3):
        ticket = await meter.admit(
            workspace_id,
            None,
            operation="test",
            price="demo",
            max_usage={"input_tokens": 100, "output_tokens": 100},
        )
        before = await books.state(workspace_id)
        calls = [
            meter.capture(ticket.hold_id, usage)
            if i % 2 == round_ % 2
            else meter.release(ticket.hold_id, Outcome.INTERNAL_ERROR)
            for i in range(20)
        ]
        settlements: list[Settlement] = await asyncio.gather(*calls)
        winners = [s for s in settlements if not s.already_settled]
        assert len(winners) == 1
        [winner] = winners
        charged = 24_000 if winner.status == HoldStatus.CAPTURED else 0
        assert winner.charged == charged
        hold = await books.hold(ticket.hold_id)
        assert (hold.status, hold.captured) == (winner.status, charged)
        for late in settlements:
            if late is not winner:  # each loser reports where the hold ended, not a stale read
                assert (late.already_settled, late.balance_after) == (True, None)
                assert (late.status, late.charged) == (winner.status, charged)
        entries = [
            e
            for e in await books.entries(workspace_id, EntryKind.USAGE)
            if e.hold_id == ticket.hold_id
        ]
        assert [e.amount for e in entries] == ([-charged] if charged else [])
        state = await books.state(workspace_id)
        assert (state.balance, state.held) == (
            before.balance - charged,
            before.held - ticket.amount,
        )
        await books.assert_balanced()


async def test_concurrent_grants_with_one_idempotency_key_move_the_balance_once(
    books: Books,
) -> None:
    workspace_id = await books.new_wallet("free")
    before = await books.state(workspace_id)

    async def grant() -> Posted:
        async with books.sessionmaker.begin() as session:
            return await BillingService(session, books.meter.plans).post(
                workspace_id, EntryKind.GRANT, 1_000_000, "promo:same-key", reason="promotion"
            )

    results = await asyncio.gather(*(grant() for _ in range(20)), return_exceptions=True)
    posted = [r for r in results if isinstance(r, Posted)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(posted) + len(conflicts) == 20, [
        r for r in results if not isinstance(r, Posted | Conflict)
    ]
    assert [p.duplicate for p in posted].count(False) == 1
    assert {p.entry.id for p in posted} == {next(p.entry.id for p in posted if not p.duplicate)}
    # a post that lost the race after reading no entry is refused, never applied twice
    assert {c.code for c in conflicts} <= {"idempotency_conflict"}
    state = await books.state(workspace_id)
    assert state.balance == before.balance + 1_000_000
    grants = [
        e
        for e in await books.entries(workspace_id, EntryKind.GRANT)
        if e.idempotency_key == "promo:same-key"
    ]
    assert [(e.amount, e.balance_after) for e in grants] == [
        (1_000_000, before.balance + 1_000_000)
    ]
    await books.assert_balanced()


async def test_concurrent_admissions_and_captures_on_a_capped_wallet_all_succeed(
    books: Books,
) -> None:
    """Every admission and every settlement of a free-plan workspace updates its daily credit cap
    counter and its wallet row; taken in different orders, they would deadlock."""
    meter = books.meter
    workspace_id = await books.new_wallet("free")
    max_usage = {"input_tokens": 20, "output_tokens": 100}  # 2_000 + 50_000
    used = {"input_tokens": 20, "output_tokens": 30}  # 2_000 + 15_000: gives 35_000 back to the cap

    async def operation(i: int) -> Settlement:
        ticket = await meter.admit(
            workspace_id, None, operation="test", price="demo", max_usage=max_usage
        )
        await asyncio.sleep(0)
        if i % 4 == 3:
            return await meter.release(ticket.hold_id, Outcome.PROVIDER_TIMEOUT)
        return await meter.capture(ticket.hold_id, used)

    results = await asyncio.gather(*(operation(i) for i in range(120)), return_exceptions=True)
    failures = [r for r in results if not isinstance(r, Settlement)]
    assert failures == []
    captured = [r for r in results if r.status == HoldStatus.CAPTURED]  # type: ignore[union-attr]
    assert len(captured) == 90 and {r.charged for r in captured} == {17_000}  # type: ignore[union-attr]
    state = await books.state(workspace_id)
    assert (state.balance, state.held) == (FREE_MONTHLY - 90 * 17_000, 0)
    day = utcnow().strftime("%Y-%m-%d")
    assert await books.counters(f"wsday:{workspace_id}:") == {
        f"wsday:{workspace_id}:{day}": 90 * 17_000
    }
    assert len(await books.entries(workspace_id, EntryKind.USAGE)) == 90
    await books.assert_balanced()


async def test_two_admission_batches_for_different_members_do_not_deadlock(books: Books) -> None:
    """Staged with row locks held from outside the meter: a batch [member 1, member 2] is held at
    its first hold insert (an uncommitted hold with the same idempotency key) while a batch
    [member 2] takes member 2's request counter and queues for the daily cap counter."""
    meter = dataclasses.replace(books.meter, batches_in_flight=2)  # two batches in flight at once
    other = await books.new_wallet("team")
    workspace_id = await books.new_wallet("free")
    one, two = uuid.uuid4(), uuid.uuid4()
    usage = {"output_tokens": 10}
    wallets = Wallet.__table__

    def admit(ws: uuid.UUID, user: uuid.UUID | None, key: str | None = None) -> asyncio.Task:
        return asyncio.create_task(
            meter.admit(
                ws, user, operation="test", price="demo", max_usage=usage, idempotency_key=key
            )
        )

    async with books.engine.connect() as blocker, books.engine.connect() as duplicate:
        # 1. both batcher slots busy: two admissions wait for another workspace's wallet
        await blocker.begin()
        await blocker.execute(
            select(wallets.c.balance).where(wallets.c.workspace_id == other).with_for_update()
        )
        busy = [admit(other, None), admit(other, None)]
        await wait_for_lock_waiters(books, 2)
        # 2. an uncommitted hold with the key the next batch's first admission will use
        await duplicate.begin()
        await LedgerRepository(duplicate).insert_hold(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            user_id=None,
            operation="test",
            model="demo",
            amount=0,
            status=HoldStatus.OPEN,
            price_version="x",
            rates={},
            counters=[],
            idempotency_key="staged",
            expires_at=utcnow(),
            created_at=utcnow(),
            overage=0,
        )
        # 3. member 1 (held at its insert) and member 2 queue up as one batch
        first, second = admit(workspace_id, one, "staged"), admit(workspace_id, two)
        await asyncio.sleep(0)
        await blocker.rollback()
        await asyncio.gather(*busy)
        await wait_for_lock_waiters(books, 1)
        # 4. a batch of its own for member 2: takes member 2's counter, waits for the cap counter
        third = admit(workspace_id, two)
        await wait_for_lock_waiters(books, 2)
        # 5. the first batch goes on, to member 2's counter
        await duplicate.rollback()
        results = await asyncio.gather(first, second, third, return_exceptions=True)

    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert (await books.state(workspace_id)).held == 3 * 5_000
    await books.assert_balanced()


async def wait_for_lock_waiters(books: Books, count: int, timeout: float = 10.0) -> None:
    """Until `count` sessions on this database wait for a lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with books.engine.connect() as conn:
            waiting = (await conn.execute(query)).scalar_one()
        if waiting == count:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{waiting} sessions wait for a lock, not {count}")
        await asyncio.sleep(0.02)


async def test_an_admission_whose_caller_is_cancelled_is_given_back(books: Books) -> None:
    """A cancelled caller (a client that hung up) does not cancel the admission already sent;
    when its result comes back with nobody waiting, the hold is released at once."""
    meter = books.meter
    workspace_id = await books.new_wallet("free")
    admission = asyncio.create_task(
        meter.admit(
            workspace_id, None, operation="test", price="demo", max_usage={"output_tokens": 10}
        )
    )
    await asyncio.sleep(0)  # submitted
    admission.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admission
    await meter.aclose()  # waits for the batch in flight and the release it triggers
    holds = await books.holds(workspace_id)
    assert [(h.status, h.amount, h.outcome) for h in holds] == [
        (HoldStatus.RELEASED, 5_000, Outcome.INTERNAL_ERROR.value)
    ]
    assert await books.state(workspace_id) == WalletState(FREE_MONTHLY, 0)
    await books.assert_balanced()
