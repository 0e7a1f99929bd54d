"""Queries for jobs: the row, the workspace's list, and the leases (fenced by owner)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, and_, delete, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.db import UTCDateTime, utcnow
from lipika.jobs.models import LIVE_STATUSES, Job, JobStatus


class JobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, job: Job) -> Job | None:
        """Adds the job; None if the workspace already has a job with its idempotency key."""
        try:
            async with self.session.begin_nested():
                self.session.add(job)
                await self.session.flush()
        except IntegrityError:
            return None
        return job

    async def by_key(self, workspace_id: uuid.UUID, key: str) -> Job | None:
        return await self.session.scalar(
            select(Job).where(Job.workspace_id == workspace_id, Job.idempotency_key == key)
        )

    async def get(self, job_id: uuid.UUID, workspace_id: uuid.UUID | None = None) -> Job | None:
        query = select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
        if workspace_id is not None:
            query = query.where(Job.workspace_id == workspace_id)
        return await self.session.scalar(query)

    async def delete(self, job_id: uuid.UUID) -> None:
        await self.session.execute(delete(Job).where(Job.id == job_id))

    async def page(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None = None,
        kind: str | None = None,
        status: JobStatus | None = None,
        user_id: uuid.UUID | None = None,
    ) -> list[Job]:
        """The workspace's jobs, newest first; `after` is where the previous page ended."""
        query = select(Job).where(Job.workspace_id == workspace_id)
        if kind is not None:
            query = query.where(Job.kind == kind)
        if status is not None:
            query = query.where(Job.status == status)
        if user_id is not None:
            query = query.where(Job.user_id == user_id)
        if after is not None:
            created_at, job_id = after
            query = query.where(
                or_(
                    Job.created_at < created_at,
                    and_(Job.created_at == created_at, Job.id < job_id),
                )
            )
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        return list((await self.session.scalars(query)).all())

    # -- fenced writes: only the lease's owner moves a running job ----------------------------

    async def update_owned(
        self, job_id: uuid.UUID, owner: str, values: Mapping[str, Any], *, live: bool = True
    ) -> bool:
        """Writes `values` if `owner` still holds the job's lease (and it is live); False if
        another process adopted it or it was cancelled meanwhile."""
        query = update(Job).where(Job.id == job_id, Job.lease_owner == owner)
        if live:
            query = query.where(Job.status.in_(LIVE_STATUSES))
        done = await self.session.execute(
            query.values(updated_at=utcnow(), **values)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return done.first() is not None

    async def update(self, job_id: uuid.UUID, values: Mapping[str, Any], **where: Any) -> bool:
        query = update(Job).where(Job.id == job_id)
        for name, value in where.items():
            query = query.where(getattr(Job, name) == value)
        done = await self.session.execute(
            query.values(updated_at=utcnow(), **values)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return done.first() is not None

    async def cancel(self, job_id: uuid.UUID, workspace_id: uuid.UUID) -> Job | None:
        """Marks a live job cancelled (whoever runs it); None if it had already ended."""
        now = utcnow()
        done = await self.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.workspace_id == workspace_id,
                Job.status.in_(LIVE_STATUSES),
            )
            .values(
                status=JobStatus.CANCELLED,
                error_code="cancelled",
                error_message="cancelled by the user",
                updated_at=now,
                finished_at=now,
            )
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return await self.get(job_id) if done.first() is not None else None

    # -- leases -----------------------------------------------------------------------------

    async def renew(self, owner: str, lease: timedelta) -> set[uuid.UUID]:
        """Extends every live lease `owner` holds, in one statement; returns the jobs renewed
        (a job of this process not among them was cancelled or adopted)."""
        renewed = await self.session.execute(
            update(Job)
            .where(Job.lease_owner == owner, Job.status.in_(LIVE_STATUSES))
            .values(lease_expires_at=self._now(lease))
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return set(renewed.scalars())

    async def adopt(self, owner: str, lease: timedelta, limit: int) -> list[uuid.UUID]:
        """Takes up to `limit` live jobs whose lease expired or was given up, in one statement:
        on PostgreSQL the rows are picked FOR UPDATE SKIP LOCKED and the condition is checked
        again on the locked row, so two adopters never take one job; SQLite has one writer."""
        free = and_(
            Job.status.in_(LIVE_STATUSES),
            or_(Job.lease_owner.is_(None), Job.lease_expires_at <= self._now()),
        )
        picked = (
            select(Job.id)
            .where(free)
            .order_by(Job.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        taken = await self.session.execute(
            update(Job)
            .where(Job.id.in_(picked), free)
            .values(
                lease_owner=owner,
                lease_expires_at=self._now(lease),
                attempts=Job.attempts + 1,
                updated_at=utcnow(),
            )
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return list(taken.scalars())

    async def give_up(self, owner: str) -> int:
        """Frees the leases `owner` holds (its shutdown), for another process to adopt now."""
        freed = await self.session.execute(
            update(Job)
            .where(Job.lease_owner == owner, Job.status.in_(LIVE_STATUSES))
            .values(lease_owner=None, lease_expires_at=None)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        return len(freed.all())

    async def past_deadline(self, now: datetime, grace: timedelta) -> int:
        """Live jobs more than `grace` past their deadline (an invariant: the runner fails a job
        at its deadline)."""
        found = await self.session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.status.in_(LIVE_STATUSES), Job.deadline < now - grace)
        )
        return int(found or 0)

    async def counts(self) -> list[tuple[str, str, int]]:
        """(kind, status, count) of every job: the jobs gauge."""
        rows = await self.session.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        )
        return [(kind, str(status), int(n)) for kind, status, n in rows.all()]

    async def live_of(self, job_ids: Collection[uuid.UUID]) -> list[Job]:
        if not job_ids:
            return []
        return list((await self.session.scalars(select(Job).where(Job.id.in_(job_ids)))).all())

    def _now(self, plus: timedelta = timedelta()) -> ColumnElement[datetime]:
        """Now (plus `plus`) on the database's clock on PostgreSQL, so every process taking and
        renewing leases reads one clock (see threads/repository.py); SQLite: this machine's."""
        if self.session.get_bind().dialect.name == "postgresql":
            now = func.statement_timestamp(type_=UTCDateTime())
            return (now + literal(plus, Interval())) if plus else now
        return literal(utcnow() + plus, UTCDateTime())
