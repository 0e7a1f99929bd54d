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
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from lipika.billing.errors import DuplicateRequest, UnknownPrice, WalletMissing
from lipika.billing.models import EntryKind, Hold, HoldStatus
from lipika.billing.plans import DEFAULT_PLAN, PlanCatalogue
from lipika.billing.policy import Charge, Outcome, charge_for
from lipika.billing.postgres import PostgresLedger
from lipika.billing.pricebook import Price, PriceBook, cost_of
from lipika.billing.repository import LedgerRepository
from lipika.billing.resolvers import HoldResolvers
from lipika.billing.rules import (
    DUPLICATE,
    INSUFFICIENT,
    LIMIT,
    MEMBER_CAP,
    NO_WALLET,
    AdmissionRules,
    Sizing,
    counter_delta_on_release,
    credit_counter_caps,
    daily_cap,
    insufficient,
    member_cap,
    metered_units,
)
from lipika.billing.session import MeteredCall
from lipika.config import Settings
from lipika.db import utcnow
from lipika.errors import Conflict, LipikaError

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


@dataclass(frozen=True, slots=True)
class Owner:
    """What a hold belongs to: a kind ("chat.request", "agent.step", "job") and its id."""

    kind: str
    id: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


class MeterObserver(Protocol):
    """Told of every admission and settlement (metrics and the access log listen here)."""

    def admitted(self, operation: str, result: str) -> None:
        """`result` is `admitted` or the refusal's error code."""

    def settled(self, settlement: Settlement, outcome: Outcome) -> None: ...

    def charged(
        self,
        price: Price | None,
        outcome: Outcome,
        settlement: Settlement,
        *,
        usage: Mapping[str, int] | None,
        usage_so_far: Mapping[str, int] | None,
    ) -> None:
        """A settled operation with its price: what the user was charged for it."""


