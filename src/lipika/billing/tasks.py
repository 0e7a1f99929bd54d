"""Reconciliation: settles expired holds (by their owner's resolver), grants monthly
allowances, prunes old counters.

One pod at a time runs it, under a Redis lock; every step is idempotent, so a pod dying half-way
(or two running at once after a lock expiry) costs nothing but repeated no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
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

log = structlog.get_logger()

LOCK_NAME = "lipika:lock:reconcile"
BATCH = 500
COUNTER_RETENTION = timedelta(days=40)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    expired_holds: int
    allowances: int
    pruned_counters: int


@dataclass
class Reconciler:
    meter: Meter
    sessionmaker: async_sessionmaker[AsyncSession]

    async def run_once(self, now: datetime | None = None) -> ReconcileReport:
        now = now or utcnow()
        return ReconcileReport(
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

    async def _resolve(self, hold: Hold) -> Settlement | None:
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
                return await self.meter.release(hold.id, outcome, status=HoldStatus.EXPIRED)
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


async def reconcile_forever(reconciler: Reconciler, redis: Redis, interval: float) -> None:
    """The periodic loop started by the app's lifespan; only the pod holding the lock works."""
    while True:
        try:
            lock = redis.lock(LOCK_NAME, timeout=max(60.0, interval * 4), blocking=False)
            acquired = await lock.acquire()
            _raise_if_cancelled()
            if acquired:
                try:
                    report = await reconciler.run_once()
                    if any((report.expired_holds, report.allowances, report.pruned_counters)):
                        log.info("reconciled", **report.__dict__)
                finally:
                    with contextlib.suppress(Exception):
                        await lock.release()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the loop must outlive a bad pass
            log.exception("reconcile_failed")
        await asyncio.sleep(interval)


def _raise_if_cancelled() -> None:
    """Re-raises a cancellation that a library swallowed (fakeredis's lock uses asyncio.wait_for,
    which on Python 3.11 can eat one), so the app's shutdown is never left waiting."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
