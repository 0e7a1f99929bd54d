"""Invariant alarms: each invariant broken on purpose is reported (gauge and error log); a
clean ledger reports none."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.billing.models import Wallet
from lipika.billing.policy import Outcome
from lipika.db import utcnow
from lipika.ops.alarms import CHECKS, InvariantCheck
from lipika.ops.metrics import Metrics

GRACE = timedelta(minutes=5)
CHAT = {"operation": "chat.completion", "price": "demo"}
SMALL = {"input_tokens": 10, "output_tokens": 10}


@pytest.fixture
def check(db_engine: AsyncEngine) -> InvariantCheck:
    return InvariantCheck(db_engine, Metrics(), GRACE)


def gauges(check: InvariantCheck) -> dict[str, float]:
    return {c: check.metrics.invariant_violations.labels(c)._value.get() for c in CHECKS}


async def test_a_clean_ledger_reports_nothing(check: InvariantCheck, books, meter) -> None:
    workspace = await books.new_wallet()
    ticket = await meter.admit(workspace, None, **CHAT, max_usage=SMALL)
    await meter.capture(ticket.hold_id, SMALL, rates=ticket.rates)
    await meter.admit(workspace, None, **CHAT, max_usage=SMALL)  # open, within its expiry

    assert await check.run_once() == []
    assert gauges(check) == dict.fromkeys(CHECKS, 0)
    assert check.metrics.open_holds._value.get() == 1


async def test_drift_between_the_wallet_and_its_ledger_is_reported(
    check: InvariantCheck, books, db_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    drifted, held_drift, _balanced = [await books.new_wallet() for _ in range(3)]
    async with db_engine.begin() as conn:
        await conn.execute(
            update(Wallet).where(Wallet.workspace_id == drifted).values(balance=Wallet.balance + 1)
        )
        await conn.execute(
            update(Wallet).where(Wallet.workspace_id == held_drift).values(held=5)
        )

    with caplog.at_level(logging.ERROR):
        [violation] = await check.run_once()

    assert (violation.check, violation.count) == ("ledger_drift", 2)
    assert {row["workspace_id"] for row in violation.sample} == {str(drifted), str(held_drift)}
    assert gauges(check)["ledger_drift"] == 2
    [logged] = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "invariant_violated"]
    assert (logged["check"], logged["count"]) == ("ledger_drift", 2)


async def test_tokens_charged_nothing_are_reported(check: InvariantCheck, books, meter) -> None:
    workspace = await books.new_wallet()
    ticket = await meter.admit(workspace, None, **CHAT, max_usage=SMALL)
    free_rates = dict.fromkeys(ticket.rates, 0)  # a model priced at nothing
    await meter.capture(ticket.hold_id, SMALL, rates=free_rates)
    tool = await meter.admit(workspace, None, operation="agent.tool", price="agent.calculator", max_usage={"calls": 1})
    await meter.capture(tool.hold_id, {}, Outcome.CLIENT_DISCONNECT, rates=tool.rates)  # no tokens

    [violation] = await check.run_once()

    assert (violation.check, violation.count) == ("charged_nothing", 1)
    assert violation.sample[0]["hold_id"] == str(ticket.hold_id)


async def test_holds_open_past_their_expiry_are_reported(check: InvariantCheck, books, meter) -> None:
    workspace = await books.new_wallet()
    ticket = await meter.admit(workspace, None, **CHAT, max_usage=SMALL)

    assert await check.run_once(now=ticket.expires_at + GRACE / 2) == []
    [violation] = await check.run_once(now=ticket.expires_at + GRACE * 2)

    assert (violation.check, violation.sample[0]["hold_id"]) == ("overdue_holds", str(ticket.hold_id))
    age = check.metrics.oldest_open_hold_seconds._value.get()
    assert age >= (ticket.expires_at + GRACE * 2 - utcnow()).total_seconds()


async def test_usage_above_the_hold_is_reported(check: InvariantCheck, books, meter) -> None:
    workspace = await books.new_wallet()
    ticket = await meter.admit(workspace, None, **CHAT, max_usage=SMALL)
    settlement = await meter.capture(
        ticket.hold_id, {"input_tokens": 10, "output_tokens": 5_000}, rates=ticket.rates
    )
    assert settlement.charged == ticket.amount  # capped at the hold

    [violation] = await check.run_once()

    assert (violation.check, violation.sample[0]["hold_id"]) == ("metered_below_usage", str(ticket.hold_id))
    assert int(violation.sample[0]["overage"]) > 0