class _Unobserved:
    def admitted(self, operation: str, result: str) -> None:
        pass

    def settled(self, settlement: Settlement, outcome: Outcome) -> None:
        pass

    def charged(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class Meter:
    engine: AsyncEngine
    price_book: PriceBook
    plans: PlanCatalogue
    hold_ttl: timedelta = DEFAULT_HOLD_TTL
    # Batches of each kind (admissions, settlements) in flight at once; more only queue on the
    # hot wallet's lock, fewer batches are larger and cheaper per operation.
    batches_in_flight: int = 1
    # What reconciliation asks about an expired hold, by its owner's kind (billing/resolvers.py).
    resolvers: HoldResolvers = field(default_factory=HoldResolvers)
    observer: MeterObserver = field(default_factory=_Unobserved)
    rules: AdmissionRules = field(init=False, repr=False)
    _postgres: PostgresLedger = field(init=False, repr=False)
    _background: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rules = AdmissionRules(self.plans)
        # On PostgreSQL concurrent admissions (and settlements) share one function call, one
        # transaction and one commit; see migrations 0003 and 0007 and billing/postgres.py.
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
        owner: Owner | None = None,
    ) -> Ticket:
        """Checks plan and limits, then holds the most the operation can cost, atomically.

        Raises a billing error (and holds nothing) when any check refuses. Without an explicit
        idempotency key, the owner's identity is the key (one hold per owner).
        """
        try:
            return await self._admit(
                workspace_id, user_id, operation, price, max_usage, idempotency_key, ttl, owner
            )
        except LipikaError as exc:
            self.observer.admitted(operation, exc.code)
            raise

    async def _admit(
        self,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID | None,
        operation: str,
        price: str,
        max_usage: Mapping[str, int],
        idempotency_key: str | None,
        ttl: timedelta | None,
        owner: Owner | None,
    ) -> Ticket:
        priced = self.price_book.get(price)
        if priced is None:
            raise UnknownPrice(f"no price for {price!r}", price=price)
        now = utcnow()
        hold = _NewHold(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            user_id=user_id,
            operation=operation,
            price=priced,
            amount=priced.cost(max_usage),
            units=metered_units(priced, max_usage),
            output_allowance=max_usage.get("output_tokens") if priced.kind == "model" else None,
            idempotency_key=idempotency_key or (owner.key if owner else None),
            expires_at=now + (ttl or self.hold_ttl),
            now=now,
            owner=owner,
        )
        rules = self.rules.encode(
            priced,
            workspace_id=workspace_id,
            user_id=user_id,
            amount=hold.amount,
            units=hold.units,
            day=hold.day,
        )
        if self._on_postgres:
            refusal = await self._postgres.admit(hold.as_item(self.price_book.version, rules))
        else:
            refusal = await self._admit_portably(hold, rules)
        if refusal:
            raise await self._refusal(refusal, hold)
        return self._admitted(
            operation,
            Ticket(
                hold.id,
                workspace_id,
                hold.amount,
                priced.rates,
                self.price_book.version,
                hold.expires_at,
                price,
            )
        )

    def _admitted(self, operation: str, ticket: Ticket) -> Ticket:
        """Every admission passes here once, on both databases."""
        self.observer.admitted(operation, "admitted")
        return ticket

    def _settled(self, settlement: Settlement, outcome: Outcome) -> Settlement:
        """Every settlement (capture or release, a repeated one included: `already_settled`)
        passes here once, on both databases."""
        self.observer.settled(settlement, outcome)
        return settlement

    def _release_orphan(self, hold_id: uuid.UUID) -> None:
        """An admission whose caller was cancelled while it ran: give the hold straight back."""
        task = asyncio.create_task(self.release(hold_id, Outcome.INTERNAL_ERROR))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _extend_on_postgres(
        self, hold_id: uuid.UUID, more: int, expires_at: datetime
    ) -> Extension:
        caps = {name: plan.daily_credit_cap for name, plan in self.plans.plans.items()}
        refusal, amount, new_expiry = await self._postgres.extend(hold_id, more, expires_at, caps)
        if not refusal:
            assert amount is not None and new_expiry is not None
            return Extension(hold_id, amount, new_expiry)
        code, _, detail = refusal.partition(":")
        if code == "LP404":
            raise _no_hold()
        if code == "LP409":
            raise _not_open()
        if code == INSUFFICIENT:
            raise insufficient(more, int(detail or 0), Sizing())
        hold = await self._hold(hold_id)
        needed = (hold.amount if hold else 0) + more
        if code == MEMBER_CAP:
            raise member_cap(int(detail), needed)
        raise daily_cap(int(detail), needed)

    async def _hold(self, hold_id: uuid.UUID) -> Hold | None:
        async with self.engine.connect() as conn:
            return await LedgerRepository(conn).hold(hold_id)

    async def _refusal(self, refusal: str, hold: _NewHold) -> Exception:
        """The typed error of a refusal, naming the cause and the fix (a refusal is rare: what
        a refused credit counter still had is read for the message)."""
        code, _, detail = refusal.partition(":")
        sizing = Sizing(hold.output_allowance)
        if code == NO_WALLET:
            return WalletMissing("this workspace has no wallet")
        if code == INSUFFICIENT:
            return insufficient(hold.amount, int(detail or 0), sizing)
        if code == DUPLICATE:
            return _duplicate()
        default = self.plans.get(DEFAULT_PLAN)
        assert default is not None  # the catalogue refuses to load without it
        left = None
        limit = self.rules.refused_limit(refusal, hold.price, default)
        if limit is not None and limit.kind == "credits":
            key = limit.key(hold.workspace_id, hold.user_id, hold.price.name, hold.day)
            left = limit.cap - await self._counter(key)
        elif code == MEMBER_CAP and hold.member_key is not None:
            left = int(detail) - await self._counter(hold.member_key)
        error = self.rules.refusal(
            refusal, hold.price, hold.amount, hold.units, default, sizing=sizing, left=left
        )
        return error or RuntimeError(f"unknown admission refusal {refusal!r}")

    async def _counter(self, key: str) -> int:
        async with self.engine.connect() as conn:
            return await LedgerRepository(conn).counter_value(key)

    async def _admit_portably(self, hold: _NewHold, rules: Mapping[str, list[Any]]) -> str:
        """The steps of `lipika_admit_rules`, from Python, in one transaction (SQLite): the same
        rules, the same refusals. A refusal rolls the transaction back."""
        async with self.engine.connect() as conn:
            transaction = await conn.begin()
            try:
                refusal = await self._admission_steps(LedgerRepository(conn), hold, rules)
            except IntegrityError:
                refusal = f"{DUPLICATE}:"
            if refusal:
                await transaction.rollback()
            else:
                await transaction.commit()
            return refusal

    async def _admission_steps(
        self, repo: LedgerRepository, hold: _NewHold, rules: Mapping[str, list[Any]]
    ) -> str:
        facts = await repo.admission_facts(hold.workspace_id, hold.user_id)
        if facts is None:
            return f"{NO_WALLET}:"
        refused, counters = rules.get(facts.plan) or rules[DEFAULT_PLAN]
        if refused:
            return f"{refused}:{facts.plan}"
        taken: list[list[Any]] = []
        for key, amount, cap, kind, index in counters:
            if not await repo.bump_counter(key, hold.day, amount, cap):
                return f"{LIMIT}:{facts.plan}:{index}"
            taken.append([key, kind, amount])
        member_key = hold.member_key
        if facts.member_cap is not None and member_key is not None:
            if not await repo.bump_counter(member_key, hold.day, hold.amount, facts.member_cap):
                return f"{MEMBER_CAP}:{facts.member_cap}"
            taken.append([member_key, "credits", hold.amount])
        await repo.insert_hold(
            id=hold.id,
            workspace_id=hold.workspace_id,
            user_id=hold.user_id,
            operation=hold.operation,
            model=hold.price.name,
            amount=hold.amount,
            status=HoldStatus.OPEN,
            price_version=self.price_book.version,
            rates=dict(hold.price.rates),
            counters=taken,
            idempotency_key=hold.key,
            expires_at=hold.expires_at,
            created_at=hold.now,
            overage=0,
            owner_kind=hold.owner.kind if hold.owner else None,
            owner_id=hold.owner.id if hold.owner else None,
        )
        if not await repo.reserve(hold.workspace_id, hold.amount):
            state = await repo.wallet_state(hold.workspace_id)
            return f"{INSUFFICIENT}:{state.available if state else 0}"
        return ""

    async def extend(
        self, hold_id: uuid.UUID, more: int, *, ttl: timedelta | None = None
    ) -> Extension:
        """Grows an open hold by `more` micro-credits and moves its expiry to `ttl` from now
        (never earlier than it was), atomically; refused like an admission (the credits must
        be available and fit the daily and monthly caps), and then nothing changes.

        On PostgreSQL one call of `lipika_extend` (migration 0007) under the wallet's lock; on
        SQLite the same steps from Python in one transaction.
        """
        if more < 0:
            raise ValueError("a hold grows, it never shrinks: settle it instead")
        now = utcnow()
        expires_at = now + (ttl or self.hold_ttl)
        if self._on_postgres:
            return await self._extend_on_postgres(hold_id, more, expires_at)
        async with self.engine.begin() as conn:
            repo = LedgerRepository(conn)
            found = await repo.hold(hold_id)
            if found is None:
                raise _no_hold()
            await repo.lock_wallet(found.workspace_id)
            current = await repo.hold(hold_id)  # again, under the lock
            assert current is not None
            if current.status is not HoldStatus.OPEN:
                raise _not_open()
            facts = await repo.admission_facts(current.workspace_id, current.user_id)
            assert facts is not None  # the hold's wallet exists (it is locked)
            plan = self.plans.get(facts.plan) or self.plans.get(DEFAULT_PLAN)
            assert plan is not None
            caps = credit_counter_caps(current.counters, plan, facts.member_cap)
            for key, cap in caps.items():
                if cap is None:
                    await repo.add_to_counters([key], more)
                elif not await repo.bump_counter(key, now.strftime("%Y-%m-%d"), more, cap):
                    raise (
                        daily_cap(cap, current.amount + more)
                        if key.startswith("wsday:")
                        else member_cap(cap, current.amount + more)
                    )
            if not await repo.reserve(current.workspace_id, more):
                state = await repo.wallet_state(current.workspace_id)
                raise insufficient(more, state.available if state else 0, Sizing())
            grown = await repo.grow_hold(hold_id, more, max(expires_at, current.expires_at))
        return Extension(hold_id, grown.amount, grown.expires_at)

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
            return self._settled(
                await self._settle_on_postgres(
                    ["capture", hold_id, cost_of(rates, usage), dict(usage), outcome.value]
                ),
                outcome,
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
                return self._settled(self._already(await repo.hold(hold_id)), outcome)
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
        return self._settled(Settlement(hold_id, HoldStatus.CAPTURED, charged, balance), outcome)

    async def release(
        self, hold_id: uuid.UUID, outcome: Outcome, *, status: HoldStatus = HoldStatus.RELEASED
    ) -> Settlement:
        """Gives the whole hold back, and the requests and credits it counted against limits."""
        now = utcnow()
        if self._on_postgres:
            return self._settled(
                await self._settle_on_postgres(["release", hold_id, status.value, outcome.value]),
                outcome,
            )
        async with self.engine.begin() as conn:
            repo = LedgerRepository(conn)
            closed = await repo.close_hold(
                hold_id, status=status, now=now, captured=0, outcome=outcome.value
            )
            if closed is None:
                current = await repo.hold(hold_id)
                if current is None:
                    raise _no_hold()
                return self._settled(self._already(current), outcome)
            for key, kind, *counted in closed.counters:
                stored = counted[0] if counted else 0
                delta = counter_delta_on_release(kind, stored, closed.amount)
                await repo.add_to_counters([key], delta)
            balance = await repo.move(closed.workspace_id, held=-closed.amount)
        return self._settled(Settlement(hold_id, status, 0, balance), outcome)

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
        price: str | None = None,
    ) -> Settlement:
        """Settles by the charge policy: the outcome decides which usage, if any, is charged.

        `price` (the hold's price-book entry) lets the observer count tokens and credits by it.
        """
        match charge_for(outcome):
            case Charge.REPORTED_USAGE:
                if usage is None:
                    raise ValueError(f"{outcome.value} is charged its reported usage: pass usage=")
                settlement = await self.capture(hold_id, usage, outcome, rates=rates)
            case Charge.USAGE_SO_FAR:
                if usage_so_far is None:
                    raise ValueError(
                        f"{outcome.value} is charged the usage so far: pass usage_so_far="
                    )
                settlement = await self.capture(hold_id, usage_so_far, outcome, rates=rates)
            case _:
                settlement = await self.release(hold_id, outcome)
        self.observer.charged(
            self.price_book.get(price) if price else None,
            outcome,
            settlement,
            usage=usage,
            usage_so_far=usage_so_far,
        )
        return settlement

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
class Extension:
    hold_id: uuid.UUID
    amount: int  # the hold's amount now
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class _NewHold:
    id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID | None
    operation: str
    price: Price
    amount: int
    units: int
    idempotency_key: str | None
    expires_at: datetime
    now: datetime
    owner: Owner | None
    output_allowance: int | None = None

    @property
    def key(self) -> str:
        return self.idempotency_key or f"hold:{self.id}"

    @property
    def day(self) -> str:
        return self.now.strftime("%Y-%m-%d")

    @property
    def member_key(self) -> str | None:
        """The member's monthly-cap counter (its cap is read by the database, per member)."""
        if self.user_id is None:
            return None
        return f"member:{self.workspace_id}:{self.user_id}:{self.now.strftime('%Y-%m')}"

    def as_item(self, price_version: str, rules: Mapping[str, list[Any]]) -> dict[str, Any]:
        """The argument of `lipika_admit_rules` (migration 0007)."""
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "user_id": self.user_id,
            "operation": self.operation,
            "model": self.price.name,
            "amount": self.amount,
            "price_version": price_version,
            "rates": self.price.rates,
            "key": self.key,
            "expires_at": self.expires_at,
            "owner_kind": self.owner.kind if self.owner else None,
            "owner_id": self.owner.id if self.owner else None,
            "member_key": self.member_key,
            "rules": rules,
        }


def _duplicate() -> DuplicateRequest:
    return DuplicateRequest("a request with this idempotency key was already made")


def _not_open() -> Conflict:
    return Conflict("the hold is already settled", code="hold_not_open")


def _no_hold() -> Conflict:
    return Conflict("no such hold", code="hold_not_found")


def _not_stopped() -> Outcome | None:
    return None


def _credit_keys(counters: list[list[Any]]) -> list[str]:
    return [key for key, kind, *_ in counters if kind == "credits"]


def build_meter(
    settings: Settings, engine: AsyncEngine, observer: MeterObserver | None = None
) -> Meter:
    """The meter with the configured (or shipped) price book and plan catalogue; bad files fail start-up."""
    price_book = PriceBook.load(settings.pricebook_path)
    return Meter(
        engine,
        price_book,
        PlanCatalogue.load(price_book, settings.plans_path),
        timedelta(seconds=settings.hold_ttl_seconds),
        observer=observer or _Unobserved(),
    )
