"""Random sequences of grants, admissions, extensions and settlements against the real meter and
database, with reconciliation passes that ask owner resolvers (capture, release, not yet) about
expired holds, checked step by step against a model of the wallet: the ledger always explains
the balance, open holds always explain `held`, nothing goes below zero, and a hold settles
exactly once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from lipika.billing.errors import InsufficientCredits
from lipika.billing.meter import Owner, Settlement
from lipika.billing.models import EntryKind, Hold, HoldStatus
from lipika.billing.policy import Charge, Outcome, charge_for
from lipika.billing.pricebook import PriceBook, cost_of
from lipika.billing.resolvers import Capture, Later, Release, Resolution
from lipika.billing.tasks import Reconciler
from lipika.db import utcnow
from lipika.errors import Conflict
from tests.fixtures.ledger import Books

DEMO_RATES = dict(PriceBook.load().get("demo").rates)  # type: ignore[union-attr]


@dataclass
class ModelHold:
    amount: int
    status: HoldStatus = HoldStatus.OPEN
    captured: int | None = None
    overage: int = 0
    outcome: str | None = None
    owner: str | None = None  # the owner kind; its resolver decides at expiry
    recorded: dict[str, int] = field(default_factory=dict)  # the usage a capturing owner recorded


# Owner kinds whose resolvers the test registers: each answers the same way every time.
CAPTURING, RELEASING, WAITING = "property.capture", "property.release", "property.later"


@dataclass
class Model:
    balance: int
    held: int = 0
    holds: dict[uuid.UUID, ModelHold] = field(default_factory=dict)
    order: list[uuid.UUID] = field(default_factory=list)

    def pick(self, index: int) -> uuid.UUID | None:
        return self.order[index % len(self.order)] if self.order else None

    @property
    def available(self) -> int:
        return self.balance - self.held


usages = st.fixed_dictionaries(
    {
        "input_tokens": st.integers(0, 80),
        "output_tokens": st.integers(0, 80),
    },
    optional={"cached_input_tokens": st.integers(0, 20)},
)
hold_index = st.integers(0, 1000)
operations = st.one_of(
    st.tuples(st.just("grant"), st.integers(1, 50_000)),
    st.tuples(st.just("adjust"), st.integers(-60_000, 60_000).filter(bool)),
    st.tuples(st.just("admit"), st.integers(0, 40), st.integers(0, 40)),
    st.tuples(st.just("admit"), st.integers(0, 40), st.integers(0, 40)),
    st.tuples(st.just("capture"), hold_index, usages),
    st.tuples(
        st.just("settle"),
        hold_index,
        st.sampled_from(list(Outcome)),
        st.none() | usages,
        st.none() | usages,
    ),
    st.tuples(st.just("release"), hold_index, st.sampled_from(list(Outcome))),
    st.tuples(st.just("expire"), hold_index),
    st.tuples(st.just("reconcile")),
    st.tuples(
        st.just("admit_owned"),
        st.integers(0, 40),
        st.integers(0, 40),
        st.sampled_from([CAPTURING, RELEASING, WAITING]),
        usages,
    ),
    st.tuples(st.just("extend"), hold_index, st.integers(0, 60)),
)


@hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # Each example is a few dozen database transactions: shrinking a failure could take minutes.
    # A falsifying list of at most 20 operations is readable as it is.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(start=st.integers(0, 100_000), ops=st.lists(operations, min_size=1, max_size=20))
async def test_random_operations_keep_the_books_balanced(
    books: Books, start: int, ops: list[tuple]
) -> None:
    meter = books.meter
    workspace_id = await books.new_wallet("team")
    await books.set_available(workspace_id, start)
    user_id = uuid.uuid4()
    model = Model(balance=start)
    owned: dict[str, ModelHold] = {}

    async def capturing(hold: Hold) -> Resolution:
        return Capture(owned[hold.owner_id].recorded)

    async def releasing(hold: Hold) -> Resolution:
        return Release(Outcome.JOB_CANCELLED)

    async def waiting(hold: Hold) -> Resolution:
        return Later()

    for kind, resolver in ((CAPTURING, capturing), (RELEASING, releasing), (WAITING, waiting)):
        meter.resolvers.unregister(kind)
        meter.resolvers.register(kind, resolver)
    try:
        await run_operations(books, workspace_id, user_id, model, owned, ops)
    finally:
        for kind in (CAPTURING, RELEASING, WAITING):
            meter.resolvers.unregister(kind)


async def run_operations(
    books: Books,
    workspace_id: uuid.UUID,
    user_id: uuid.UUID,
    model: Model,
    owned: dict[str, ModelHold],
    ops: list[tuple],
) -> None:
    meter = books.meter
    for op in ops:
        name = op[0]
        if name in ("grant", "adjust"):
            amount = op[1]
            kind = EntryKind.GRANT if name == "grant" else EntryKind.ADJUSTMENT
            if model.available + amount < 0:
                try:
                    await books.post(workspace_id, amount, kind=kind)
                except InsufficientCredits as exc:
                    assert exc.details == {
                        "needed_micro": -amount,
                        "available_micro": model.available,
                    }
                else:
                    raise AssertionError(f"{op} took the available balance below zero")
            else:
                posted = await books.post(workspace_id, amount, kind=kind)
                model.balance += amount
                assert not posted.duplicate and posted.entry.balance_after == model.balance

        elif name in ("admit", "admit_owned"):
            usage = {"input_tokens": op[1], "output_tokens": op[2]}
            amount = cost_of(DEMO_RATES, usage)
            owner = Owner(op[3], uuid.uuid4().hex) if name == "admit_owned" else None
            try:
                ticket = await meter.admit(
                    workspace_id,
                    user_id,
                    operation="property",
                    price="demo",
                    max_usage=usage,
                    owner=owner,
                )
            except InsufficientCredits as exc:
                assert amount > model.available, (amount, model.available)
                assert exc.details == {"needed_micro": amount, "available_micro": model.available}
            else:
                assert amount <= model.available
                assert ticket.amount == amount
                model.held += amount
                model.holds[ticket.hold_id] = ModelHold(amount)
                model.order.append(ticket.hold_id)
                if owner is not None:
                    held = model.holds[ticket.hold_id]
                    held.owner, held.recorded = owner.kind, dict(op[4])
                    owned[owner.id] = held

        elif name == "extend":
            hold_id = model.pick(op[1])
            if hold_id is None:
                continue
            hold = model.holds[hold_id]
            more = cost_of(DEMO_RATES, {"output_tokens": op[2]})
            before = await books.state(workspace_id)
            if hold.status is not HoldStatus.OPEN:
                with pytest.raises(Conflict, match="already settled"):
                    await meter.extend(hold_id, more)
            elif more > model.available:
                with pytest.raises(InsufficientCredits) as refused:
                    await meter.extend(hold_id, more)
                assert refused.value.details == {
                    "needed_micro": more,
                    "available_micro": model.available,
                }
            else:
                extension = await meter.extend(hold_id, more)
                hold.amount += more
                model.held += more
                assert extension.amount == hold.amount == (await books.hold(hold_id)).amount
                before = None
            if before is not None:  # a refused extension changes nothing
                assert await books.state(workspace_id) == before

        elif name in ("capture", "settle", "release", "expire"):
            hold_id = model.pick(op[1])
            if hold_id is None:
                continue
            hold = model.holds[hold_id]
            was_open = hold.status is HoldStatus.OPEN
            before = await books.state(workspace_id)
            if name == "capture":
                settlement = await meter.capture(hold_id, op[2])
                charge, usage, outcome = Charge.REPORTED_USAGE, op[2], Outcome.SUCCESS
            elif name == "settle":
                outcome, usage, so_far = op[2], op[3], op[4]
                charge = charge_for(outcome)
                usage = {Charge.REPORTED_USAGE: usage, Charge.USAGE_SO_FAR: so_far}.get(charge)
                if usage is None and charge is not Charge.NOTHING:
                    # a charged outcome without its usage is refused, and changes nothing
                    with pytest.raises(ValueError):
                        await meter.settle(hold_id, outcome, usage=op[3], usage_so_far=op[4])
                    continue
                settlement = await meter.settle(hold_id, outcome, usage=op[3], usage_so_far=op[4])
            elif name == "release":
                outcome, charge, usage = op[2], Charge.NOTHING, None
                settlement = await meter.release(hold_id, outcome)
            else:
                outcome, charge, usage = Outcome.ABANDONED, Charge.NOTHING, None
                settlement = await meter.release(hold_id, outcome, status=HoldStatus.EXPIRED)

            if not was_open:
                assert_no_op(settlement, hold)
                assert await books.state(workspace_id) == before
                continue
            if charge is Charge.NOTHING:
                status = HoldStatus.EXPIRED if name == "expire" else HoldStatus.RELEASED
                hold.status, hold.captured, hold.outcome = status, 0, outcome.value
                model.held -= hold.amount
                assert (settlement.status, settlement.charged) == (status, 0)
            else:
                cost = cost_of(DEMO_RATES, usage)
                charged = min(cost, hold.amount)
                hold.status, hold.captured, hold.overage = (
                    HoldStatus.CAPTURED,
                    charged,
                    cost - charged,
                )
                hold.outcome = outcome.value
                model.held -= hold.amount
                model.balance -= charged
                assert (settlement.status, settlement.charged) == (HoldStatus.CAPTURED, charged)
            assert not settlement.already_settled
            assert settlement.balance_after == model.balance
            row = await books.hold(hold_id)
            assert (row.status, row.captured, row.overage, row.outcome) == (
                hold.status,
                hold.captured,
                hold.overage,
                hold.outcome,
            )

        elif name == "reconcile":
            far_future = utcnow() + timedelta(days=3650)
            await Reconciler(meter, books.sessionmaker).expire_holds(far_future)
            for hold in model.holds.values():
                if hold.status is not HoldStatus.OPEN or hold.owner == WAITING:
                    continue
                model.held -= hold.amount
                if hold.owner == CAPTURING:
                    cost = cost_of(DEMO_RATES, hold.recorded)
                    charged = min(cost, hold.amount)
                    hold.status, hold.captured, hold.overage = (
                        HoldStatus.CAPTURED,
                        charged,
                        cost - charged,
                    )
                    hold.outcome = Outcome.SUCCESS.value
                    model.balance -= charged
                else:
                    outcome = Outcome.JOB_CANCELLED if hold.owner else Outcome.ABANDONED
                    hold.status, hold.captured, hold.outcome = (
                        HoldStatus.EXPIRED,
                        0,
                        outcome.value,
                    )

        await check(books, workspace_id, model)


async def check(books: Books, workspace_id: uuid.UUID, model: Model) -> None:
    state = await books.state(workspace_id)
    assert (state.balance, state.held) == (model.balance, model.held)
    assert state.available >= 0
    await books.assert_balanced()
    usage_entries = await books.entries(workspace_id, EntryKind.USAGE)
    charged = {h: m.captured for h, m in model.holds.items() if m.captured}
    assert {e.hold_id: -e.amount for e in usage_entries} == charged
    assert len(usage_entries) == len(charged)
    # settling any settled hold again changes nothing
    for hold_id in model.order[-3:]:
        hold = model.holds[hold_id]
        if hold.status is HoldStatus.OPEN:
            continue
        again = await books.meter.capture(hold_id, {"input_tokens": 1, "output_tokens": 1})
        assert_no_op(again, hold)
        again = await books.meter.settle(hold_id, Outcome.INTERNAL_ERROR)
        assert_no_op(again, hold)
    assert await books.state(workspace_id) == state


def assert_no_op(settlement: Settlement, hold: ModelHold) -> None:
    assert settlement.already_settled is True
    assert settlement.balance_after is None
    assert settlement.status == hold.status
    assert settlement.charged == (hold.captured or 0)
