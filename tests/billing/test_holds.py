"""Holds with an owner, and holds that grow: extensions refused like admissions, and
reconciliation asking an owner's resolver what became of an expired hold."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from lipika.billing.errors import DailyCreditCapReached, InsufficientCredits
from lipika.billing.meter import Owner
from lipika.billing.models import EntryKind, Hold, HoldStatus
from lipika.billing.policy import Outcome
from lipika.billing.pricebook import PriceBook
from lipika.billing.resolvers import Capture, Later, Release, Resolution
from lipika.billing.tasks import Reconciler
from lipika.db import utcnow
from lipika.errors import Conflict
from tests.fixtures.ledger import Books

DEMO = PriceBook.load().get("demo")
MAX_USAGE = {"input_tokens": 100, "output_tokens": 100}  # 60_000 micro-credits
JOB = "test.job"


@pytest.fixture
def job_resolver(books: Books) -> Iterator[dict[str, Resolution]]:
    """A fake job kind: its resolver answers what the test put under the job's id, counting
    how often it was asked."""
    answers: dict[str, Resolution] = {}

    async def resolve(hold: Hold) -> Resolution:
        await asyncio.sleep(0.01)  # a provider poll: lets a concurrent pass overlap this one
        return answers[hold.owner_id]

    books.meter.resolvers.register(JOB, resolve)
    try:
        yield answers
    finally:
        books.meter.resolvers.unregister(JOB)


def far_future():
    return utcnow() + timedelta(days=3650)


async def admit_job(books: Books, workspace_id: uuid.UUID, job_id: str):
    return await books.meter.admit(
        workspace_id,
        None,
        operation="job.video",
        price="demo",
        max_usage=MAX_USAGE,
        owner=Owner(JOB, job_id),
    )


async def test_a_hold_records_its_owner_and_the_owner_is_its_idempotency_key(
    books: Books,
) -> None:
    workspace_id = await books.new_wallet()
    ticket = await admit_job(books, workspace_id, "job-1")
    hold = await books.hold(ticket.hold_id)
    assert (hold.owner_kind, hold.owner_id, hold.idempotency_key) == (JOB, "job-1", f"{JOB}:job-1")
    with pytest.raises(Conflict, match="already made"):
        await admit_job(books, workspace_id, "job-1")
    assert (await books.state(workspace_id)).held == ticket.amount


async def test_an_expired_job_whose_provider_finished_is_captured_once_by_concurrent_passes(
    books: Books, job_resolver: dict[str, Resolution]
) -> None:
    """Two reconciliation passes at once (a lock that expired under a slow pass): the job's
    hold is captured with the usage the job recorded, once."""
    workspace_id = await books.new_wallet()
    ticket = await admit_job(books, workspace_id, "job-done")
    recorded = {"input_tokens": 40, "output_tokens": 30}
    job_resolver["job-done"] = Capture(recorded)
    passes = [Reconciler(books.meter, books.sessionmaker) for _ in range(2)]

    settled = await asyncio.gather(*(p.expire_holds(far_future()) for p in passes))

    assert sorted(settled) == [0, 1]
    hold = await books.hold(ticket.hold_id)
    assert (hold.status, hold.outcome, hold.usage) == (HoldStatus.CAPTURED, "success", recorded)
    assert hold.captured == DEMO.cost(recorded)
    [entry] = await books.entries(workspace_id, EntryKind.USAGE)
    assert (entry.hold_id, -entry.amount) == (ticket.hold_id, DEMO.cost(recorded))
    await books.assert_balanced()


async def test_a_job_still_running_is_left_for_a_later_pass_then_released_by_policy(
    books: Books, job_resolver: dict[str, Resolution]
) -> None:
    workspace_id = await books.new_wallet()
    ticket = await admit_job(books, workspace_id, "job-running")
    plain = await books.meter.admit(
        workspace_id, None, operation="test", price="demo", max_usage=MAX_USAGE
    )
    job_resolver["job-running"] = Later()
    reconciler = Reconciler(books.meter, books.sessionmaker)

    assert await reconciler.expire_holds(far_future()) == 1  # only the hold without a resolver
    assert (await books.hold(ticket.hold_id)).status is HoldStatus.OPEN
    released = await books.hold(plain.hold_id)
    assert (released.status, released.outcome) == (HoldStatus.EXPIRED, "abandoned")

    job_resolver["job-running"] = Release(Outcome.JOB_CANCELLED)
    assert await reconciler.expire_holds(far_future()) == 1
    hold = await books.hold(ticket.hold_id)
    assert (hold.status, hold.outcome, hold.captured) == (HoldStatus.EXPIRED, "job_cancelled", 0)
    assert (await books.state(workspace_id)).held == 0
    await books.assert_balanced()


async def test_a_failing_resolver_leaves_its_hold_and_the_pass_goes_on(books: Books) -> None:
    workspace_id = await books.new_wallet()

    async def broken(hold: Hold) -> Resolution:
        raise RuntimeError("provider unreachable")

    books.meter.resolvers.register("test.broken", broken)
    try:
        stuck = await books.meter.admit(
            workspace_id,
            None,
            operation="job",
            price="demo",
            max_usage=MAX_USAGE,
            owner=Owner("test.broken", "b1"),
        )
        plain = await books.meter.admit(
            workspace_id, None, operation="test", price="demo", max_usage=MAX_USAGE
        )
        assert await Reconciler(books.meter, books.sessionmaker).expire_holds(far_future()) == 1
    finally:
        books.meter.resolvers.unregister("test.broken")
    assert (await books.hold(stuck.hold_id)).status is HoldStatus.OPEN
    assert (await books.hold(plain.hold_id)).status is HoldStatus.EXPIRED
    await books.assert_balanced()


async def test_a_hold_grows_with_a_later_expiry_and_captures_up_to_its_new_amount(
    books: Books,
) -> None:
    workspace_id = await books.new_wallet()
    async with books.meter.session(
        workspace_id,
        None,
        operation="stt",
        price="demo",
        max_usage=MAX_USAGE,
        owner=Owner("test.speech", "s1"),
    ) as call:
        first_expiry = call.ticket.expires_at
        extension = await call.extend({"output_tokens": 100}, ttl=timedelta(hours=1))
        assert extension.amount == call.ticket.amount == 60_000 + 50_000
        assert call.ticket.expires_at > first_expiry
        assert (await books.state(workspace_id)).held == extension.amount
        usage = {"input_tokens": 100, "output_tokens": 200}
        settlement = await call.settle(Outcome.SUCCESS, usage=usage)
    assert settlement.charged == DEMO.cost(usage) == extension.amount
    state = await books.state(workspace_id)
    assert state.held == 0
    await books.assert_balanced()


async def test_an_extension_is_refused_like_an_admission_and_changes_nothing(
    books: Books,
) -> None:
    workspace_id = await books.new_wallet()  # the free plan: a daily credit cap of 50 credits
    ticket = await books.meter.admit(
        workspace_id, None, operation="stt", price="demo", max_usage=MAX_USAGE
    )
    before = await books.state(workspace_id)
    row = await books.hold(ticket.hold_id)

    with pytest.raises(DailyCreditCapReached):
        await books.meter.extend(ticket.hold_id, 60_000_000)
    await books.set_available(workspace_id, 5_000)
    poorer = await books.state(workspace_id)
    with pytest.raises(InsufficientCredits) as refused:
        await books.meter.extend(ticket.hold_id, 5_001)
    assert refused.value.details == {"needed_micro": 5_001, "available_micro": 5_000}

    after = await books.hold(ticket.hold_id)
    assert (after.amount, after.expires_at) == (row.amount, row.expires_at)
    assert (await books.state(workspace_id)) == poorer and poorer.held == before.held
    counters = await books.counters(f"wsday:{workspace_id}:")
    assert list(counters.values()) == [ticket.amount]

    await books.meter.release(ticket.hold_id, Outcome.INTERNAL_ERROR)
    with pytest.raises(Conflict, match="already settled"):
        await books.meter.extend(ticket.hold_id, 1)
    assert list((await books.counters(f"wsday:{workspace_id}:")).values()) == [0]
    await books.assert_balanced()


async def test_an_extension_counts_against_the_daily_cap_and_a_release_gives_it_all_back(
    books: Books,
) -> None:
    workspace_id = await books.new_wallet()
    ticket = await books.meter.admit(
        workspace_id, None, operation="stt", price="demo", max_usage=MAX_USAGE
    )
    await books.meter.extend(ticket.hold_id, 40_000)
    counters = await books.counters(f"wsday:{workspace_id}:")
    assert list(counters.values()) == [ticket.amount + 40_000]
    await books.meter.release(ticket.hold_id, Outcome.INTERNAL_ERROR)
    assert list((await books.counters(f"wsday:{workspace_id}:")).values()) == [0]
    await books.assert_balanced()
