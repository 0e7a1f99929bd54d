"""Reconciliation: settles expired holds (by their owner's resolver), grants monthly
allowances, prunes old counters.

It is billing's task in the periodic loop (lipika/periodic.py): one pod at a time runs it, under
a Redis lock; every step is idempotent, so a pod dying half-way (or two running at once after a
lock expiry) costs nothing but repeated no-ops.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.billing.meter import Meter, Settlement
from lipika.billing.models import Hold, HoldStatus
from lipika.billing.policy import Outcome
from lipika.billing.repository import LedgerRepository
from lipika.billing.resolvers import Capture, Release
from lipika.billing.service import BillingService
from lipika.db import utcnow
from lipika.periodic import LOCK_NAME, PeriodicTasks

log = structlog.get_logger()

__all__ = ["LOCK_NAME", "Reconciler", "ReconcileReport", "reconcile_forever"]
BATCH = 500
COUNTER_RETENTION = timedelta(days=40)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    expired_holds: int
    allowances: int
    pruned_counters: int
    orphaned_holds: int = 0  # holds of leased owners that lost their lease, before expiry


@dataclass
class Reconciler:
    meter: Meter
    sessionmaker: async_sessionmaker[AsyncSession]

    async def run_once(self, now: datetime | None = None) -> ReconcileReport:
        now = now or utcnow()
        return ReconcileReport(
            orphaned_holds=await self.release_orphans(now),
            expired_holds=await self.expire_holds(now),
            allowances=await self.grant_allowances(now),
            pruned_counters=await self.prune_counters(now),
        )

    async def expire_holds(self, now: datetime) -> int:
        """Settles open holds past their expiry, each as its owner's resolver says (capture,
        release, or leave for a later pass); a hold without a resolver was abandoned mid-flight
        and is released. Settling is exactly once however many passes run at the same time."""
        settled = 0
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            async with self.meter.engine.connect() as conn:
                overdue = await LedgerRepository(conn).overdue_holds(now, BATCH, after=after)
            for hold in overdue:
                settlement = await self._resolve(hold)
                settled += settlement is not None and not settlement.already_settled
            if len(overdue) < BATCH:
                return settled
            after = (overdue[-1].expires_at, overdue[-1].id)

    async def release_orphans(self, now: datetime) -> int:
        """Asks the resolvers of leased owner kinds about their open holds before expiry: a
        hold whose owner lost its lease (its pod died) is settled now, not a TTL later."""
        settled = 0
        for kind in sorted(self.meter.resolvers.leased):
            after: uuid.UUID | None = None
            while True:
                async with self.meter.engine.connect() as conn:
                    found = await LedgerRepository(conn).open_holds_of(kind, now, BATCH, after=after)
                for hold in found:
                    settlement = await self._resolve(hold, status=HoldStatus.RELEASED)
                    settled += settlement is not None and not settlement.already_settled
                if len(found) < BATCH:
                    break
                after = found[-1].id
        return settled

    async def _resolve(
        self, hold: Hold, *, status: HoldStatus = HoldStatus.EXPIRED
    ) -> Settlement | None:
        resolver = self.meter.resolvers.get(hold.owner_kind)
        if resolver is None:
            return await self.meter.release(hold.id, Outcome.ABANDONED, status=HoldStatus.EXPIRED)
        try:
            resolution = await resolver(hold)
        except Exception:  # noqa: BLE001 - one owner's failure must not stop the pass
            log.exception("hold_resolver_failed", hold=str(hold.id), owner=hold.owner_kind)
            return None
        match resolution:
            case Capture(usage=usage, outcome=outcome):
                return await self.meter.capture(hold.id, usage, outcome)
            case Release(outcome=outcome):
                return await self.meter.release(hold.id, outcome, status=status)
            case _:
                return None

    async def grant_allowances(self, now: datetime) -> int:
        period = now.strftime("%Y-%m")
        granted = 0
        while True:
            async with self.sessionmaker.begin() as session:
                due = await LedgerRepository(session).wallets_without_allowance(period, BATCH)
                billing = BillingService(session, self.meter.plans)
                for row in due:
                    await billing.grant_allowance(row.workspace_id, row.plan, now)
                granted += len(due)
            if len(due) < BATCH:
                return granted

    async def prune_counters(self, now: datetime) -> int:
        async with self.sessionmaker.begin() as session:
            return await LedgerRepository(session).prune_counters(
                (now - COUNTER_RETENTION).strftime("%Y-%m-%d")
            )


def register_reconciliation(tasks: PeriodicTasks, reconciler: Reconciler) -> None:
    """Billing's contribution to the periodic loop (looked up at each pass)."""
    tasks.register("billing.reconcile", lambda: reconciler.run_once())


async def reconcile_forever(reconciler: Reconciler, redis: Redis, interval: float) -> None:
    """The periodic loop with reconciliation as its only task."""
    tasks = PeriodicTasks()
    register_reconciliation(tasks, reconciler)
    await tasks.run_forever(redis, interval)
