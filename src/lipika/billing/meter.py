"""The metering interface: admit (hold) -> execute -> settle (capture or release), exactly once.

Every paid path (chat streams, agent nodes, jobs, speech-to-text) runs inside a metering
session (`Meter.session`, billing/session.py) and nothing else; `admit`, `capture`, `release`
and `settle` are the ledger steps the session and reconciliation use. Each step is its own short
transaction on its own connection: a hold is durable before the provider is called, and no
request session stays open while a stream runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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
from lipika.billing.models import EntryKind, Hold, HoldStatus
from lipika.billing.plans import DEFAULT_PLAN, Plan, PlanCatalogue
from lipika.billing.policy import Charge, Outcome, charge_for
from lipika.billing.postgres import PostgresLedger
from lipika.billing.pricebook import PriceBook, cost_of
from lipika.billing.repository import LedgerRepository
from lipika.billing.session import MeteredCall
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
    price: str = ""


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
    # Batches of each kind (admissions, settlements) in flight at once; more only queue on the
    # hot wallet's lock, fewer batches are larger and cheaper per operation.
    batches_in_flight: int = 1
    _rules: dict[str, dict[str, list[Any]]] = field(default_factory=dict, init=False, repr=False)
    _postgres: PostgresLedger = field(init=False, repr=False)
    _background: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        # On PostgreSQL concurrent admissions (and settlements) share one function call, one
        # transaction and one commit; see migration 0003 and billing/postgres.py.
        self._postgres = PostgresLedger(
            self.engine,
            batches_in_flight=self.batches_in_flight,
            orphan_admitted=self._release_orphan,
        )

    @property
    def _on_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

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
        now = utcnow()
        hold = _NewHold(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            user_id=user_id,
            operation=operation,
            model=price,
            amount=priced.cost(max_usage),
            rates=dict(priced.rates),
            idempotency_key=idempotency_key,
            expires_at=now + (ttl or self.hold_ttl),
            now=now,
            metered_by_plan=priced.kind == "model",
        )
        if self._on_postgres:
            await self._admit_on_postgres(hold)
        else:
            await self._admit_portably(hold)
        return Ticket(
            hold.id,
            workspace_id,
            hold.amount,
            priced.rates,
            self.price_book.version,
            hold.expires_at,
            price,
        )

    async def _admit_on_postgres(self, hold: _NewHold) -> None:
        """`lipika_admit` in the server: every check and the hold, batched with concurrent ones."""
        day, month = hold.now.strftime("%Y-%m-%d"), hold.now.strftime("%Y-%m")
        user = hold.user_id
        refusal = await self._postgres.admit(
            [
                hold.id,
                hold.workspace_id,
                user,
                hold.operation,
                hold.model,
                hold.amount,
                self.price_book.version,
                hold.rates,
                hold.key,
                hold.expires_at,
                self._rules_for(hold),
                f"req:{hold.workspace_id}:{user}:{hold.model}:{day}" if user else None,
                f"wsday:{hold.workspace_id}:{day}",
                f"member:{hold.workspace_id}:{user}:{month}" if user else None,
            ]
        )
        if refusal:
            raise self._refusal(refusal, hold)

    def _release_orphan(self, hold_id: uuid.UUID) -> None:
        """An admission whose caller was cancelled while it ran: give the hold straight back."""
        task = asyncio.create_task(self.release(hold_id, Outcome.INTERNAL_ERROR))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _rules_for(self, hold: _NewHold) -> dict[str, list[Any]]:
        """{plan: [allowed, daily requests, daily credit cap]} for one model (cached)."""
        cache_key = f"{hold.model}:{hold.metered_by_plan}"
        if cache_key not in self._rules:
            self._rules[cache_key] = {
                plan.name: [
                    not hold.metered_by_plan or plan.allows(hold.model),
                    plan.daily_request_limit(hold.model) if hold.metered_by_plan else None,
                    plan.daily_credit_cap,
                ]
                for plan in self.plans.plans.values()
            }
        return self._rules[cache_key]

    def _refusal(self, refusal: str, hold: _NewHold) -> Exception:
        code, _, detail = refusal.partition(":")
        if code == "LP001":
            return WalletMissing("this workspace has no wallet")
        if code == "LP005":
            return _member_cap(int(detail), hold.amount)
        if code == "LP006":
            return InsufficientCredits(hold.amount, int(detail or 0))
        if code == "LP007":
            return _duplicate()
        plan = self.plans.get(detail) or self.plans.get(DEFAULT_PLAN)
        if code == "LP002":
            return _not_in_plan(plan, hold.model)
        if code == "LP003":
            return _request_limit(plan.daily_request_limit(hold.model), hold.model)
        if code == "LP004":
            return _daily_cap(plan.daily_credit_cap, hold.amount)
        return RuntimeError(f"unknown admission refusal {refusal!r}")

    async def _admit_portably(self, hold: _NewHold) -> None:
        """The same steps as `lipika_admit`, from Python, in one transaction (SQLite)."""
        async with self.engine.begin() as conn:
            repo = LedgerRepository(conn)
            facts = await repo.admission_facts(hold.workspace_id, hold.user_id)
            if facts is None:
                raise WalletMissing("this workspace has no wallet")
            plan = self.plans.get(facts.plan) or self.plans.get(DEFAULT_PLAN)
            if hold.metered_by_plan and not plan.allows(hold.model):
                raise _not_in_plan(plan, hold.model)
            counters = await self._take_limits(repo, plan, facts.member_cap, hold)
            try:
                await repo.insert_hold(
                    id=hold.id,
                    workspace_id=hold.workspace_id,
                    user_id=hold.user_id,
                    operation=hold.operation,
                    model=hold.model,
                    amount=hold.amount,
                    status=HoldStatus.OPEN,
                    price_version=self.price_book.version,
                    rates=hold.rates,
                    counters=counters,
                    idempotency_key=hold.key,
                    expires_at=hold.expires_at,
                    created_at=hold.now,
                    overage=0,
                )
            except IntegrityError:
                raise _duplicate() from None
            if not await repo.reserve(hold.workspace_id, hold.amount):
                state = await repo.wallet_state(hold.workspace_id)
                raise InsufficientCredits(hold.amount, state.available if state else 0)

    async def _take_limits(
        self, repo: LedgerRepository, plan: Plan, member_cap: int | None, hold: _NewHold
    ) -> list[list[str]]:
        """Counts the operation against every limit that applies; the period is in each key."""
        day, month = hold.now.strftime("%Y-%m-%d"), hold.now.strftime("%Y-%m")
        ws, user = hold.workspace_id, hold.user_id
        taken: list[list[str]] = []
        request_limit = (
            plan.daily_request_limit(hold.model) if user and hold.metered_by_plan else None
        )
        if request_limit is not None:
            key = f"req:{ws}:{user}:{hold.model}:{day}"
            if not await repo.bump_counter(key, day, 1, request_limit):
                raise _request_limit(request_limit, hold.model)
            taken.append([key, "requests"])
        if plan.daily_credit_cap is not None:
            key = f"wsday:{ws}:{day}"
            if not await repo.bump_counter(key, day, hold.amount, plan.daily_credit_cap):
                raise _daily_cap(plan.daily_credit_cap, hold.amount)
            taken.append([key, "credits"])
        if member_cap is not None and user is not None:
            key = f"member:{ws}:{user}:{month}"
            if not await repo.bump_counter(key, day, hold.amount, member_cap):
                raise _member_cap(member_cap, hold.amount)
            taken.append([key, "credits"])
        return taken

    async def capture(
        self,
        hold_id: uuid.UUID,
        usage: Mapping[str, int],
        outcome: Outcome = Outcome.SUCCESS,
        *,
        rates: Mapping[str, int] | None = None,
    ) -> Settlement:
        """Charges `usage` at the hold's frozen price (never more than the hold), releases the rest.

        `rates` are the hold's frozen rates when the caller has its ticket; otherwise they are read.
        """
        now = utcnow()
        if self._on_postgres:
            if rates is None:
                async with self.engine.connect() as conn:
                    found = await LedgerRepository(conn).hold(hold_id)
                if found is None:
                    raise _no_hold()
                rates = found.rates
            return await self._settle_on_postgres(
                ["capture", hold_id, cost_of(rates, usage), dict(usage), outcome.value]
            )
        async with self.engine.begin() as conn:
            repo = LedgerRepository(conn)
            current = await repo.hold(hold_id)
            if current is None:
                raise _no_hold()
            cost = cost_of(rates if rates is not None else current.rates, usage)
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
            if closed is None:  # lost a race with another settle: report where it ended
                return self._already(await repo.hold(hold_id))
            await repo.add_to_counters(_credit_keys(closed.counters), charged - closed.amount)
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
        return Settlement(hold_id, HoldStatus.CAPTURED, charged, balance)

    async def release(
        self, hold_id: uuid.UUID, outcome: Outcome, *, status: HoldStatus = HoldStatus.RELEASED
    ) -> Settlement:
        """Gives the whole hold back, and the requests and credits it counted against limits."""
        now = utcnow()
        if self._on_postgres:
            return await self._settle_on_postgres(["release", hold_id, status.value, outcome.value])
        async with self.engine.begin() as conn:
            repo = LedgerRepository(conn)
            closed = await repo.close_hold(
                hold_id, status=status, now=now, captured=0, outcome=outcome.value
            )
            if closed is None:
                current = await repo.hold(hold_id)
                if current is None:
                    raise _no_hold()
                return self._already(current)
            await repo.add_to_counters(_credit_keys(closed.counters), -closed.amount)
            await repo.add_to_counters([k for k, kind in closed.counters if kind == "requests"], -1)
            balance = await repo.move(closed.workspace_id, held=-closed.amount)
        return Settlement(hold_id, status, 0, balance)

    async def _settle_on_postgres(self, item: list[Any]) -> Settlement:
        status, charged, balance_after, already_settled = await self._postgres.settle(item)
        if status is None:
            raise _no_hold()
        return Settlement(item[1], HoldStatus(status), charged, balance_after, already_settled)

    async def aclose(self) -> None:
        """Lets batched calls in flight finish (before the engine is disposed)."""
        await self._postgres.drain()
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def settle(
        self,
        hold_id: uuid.UUID,
        outcome: Outcome,
        *,
        usage: Mapping[str, int] | None = None,
        usage_so_far: Mapping[str, int] | None = None,
        rates: Mapping[str, int] | None = None,
    ) -> Settlement:
        """Settles by the charge policy: the outcome decides which usage, if any, is charged."""
        match charge_for(outcome):
            case Charge.REPORTED_USAGE:
                if usage is None:
                    raise ValueError(f"{outcome.value} is charged its reported usage: pass usage=")
                return await self.capture(hold_id, usage, outcome, rates=rates)
            case Charge.USAGE_SO_FAR:
                if usage_so_far is None:
                    raise ValueError(
                        f"{outcome.value} is charged the usage so far: pass usage_so_far="
                    )
                return await self.capture(hold_id, usage_so_far, outcome, rates=rates)
            case _:
                return await self.release(hold_id, outcome)

    async def open_session(
        self,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID | None,
        *,
        input_estimate: int | None = None,
        stopped: Callable[[], Outcome | None] | None = None,
        **admission: Any,
    ) -> MeteredCall:
        """Admits (the keywords of `admit`) and returns the session that settles the hold; use
        it as `async with`. For a caller that admits before the block can start (a stream
        whose refusal must be a plain HTTP error)."""
        ticket = await self.admit(workspace_id, user_id, **admission)
        if input_estimate is None:
            input_estimate = admission["max_usage"].get("input_tokens", 0)
        return MeteredCall(self, ticket, input_estimate, stopped or _not_stopped)

    @asynccontextmanager
    async def session(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID | None, **admission: Any
    ) -> AsyncIterator[MeteredCall]:
        """Admits, yields the session, and settles whatever the block leaves open (see
        billing/session.py): every paid path runs inside one."""
        async with await self.open_session(workspace_id, user_id, **admission) as call:
            yield call

    hold = session  # the older name

    @staticmethod
    def _already(hold: Hold) -> Settlement:
        return Settlement(hold.id, hold.status, hold.captured or 0, None, already_settled=True)


@dataclass(frozen=True, slots=True)
class _NewHold:
    id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID | None
    operation: str
    model: str
    amount: int
    rates: dict[str, int]
    idempotency_key: str | None
    expires_at: datetime
    now: datetime
    metered_by_plan: bool

    @property
    def key(self) -> str:
        return self.idempotency_key or f"hold:{self.id}"


def _duplicate() -> Conflict:
    return Conflict(
        "a request with this idempotency key was already made", code="duplicate_request"
    )


def _no_hold() -> Conflict:
    return Conflict("no such hold", code="hold_not_found")


def _not_in_plan(plan: Plan, model: str) -> ModelNotInPlan:
    return ModelNotInPlan(
        f"the {plan.label} plan does not include {model}", model=model, plan=plan.name
    )


def _request_limit(limit: int | None, model: str) -> DailyRequestLimitReached:
    return DailyRequestLimitReached(
        f"daily limit of {limit} requests to {model} reached", limit=limit, model=model
    )


def _daily_cap(cap: int | None, needed: int) -> DailyCreditCapReached:
    return DailyCreditCapReached(
        "the workspace's daily credit cap is reached", cap=cap, needed=needed
    )


def _member_cap(cap: int, needed: int) -> MemberMonthlyCapReached:
    return MemberMonthlyCapReached(
        "your monthly credit cap in this workspace is reached", cap=cap, needed=needed
    )


def _not_stopped() -> Outcome | None:
    return None


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
