"""The metering interface: admit (hold) -> execute -> settle (capture or release), exactly once.

Every paid path (chat streams, agent nodes, jobs, speech-to-text) calls this and nothing else.
Each step is its own short transaction on its own connection: a hold is durable before the
provider is called, and no request session stays open while a stream runs.

    async with meter.hold(workspace_id, user_id, operation="chat", price="demo",
                          max_usage={"input_tokens": 900, "output_tokens": 512}) as held:
        result = await provider.call(...)
        await held.settle(Outcome.SUCCESS, usage=result.usage)
    # any exception inside the block releases the hold (the charge policy: our failures are free)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.billing.errors import (
    DailyCreditCapReached,
    DailyRequestLimitReached,
    InsufficientCredits,
    MemberMonthlyCapReached,
    ModelNotInPlan,
    UnknownPrice,
    WalletMissing,
)
from lipika.billing.models import EntryKind, HoldStatus
from lipika.billing.plans import Plan, PlanCatalogue
from lipika.billing.policy import Charge, Outcome, charge_for
from lipika.billing.pricebook import PriceBook, cost_of
from lipika.billing.repository import LedgerRepository
from lipika.config import Settings
from lipika.db import utcnow
from lipika.errors import Conflict

DEFAULT_HOLD_TTL = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted operation: the hold, and the price frozen on it."""

    hold_id: uuid.UUID
    workspace_id: uuid.UUID
    amount: int
    rates: Mapping[str, int]
    price_version: str
    expires_at: datetime

    def cost(self, usage: Mapping[str, int]) -> int:
        return cost_of(self.rates, usage)


@dataclass(frozen=True, slots=True)
class Settlement:
    hold_id: uuid.UUID
    status: HoldStatus
    charged: int
    balance_after: int | None
    already_settled: bool = False


