"""The reads behind the invariant check. Read-only: only billing's repository writes these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from lipika.billing.models import Hold, HoldStatus
from lipika.jobs.models import LIVE_STATUSES, Job

holds = Hold.__table__
jobs = Job.__table__


@dataclass(frozen=True, slots=True)
class OpenHolds:
    count: int
    oldest: datetime | None


class InvariantRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def open_holds(self) -> OpenHolds:
        row = (
            await self.conn.execute(
                select(func.count(), func.min(holds.c.created_at)).where(
                    holds.c.status == HoldStatus.OPEN
                )
            )
        ).one()
        oldest = row[1]
        if isinstance(oldest, str):  # SQLite hands an aggregate back untyped
            oldest = datetime.fromisoformat(oldest)
        return OpenHolds(row[0], oldest)

    async def overdue_holds(self, before: datetime, limit: int) -> Sequence[Row[Any]]:
        """Open holds that expired before `before`: reconciliation should have released them."""
        return (
            await self.conn.execute(
                select(holds.c.id, holds.c.workspace_id, holds.c.expires_at)
                .where(holds.c.status == HoldStatus.OPEN, holds.c.expires_at < before)
                .order_by(holds.c.expires_at)
                .limit(limit)
            )
        ).all()

    async def captured_for_nothing(self, since: datetime) -> Sequence[Row[Any]]:
        """Captured holds settled since `since` that charged nothing (their usage is judged
        by the caller: the usage column is JSON, which the two databases query differently)."""
        return (
            await self.conn.execute(
                select(holds.c.id, holds.c.workspace_id, holds.c.model, holds.c.usage).where(
                    holds.c.status == HoldStatus.CAPTURED,
                    holds.c.captured == 0,
                    holds.c.settled_at >= since,
                )
            )
        ).all()

    async def capped_at_the_hold(self, since: datetime, limit: int) -> Sequence[Row[Any]]:
        """Captured holds settled since `since` whose reported usage cost more than the hold."""
        return (
            await self.conn.execute(
                select(holds.c.id, holds.c.workspace_id, holds.c.model, holds.c.overage)
                .where(
                    holds.c.status == HoldStatus.CAPTURED,
                    holds.c.overage > 0,
                    holds.c.settled_at >= since,
                )
                .limit(limit)
            )
        ).all()

    async def jobs_past_deadline(self, before: datetime, limit: int) -> Sequence[Row[Any]]:
        """Jobs still queued or running whose deadline passed before `before` (the runner fails
        a job at its deadline: one still live is not being run, or its runner is stuck)."""
        return (
            await self.conn.execute(
                select(jobs.c.id, jobs.c.workspace_id, jobs.c.kind, jobs.c.deadline)
                .where(
                    jobs.c.status.in_([s.value for s in LIVE_STATUSES]), jobs.c.deadline < before
                )
                .limit(limit)
            )
        ).all()

    async def live_jobs(self) -> Sequence[Row[Any]]:
        """(kind, status, count) of the queued and running jobs."""
        return (
            await self.conn.execute(
                select(jobs.c.kind, jobs.c.status, func.count())
                .where(jobs.c.status.in_([s.value for s in LIVE_STATUSES]))
                .group_by(jobs.c.kind, jobs.c.status)
            )
        ).all()
