"""Queries for threads."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.threads.models import Thread


class ThreadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, thread: Thread) -> None:
        self.session.add(thread)
        await self.session.flush()

    async def get(self, workspace_id: uuid.UUID, thread_id: uuid.UUID) -> Thread | None:
        """The thread, only if it belongs to the workspace."""
        return await self.session.scalar(
            select(Thread).where(Thread.id == thread_id, Thread.workspace_id == workspace_id)
        )

    async def page(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> Sequence[Thread]:
        """Most recently active first; `after` is the (updated_at, id) the previous page ended on."""
        query = select(Thread).where(Thread.workspace_id == workspace_id)
        if after is not None:
            updated_at, thread_id = after
            query = query.where(
                or_(
                    Thread.updated_at < updated_at,
                    and_(Thread.updated_at == updated_at, Thread.id < thread_id),
                )
            )
        query = query.order_by(Thread.updated_at.desc(), Thread.id.desc()).limit(limit)
        return (await self.session.scalars(query)).all()

    async def delete(self, thread_id: uuid.UUID) -> None:
        await self.session.execute(delete(Thread).where(Thread.id == thread_id))

    async def existing(self, thread_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        if not thread_ids:
            return set()
        found = await self.session.scalars(select(Thread.id).where(Thread.id.in_(thread_ids)))
        return set(found.all())
