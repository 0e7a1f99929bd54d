"""Every query on the ledger tables. The only module that writes them.

Core statements, not ORM units of work: admission and settlement are the hottest writes in the
system, and each is a handful of single-row statements in one short transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from lipika.billing.models import (
    EntryKind,
    Hold,
    HoldStatus,
    LedgerEntry,
    MemberCap,
    UsageCounter,
    Wallet,
)

wallets = Wallet.__table__
entries = LedgerEntry.__table__
holds = Hold.__table__
counters = UsageCounter.__table__
caps = MemberCap.__table__

Executor = AsyncSession | AsyncConnection


def _dialect(db: Executor) -> str:
    bind = db.get_bind() if isinstance(db, AsyncSession) else db
    return bind.dialect.name


@dataclass(frozen=True, slots=True)
class AdmissionFacts:
    plan: str
    member_cap: int | None


@dataclass(frozen=True, slots=True)
class WalletState:
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


class LedgerRepository:
    def __init__(self, db: Executor) -> None:
        self.db = db
        self._insert = postgresql.insert if _dialect(db) == "postgresql" else sqlite.insert

    # -- wallets -------------------------------------------------------------------------

    async def create_wallet(self, workspace_id: uuid.UUID, plan: str, now: datetime) -> None:
        await self.db.execute(
            insert(wallets).values(
                workspace_id=workspace_id,
                balance=0,
                held=0,
                plan=plan,
                allowance_due=False,
                created_at=now,
            )
        )

    async def wallet(self, workspace_id: uuid.UUID) -> Wallet | None:
        row = (
            await self.db.execute(select(wallets).where(wallets.c.workspace_id == workspace_id))
        ).one_or_none()
        return None if row is None else Wallet(**row._mapping)

    async def set_plan(self, workspace_id: uuid.UUID, plan: str) -> bool:
        """Puts the wallet on `plan`, whose monthly allowance is due from now on."""
        result = await self.db.execute(
            update(wallets)
            .where(wallets.c.workspace_id == workspace_id)
            .values(plan=plan, allowance_due=True)
        )
        return result.rowcount == 1

    async def set_subscribed_plan(
        self, workspace_id: uuid.UUID, plan: str, *, allowance_due: bool
    ) -> bool:
        """Puts the wallet on a plan that a subscription pays for (its periods grant the
        credits, so the calendar-month allowance is off), or back on the free plan."""
        result = await self.db.execute(
            update(wallets)
            .where(wallets.c.workspace_id == workspace_id)
            .values(plan=plan, allowance_due=allowance_due)
        )
        return result.rowcount == 1

    async def make_allowance_due(self, workspace_id: uuid.UUID) -> str | None:
        """Marks the wallet's monthly allowance due; returns its plan (None: no such wallet)."""
        result = await self.db.execute(
            update(wallets)
            .where(wallets.c.workspace_id == workspace_id)
            .values(allowance_due=True)
            .returning(wallets.c.plan)
        )
        return result.scalar_one_or_none()

    async def mark_allowance(self, workspace_id: uuid.UUID, period: str) -> None:
        await self.db.execute(
            update(wallets)
            .where(wallets.c.workspace_id == workspace_id)
            .values(allowance_period=period)
        )

    async def wallets_without_allowance(self, period: str, limit: int) -> Sequence[Row[Any]]:
        return (
            await self.db.execute(
                select(wallets.c.workspace_id, wallets.c.plan)
                .where(
                    wallets.c.allowance_due,
                    or_(wallets.c.allowance_period.is_(None), wallets.c.allowance_period < period),
                )
                .limit(limit)
            )
        ).all()

    async def admission_facts(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID | None
    ) -> AdmissionFacts | None:
        row = (
            await self.db.execute(
                select(wallets.c.plan, caps.c.monthly_credit_cap)
                .select_from(
                    wallets.outerjoin(
                        caps,
                        and_(
                            caps.c.workspace_id == wallets.c.workspace_id, caps.c.user_id == user_id
                        ),
                    )
                )
                .where(wallets.c.workspace_id == workspace_id)
            )
        ).one_or_none()
        return None if row is None else AdmissionFacts(row.plan, row.monthly_credit_cap)

    async def reserve(self, workspace_id: uuid.UUID, amount: int) -> bool:
        """The one atomic conditional write of admission: hold `amount` if it is available."""
        result = await self.db.execute(
            update(wallets)
            .where(
                wallets.c.workspace_id == workspace_id, wallets.c.balance - wallets.c.held >= amount
            )
            .values(held=wallets.c.held + amount)
        )
        return result.rowcount == 1

    async def move(
        self, workspace_id: uuid.UUID, *, balance: int = 0, held: int = 0, floor: bool = False
    ) -> int | None:
        """Adds to balance and held; returns the new balance. With `floor`, refuses (None)
        a change that would take the available balance below zero."""
        stmt = update(wallets).where(wallets.c.workspace_id == workspace_id)
        if floor:
            stmt = stmt.where(wallets.c.balance + balance - wallets.c.held - held >= 0)
        result = await self.db.execute(
            stmt.values(balance=wallets.c.balance + balance, held=wallets.c.held + held).returning(
                wallets.c.balance
            )
        )
        return result.scalar_one_or_none()

    async def wallet_state(self, workspace_id: uuid.UUID) -> WalletState | None:
        row = (
            await self.db.execute(
                select(wallets.c.balance, wallets.c.held).where(
                    wallets.c.workspace_id == workspace_id
                )
            )
        ).one_or_none()
        return None if row is None else WalletState(row.balance, row.held)

    # -- ledger entries --------------------------------------------------------------------

    async def entry_by_key(self, idempotency_key: str) -> LedgerEntry | None:
        row = (
            await self.db.execute(
                select(entries).where(entries.c.idempotency_key == idempotency_key)
            )
        ).one_or_none()
        return None if row is None else LedgerEntry(**row._mapping)

    async def spent_since(self, workspace_id: uuid.UUID, since: datetime) -> int:
        """Micro-credits charged for usage in the workspace from `since` on."""
        total = await self.db.scalar(
            select(func.coalesce(func.sum(-entries.c.amount), 0)).where(
                entries.c.workspace_id == workspace_id,
                entries.c.kind == EntryKind.USAGE,
                entries.c.created_at >= since,
            )
        )
        return int(total or 0)

    async def append_entry(self, **values: Any) -> int:
        result = await self.db.execute(insert(entries).values(**values).returning(entries.c.id))
        return result.scalar_one()

    async def list_entries(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        before: int | None,
        kind: EntryKind | None,
        model: str | None,
        user_id: uuid.UUID | None,
        since: datetime | None,
        until: datetime | None,
    ) -> Sequence[Row[Any]]:
        query = select(entries).where(entries.c.workspace_id == workspace_id)
        for column, value in (
            (entries.c.kind, kind),
            (entries.c.model, model),
            (entries.c.user_id, user_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if before is not None:
            query = query.where(entries.c.id < before)
        if since is not None:
            query = query.where(entries.c.created_at >= since)
        if until is not None:
            query = query.where(entries.c.created_at < until)
        return (await self.db.execute(query.order_by(entries.c.id.desc()).limit(limit))).all()

    async def usage_summary(
        self,
        workspace_id: uuid.UUID,
        since: datetime,
        until: datetime,
        group_by: str,
        *,
        user_id: uuid.UUID | None,
    ) -> Sequence[Row[Any]]:
        """Usage entries summed per model, member or UTC day (both databases run in UTC)."""
        key = {
            "model": entries.c.model,
            "member": entries.c.user_id,
            "day": func.date(entries.c.created_at),
        }[group_by]
        query = select(
            key.label("key"),
            func.count().label("requests"),
            func.sum(-entries.c.amount).label("credits"),
        ).where(
            entries.c.workspace_id == workspace_id,
            entries.c.kind == EntryKind.USAGE,
            entries.c.created_at >= since,
            entries.c.created_at < until,
        )
        if user_id is not None:
            query = query.where(entries.c.user_id == user_id)
        return (await self.db.execute(query.group_by(key).order_by(key))).all()

    # -- holds -----------------------------------------------------------------------------

    async def insert_hold(self, **values: Any) -> None:
        await self.db.execute(insert(holds).values(**values))

    async def hold(self, hold_id: uuid.UUID) -> Hold | None:
        row = (await self.db.execute(select(holds).where(holds.c.id == hold_id))).one_or_none()
        return None if row is None else Hold(**row._mapping)

    async def close_hold(
        self, hold_id: uuid.UUID, *, status: HoldStatus, now: datetime, **values: Any
    ) -> Row[Any] | None:
        """Moves an open hold to its final status; None if it was already settled (exactly once)."""
        result = await self.db.execute(
            update(holds)
            .where(holds.c.id == hold_id, holds.c.status == HoldStatus.OPEN)
            .values(status=status, settled_at=now, **values)
            .returning(
                holds.c.workspace_id,
                holds.c.user_id,
                holds.c.model,
                holds.c.amount,
                holds.c.rates,
                holds.c.counters,
            )
        )
        return result.one_or_none()

    async def overdue_holds(
        self, now: datetime, limit: int, *, after: tuple[datetime, uuid.UUID] | None = None
    ) -> list[Hold]:
        """Open holds past their expiry, oldest first, from after `after` (expiry, id): a pass
        pages past the holds it leaves open for later."""
        query = select(holds).where(holds.c.status == HoldStatus.OPEN, holds.c.expires_at < now)
        if after is not None:
            expires_at, hold_id = after
            query = query.where(
                or_(
                    holds.c.expires_at > expires_at,
                    and_(holds.c.expires_at == expires_at, holds.c.id > hold_id),
                )
            )
        rows = await self.db.execute(query.order_by(holds.c.expires_at, holds.c.id).limit(limit))
        return [Hold(**row._mapping) for row in rows.all()]

    async def open_holds_of(
        self, owner_kind: str, now: datetime, limit: int, *, after: uuid.UUID | None = None
    ) -> list[Hold]:
        """Open holds of one owner kind not yet past their expiry (those are `overdue_holds`'),
        in id order from after `after`."""
        query = select(holds).where(
            holds.c.status == HoldStatus.OPEN,
            holds.c.owner_kind == owner_kind,
            holds.c.expires_at >= now,
        )
        if after is not None:
            query = query.where(holds.c.id > after)
        rows = await self.db.execute(query.order_by(holds.c.id).limit(limit))
        return [Hold(**row._mapping) for row in rows.all()]

    async def lock_wallet(self, workspace_id: uuid.UUID) -> None:
        """Takes the wallet's row lock (PostgreSQL; SQLite's writer lock already covers it), the
        first lock of every ledger transaction."""
        await self.db.execute(
            select(wallets.c.workspace_id)
            .where(wallets.c.workspace_id == workspace_id)
            .with_for_update()
        )

    async def grow_hold(self, hold_id: uuid.UUID, more: int, expires_at: datetime) -> Row[Any]:
        result = await self.db.execute(
            update(holds)
            .where(holds.c.id == hold_id, holds.c.status == HoldStatus.OPEN)
            .values(amount=holds.c.amount + more, expires_at=expires_at)
            .returning(holds.c.amount, holds.c.expires_at)
        )
        return result.one()

    # -- limit counters --------------------------------------------------------------------

    async def bump_counter(self, key: str, day: str, amount: int, limit: int) -> bool:
        """Adds `amount` unless that would pass `limit`, in one atomic upsert."""
        if amount > limit:
            return False
        stmt = self._insert(counters).values(key=key, value=amount, day=day)
        stmt = stmt.on_conflict_do_update(
            index_elements=[counters.c.key],
            set_={"value": counters.c.value + stmt.excluded.value},
            where=counters.c.value + stmt.excluded.value <= limit,
        ).returning(counters.c.value)
        return (await self.db.execute(stmt)).scalar_one_or_none() is not None

    async def counter_values(self, keys: Sequence[str]) -> dict[str, int]:
        if not keys:
            return {}
        rows = await self.db.execute(
            select(counters.c.key, counters.c.value).where(counters.c.key.in_(keys))
        )
        return {row.key: int(row.value) for row in rows}

    async def counter_value(self, key: str) -> int:
        value = await self.db.scalar(select(counters.c.value).where(counters.c.key == key))
        return int(value or 0)

    async def add_to_counters(self, keys: Sequence[str], delta: int) -> None:
        if keys and delta:
            await self.db.execute(
                update(counters)
                .where(counters.c.key.in_(keys))
                .values(value=counters.c.value + delta)
            )

    async def set_counter(self, key: str, day: str, value: int) -> None:
        stmt = self._insert(counters).values(key=key, value=value, day=day)
        await self.db.execute(
            stmt.on_conflict_do_update(index_elements=[counters.c.key], set_={"value": value})
        )

    async def month_spend(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID, since: datetime
    ) -> int:
        """A member's settled usage since `since`, plus what their open holds set aside."""
        used = await self.db.scalar(
            select(func.coalesce(func.sum(-entries.c.amount), 0)).where(
                entries.c.workspace_id == workspace_id,
                entries.c.user_id == user_id,
                entries.c.kind == EntryKind.USAGE,
                entries.c.created_at >= since,
            )
        )
        held = await self.db.scalar(
            select(func.coalesce(func.sum(holds.c.amount), 0)).where(
                holds.c.workspace_id == workspace_id,
                holds.c.user_id == user_id,
                holds.c.status == HoldStatus.OPEN,
            )
        )
        return int(used) + int(held)

    async def count_open_holds_against(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID, key: str
    ) -> None:
        """Adds a credits counter to the member's open holds (under the wallet lock, as the
        settle functions take it, so no settlement runs between the read and the write)."""
        await self.db.execute(
            select(wallets.c.workspace_id)
            .where(wallets.c.workspace_id == workspace_id)
            .with_for_update()
        )
        open_holds = await self.db.execute(
            select(holds.c.id, holds.c.counters).where(
                holds.c.workspace_id == workspace_id,
                holds.c.user_id == user_id,
                holds.c.status == HoldStatus.OPEN,
            )
        )
        for hold_id, named in open_holds.all():
            if all(counter[0] != key for counter in named):
                await self.db.execute(
                    update(holds)
                    .where(holds.c.id == hold_id)
                    .values(counters=[*named, [key, "credits", 0]])
                )

    async def prune_counters(self, before_day: str) -> int:
        # A key's budget counter counts for the key's life (billing/rules.py `KEY_SPEND`).
        result = await self.db.execute(
            delete(counters).where(
                counters.c.day < before_day, ~counters.c.key.startswith("keyspend:")
            )
        )
        return result.rowcount

    async def set_member_cap(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID, cap: int | None
    ) -> None:
        await self.db.execute(
            delete(caps).where(caps.c.workspace_id == workspace_id, caps.c.user_id == user_id)
        )
        if cap is not None:
            await self.db.execute(
                insert(caps).values(
                    workspace_id=workspace_id, user_id=user_id, monthly_credit_cap=cap
                )
            )

    # -- audit -----------------------------------------------------------------------------

    async def drift(self) -> Sequence[Row[Any]]:
        """Wallets whose cached balance or held differs from the ledger and the open holds."""
        entry_sum = (
            select(func.coalesce(func.sum(entries.c.amount), 0))
            .where(entries.c.workspace_id == wallets.c.workspace_id)
            .scalar_subquery()
        )
        open_sum = (
            select(func.coalesce(func.sum(holds.c.amount), 0))
            .where(
                holds.c.workspace_id == wallets.c.workspace_id, holds.c.status == HoldStatus.OPEN
            )
            .scalar_subquery()
        )
        return (
            await self.db.execute(
                select(
                    wallets.c.workspace_id,
                    wallets.c.balance,
                    entry_sum.label("ledger_balance"),
                    wallets.c.held,
                    open_sum.label("open_holds"),
                ).where(
                    or_(
                        wallets.c.balance != entry_sum,
                        wallets.c.held != open_sum,
                        wallets.c.balance < wallets.c.held,
                    )
                )
            )
        ).all()

    async def wallet_count(self) -> int:
        return (await self.db.execute(select(func.count()).select_from(wallets))).scalar_one()
