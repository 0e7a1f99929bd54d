"""Queries for threads, and for the run leases on their rows."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Interval,
    and_,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.db import UTCDateTime, utcnow
from lipika.threads.models import Thread, Visibility


class ThreadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, thread: Thread) -> None:
        self.session.add(thread)
        await self.session.flush()

    async def get(
        self, workspace_id: uuid.UUID, thread_id: uuid.UUID, *, viewer: uuid.UUID | None = None
    ) -> tuple[Thread, bool] | None:
        """The thread of the workspace (that `viewer` may see, when given) and whether a run
        holds it now."""
        query = select(Thread, self._running()).where(
            Thread.id == thread_id, Thread.workspace_id == workspace_id
        )
        if viewer is not None:
            query = query.where(_visible_to(viewer))
        row = (await self.session.execute(query)).first()
        return None if row is None else (row[0], bool(row[1]))

    async def page(
        self,
        workspace_id: uuid.UUID,
        viewer: uuid.UUID,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> list[tuple[Thread, bool]]:
        """The threads `viewer` may see, most recently active first, each with whether a run
        holds it; `after` is the (updated_at, id) the previous page ended on."""
        query = select(Thread, self._running()).where(
            Thread.workspace_id == workspace_id, _visible_to(viewer)
        )
        if after is not None:
            updated_at, thread_id = after
            query = query.where(
                or_(
                    Thread.updated_at < updated_at,
                    and_(Thread.updated_at == updated_at, Thread.id < thread_id),
                )
            )
        query = query.order_by(Thread.updated_at.desc(), Thread.id.desc()).limit(limit)
        return [(row[0], bool(row[1])) for row in (await self.session.execute(query)).all()]

    async def delete_idle(self, thread_id: uuid.UUID) -> bool:
        """Deletes the thread unless a run holds it; False if one does. The row stays locked
        to other writers until the transaction ends, so no run can take it meanwhile."""
        deleted = await self.session.execute(
            delete(Thread)
            .where(Thread.id == thread_id, self._free())
            .returning(Thread.id)
            .execution_options(synchronize_session=False)
        )
        return deleted.first() is not None

    async def existing(self, thread_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        if not thread_ids:
            return set()
        found = await self.session.scalars(select(Thread.id).where(Thread.id.in_(thread_ids)))
        return set(found.all())

    # -- run leases ------------------------------------------------------------------------

    async def take_run(
        self,
        thread_id: uuid.UUID,
        workspace_id: uuid.UUID,
        creator: uuid.UUID,
        *,
        run_id: uuid.UUID,
        owner: str,
        lease: timedelta,
        model: str,
        title: str,
    ) -> int | None:
        """Takes the thread for a run, if `creator` made it and no live lease holds it, and
        records the message (activity time, model, a title if it has none) in the same
        statement. Returns the lease's fence, or None if the thread was not taken."""
        taken = await self.session.execute(
            update(Thread)
            .where(
                Thread.id == thread_id,
                Thread.workspace_id == workspace_id,
                Thread.created_by == creator,
                self._free(),
            )
            .values(
                run_id=run_id,
                run_owner=owner,
                run_expires_at=self._now(lease),
                run_fence=Thread.run_fence + 1,
                updated_at=utcnow(),
                last_model=model,
                title=case((Thread.title == "", title), else_=Thread.title),
            )
            .returning(Thread.run_fence)
            .execution_options(synchronize_session=False)
        )
        return taken.scalar()

    async def renew_runs(
        self, owner: str, run_ids: Collection[uuid.UUID], lease: timedelta
    ) -> set[uuid.UUID]:
        """Extends the leases of `owner`'s runs in one statement; returns the runs still
        holding their thread (a run not returned lost it)."""
        if not run_ids:
            return set()
        renewed = await self.session.execute(
            update(Thread)
            .where(Thread.run_owner == owner, Thread.run_id.in_(run_ids))
            .values(run_expires_at=self._now(lease))
            .returning(Thread.run_id)
            .execution_options(synchronize_session=False)
        )
        return {run_id for run_id in renewed.scalars() if run_id is not None}

    async def release_run(self, thread_id: uuid.UUID, fence: int) -> bool:
        """Frees the thread if the lease is still the one with this fence (a run whose lease
        was taken over releases nothing)."""
        released = await self.session.execute(
            update(Thread)
            .where(Thread.id == thread_id, Thread.run_fence == fence, Thread.run_id.is_not(None))
            .values(run_id=None, run_owner=None, run_expires_at=None)
            .returning(Thread.id)
            .execution_options(synchronize_session=False)
        )
        return released.first() is not None

    async def release_owner(self, owner: str) -> int:
        """Frees every thread `owner` holds (its shutdown)."""
        released = await self.session.execute(
            update(Thread)
            .where(Thread.run_owner == owner)
            .values(run_id=None, run_owner=None, run_expires_at=None)
            .returning(Thread.id)
            .execution_options(synchronize_session=False)
        )
        return len(released.all())

    async def live_runs(self, run_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """The runs among `run_ids` whose lease is live: what reconciliation asks before it
        releases an agent step's hold (the hold's key names its run, `agent:<run_id>:<step>`)."""
        if not run_ids:
            return set()
        found = await self.session.scalars(
            select(Thread.run_id).where(Thread.run_id.in_(run_ids), self._running())
        )
        return {run_id for run_id in found.all() if run_id is not None}

    def _now(self, plus: timedelta = timedelta()) -> ColumnElement[datetime]:
        """Now (plus `plus`) on the database's clock on PostgreSQL, so that every process
        taking and renewing leases reads one clock; statement_timestamp(), not now(), which
        would be the start of a longer transaction. SQLite serves one machine: its clock."""
        if self.session.get_bind().dialect.name == "postgresql":
            now = func.statement_timestamp(type_=UTCDateTime())
            return (now + literal(plus, Interval())) if plus else now
        return literal(utcnow() + plus, UTCDateTime())

    def _free(self) -> ColumnElement[bool]:
        return or_(Thread.run_id.is_(None), Thread.run_expires_at <= self._now())

    def _running(self) -> ColumnElement[bool]:
        return and_(Thread.run_id.is_not(None), Thread.run_expires_at > self._now())


def _visible_to(user_id: uuid.UUID) -> ColumnElement[bool]:
    """A thread is its creator's, and the workspace's when shared."""
    return or_(Thread.created_by == user_id, Thread.visibility == Visibility.WORKSPACE)
