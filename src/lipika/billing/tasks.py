"""Reconciliation: expires abandoned holds, grants monthly allowances, prunes old counters.

One pod at a time runs it, under a Redis lock; every step is idempotent, so a pod dying half-way
(or two running at once after a lock expiry) costs nothing but repeated no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.billing.meter import Meter
from lipika.billing.models import HoldStatus
from lipika.billing.policy import Outcome
from lipika.billing.repository import LedgerRepository
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
        """Releases open holds past their expiry: their operation was abandoned mid-flight."""
        expired = 0
        while True:
            async with self.meter.engine.connect() as conn:
                overdue = await LedgerRepository(conn).overdue_holds(now, BATCH)
            for hold_id in overdue:
                settlement = await self.meter.release(
                    hold_id, Outcome.ABANDONED, status=HoldStatus.EXPIRED
                )
                expired += not settlement.already_settled
            if len(overdue) < BATCH:
                return expired

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


async def reconcile_forever(
    reconciler: Reconciler,
    redis: Redis,
    interval: float,
    observe: Callable[[float, bool], None] | None = None,
) -> None:
    """The periodic loop started by the app's lifespan; only the pod holding the lock works.
    `observe(seconds, failed)` is told of each pass this pod ran (the metrics)."""
    while True:
        started: float | None = None
        try:
            lock = redis.lock(LOCK_NAME, timeout=max(60.0, interval * 4), blocking=False)
            acquired = await lock.acquire()
            _raise_if_cancelled()
            if acquired:
                try:
                    started = time.perf_counter()
                    report = await reconciler.run_once()
                    if observe:
                        observe(time.perf_counter() - started, False)
                    if any((report.expired_holds, report.allowances, report.pruned_counters)):
                        log.info("reconciled", **report.__dict__)
                finally:
                    with contextlib.suppress(Exception):
                        await lock.release()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the loop must outlive a bad pass
            log.exception("reconcile_failed")
            if observe and started is not None:
                observe(time.perf_counter() - started, True)
        await asyncio.sleep(interval)


def _raise_if_cancelled() -> None:
    """Re-raises a cancellation that a library swallowed (fakeredis's lock uses asyncio.wait_for,
    which on Python 3.11 can eat one), so the app's shutdown is never left waiting."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