@dataclass
class Meter:
    engine: AsyncEngine
    price_book: PriceBook
    plans: PlanCatalogue
    hold_ttl: timedelta = DEFAULT_HOLD_TTL

    async def admit(
        self,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID | None,
        *,
        operation: str,
        price: str,
        max_usage: Mapping[str, int],
        idempotency_key: str | None = None,
        ttl: timedelta | None = None,
    ) -> Ticket:
        """Checks plan and limits, then holds the most the operation can cost, atomically.

        Raises a billing error (and holds nothing) when any check refuses.
        """
        priced = self.price_book.get(price)
        if priced is None:
            raise UnknownPrice(f"no price for {price!r}", price=price)
        amount = priced.cost(max_usage)
        now = utcnow()
        hold_id = uuid.uuid4()
        expires_at = now + (ttl or self.hold_ttl)
        async with self.engine.begin() as conn:
            repo = LedgerRepository(conn)
            facts = await repo.admission_facts(workspace_id, user_id)
            if facts is None:
                raise WalletMissing("this workspace has no wallet")
            plan = self.plans.get(facts.plan) or self.plans.get("free")
            if priced.kind == "model" and not plan.allows(price):
                raise ModelNotInPlan(
                    f"the {plan.label} plan does not include {price}", model=price, plan=plan.name
                )
            counters = await self._take_limits(repo, plan, facts.member_cap, workspace_id, user_id, price, amount, now)
            await self._insert_hold(
                repo,
                id=hold_id,
                workspace_id=workspace_id,
                user_id=user_id,
                operation=operation,
                model=price,
                amount=amount,
                status=HoldStatus.OPEN,
                price_version=self.price_book.version,
                rates=dict(priced.rates),
                counters=counters,
                idempotency_key=idempotency_key or f"hold:{hold_id}",
                expires_at=expires_at,
                created_at=now,
                overage=0,
            )
            # Last, so the hot wallet row is locked for as short a time as possible.
            if not await repo.reserve(workspace_id, amount):
                state = await repo.wallet_state(workspace_id)
                raise InsufficientCredits(amount, state.available if state else 0)
        return Ticket(hold_id, workspace_id, amount, priced.rates, self.price_book.version, expires_at)

    @staticmethod
    async def _insert_hold(repo: LedgerRepository, **values) -> None:
        try:
            await repo.insert_hold(**values)
        except IntegrityError:
            raise Conflict(
                "a request with this idempotency key was already made", code="duplicate_request"
            ) from None

    async def _take_limits(
        self,
        repo: LedgerRepository,
        plan: Plan,
        member_cap: int | None,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID | None,
        price: str,
        amount: int,
        now: datetime,
    ) -> list[list[str]]:
        """Counts this operation against every limit that applies; the period is in each key."""
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        taken: list[list[str]] = []
        request_limit = plan.daily_request_limit(price) if user_id else None
        if request_limit is not None:
            key = f"req:{workspace_id}:{user_id}:{price}:{day}"
            if not await repo.bump_counter(key, day, 1, request_limit):
                raise DailyRequestLimitReached(
                    f"daily limit of {request_limit} requests to {price} reached", limit=request_limit, model=price
                )
            taken.append([key, "requests"])
        if plan.daily_credit_cap is not None:
            key = f"wsday:{workspace_id}:{day}"
            if not await repo.bump_counter(key, day, amount, plan.daily_credit_cap):
                raise DailyCreditCapReached(
                    "the workspace's daily credit cap is reached", cap=plan.daily_credit_cap, needed=amount
                )
            taken.append([key, "credits"])
        if member_cap is not None and user_id is not None:
            key = f"member:{workspace_id}:{user_id}:{month}"
            if not await repo.bump_counter(key, day, amount, member_cap):
                raise MemberMonthlyCapReached(
                    "your monthly credit cap in this workspace is reached", cap=member_cap, needed=amount
                )
            taken.append([key, "credits"])
        return taken

    async def capture(
        self, hold_id: uuid.UUID, usage: Mapping[str, int], outcome: Outcome = Outcome.SUCCESS
    ) -> Settlement:
        """Charges `usage` at the hold's frozen price (never more than the hold), releases the rest."""
        now = utcnow()
        async with self.engine.begin() as conn:
            repo = LedgerRepository(conn)
            current = await repo.hold(hold_id)
            if current is None:
                raise Conflict("no such hold", code="hold_not_found")
            cost = cost_of(current.rates, usage)
            charged = min(cost, current.amount)
            closed = await repo.close_hold(
                hold_id,
                status=HoldStatus.CAPTURED,
                now=now,
                captured=charged,
                overage=cost - charged,
                usage=dict(usage),
                outcome=outcome.value,
            )
            if closed is None:
                return self._already(current)
            balance = await repo.move(closed.workspace_id, balance=-charged, held=-closed.amount)
            if charged:
                await repo.append_entry(
                    workspace_id=closed.workspace_id,
                    kind=EntryKind.USAGE,
                    amount=-charged,
                    balance_after=balance,
                    idempotency_key=f"usage:{hold_id}",
                    hold_id=hold_id,
                    user_id=closed.user_id,
                    model=closed.model,
                    reason=outcome.value,
                    created_at=now,
                )
            await repo.add_to_counters(_credit_keys(closed.counters), charged - closed.amount)
        return Settlement(hold_id, HoldStatus.CAPTURED, charged, balance)

    async def release(
        self, hold_id: uuid.UUID, outcome: Outcome, *, status: HoldStatus = HoldStatus.RELEASED
    ) -> Settlement:
        """Gives the whole hold back, and the requests and credits it counted against limits."""
        now = utcnow()
        async with self.engine.begin() as conn:
            repo = LedgerRepository(conn)
            closed = await repo.close_hold(hold_id, status=status, now=now, captured=0, outcome=outcome.value)
            if closed is None:
                current = await repo.hold(hold_id)
                if current is None:
                    raise Conflict("no such hold", code="hold_not_found")
                return self._already(current)
            balance = await repo.move(closed.workspace_id, held=-closed.amount)
            await repo.add_to_counters(_credit_keys(closed.counters), -closed.amount)
            await repo.add_to_counters([k for k, kind in closed.counters if kind == "requests"], -1)
        return Settlement(hold_id, status, 0, balance)

    async def settle(
        self,
        hold_id: uuid.UUID,
        outcome: Outcome,
        *,
        usage: Mapping[str, int] | None = None,
        usage_so_far: Mapping[str, int] | None = None,
    ) -> Settlement:
        """Settles by the charge policy: the outcome decides which usage, if any, is charged."""
        match charge_for(outcome):
            case Charge.REPORTED_USAGE if usage is not None:
                return await self.capture(hold_id, usage, outcome)
            case Charge.USAGE_SO_FAR if usage_so_far is not None:
                return await self.capture(hold_id, usage_so_far, outcome)
            case _:
                return await self.release(hold_id, outcome)

    @asynccontextmanager
    async def hold(self, workspace_id: uuid.UUID, user_id: uuid.UUID | None, **admission) -> AsyncIterator[Metered]:
        """Admits, yields a handle to settle with, and releases on any exception or if unsettled."""
        ticket = await self.admit(workspace_id, user_id, **admission)
        metered = Metered(self, ticket)
        try:
            yield metered
        except BaseException as exc:
            if metered.settlement is None:
                await self.release(ticket.hold_id, outcome_of(exc))
            raise
        if metered.settlement is None:
            await self.release(ticket.hold_id, Outcome.INTERNAL_ERROR)

    @staticmethod
    def _already(hold) -> Settlement:
        return Settlement(hold.id, hold.status, hold.captured or 0, None, already_settled=True)


@dataclass
class Metered:
    meter: Meter
    ticket: Ticket
    settlement: Settlement | None = field(default=None)

    async def settle(
        self,
        outcome: Outcome,
        *,
        usage: Mapping[str, int] | None = None,
        usage_so_far: Mapping[str, int] | None = None,
    ) -> Settlement:
        self.settlement = await self.meter.settle(
            self.ticket.hold_id, outcome, usage=usage, usage_so_far=usage_so_far
        )
        return self.settlement


def outcome_of(exc: BaseException) -> Outcome:
    """The policy outcome of an exception that escaped a metered block (ours, unless it says)."""
    return getattr(exc, "outcome", Outcome.INTERNAL_ERROR)


def _credit_keys(counters: list[list[str]]) -> list[str]:
    return [key for key, kind in counters if kind == "credits"]


def build_meter(settings: Settings, engine: AsyncEngine) -> Meter:
    """The meter with the configured (or shipped) price book and plan catalogue; bad files fail start-up."""
    price_book = PriceBook.load(settings.pricebook_path)
    return Meter(
        engine,
        price_book,
        PlanCatalogue.load(price_book, settings.plans_path),
        timedelta(seconds=settings.hold_ttl_seconds),
    )
