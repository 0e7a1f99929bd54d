"""The stored keys, on a connection of their own: a claim is committed before the request's
work starts, so a concurrent retry sees it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from lipika.idempotency.models import IdempotencyRecord, RecordState

records = IdempotencyRecord.__table__


class IdempotencyRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def insert(self, values: dict[str, Any]) -> bool:
        """Inserts a new claim unless the (scope, key) is taken; whether it was inserted."""
        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        stmt = (
            dialect.insert(records)
            .values(values)
            .on_conflict_do_nothing(index_elements=[records.c.scope, records.c.key])
        )
        return (await self.conn.execute(stmt)).rowcount == 1

    async def find(self, scope: str, key: str) -> Any | None:
        return (
            await self.conn.execute(
                select(records).where(records.c.scope == scope, records.c.key == key)
            )
        ).one_or_none()

    async def take_over(
        self, record_id: uuid.UUID, claim: uuid.UUID, now: datetime, locked_until: datetime
    ) -> bool:
        """Claims a record whose in-flight request was abandoned (its lock ran out)."""
        result = await self.conn.execute(
            update(records)
            .where(
                records.c.id == record_id,
                records.c.state == RecordState.IN_FLIGHT,
                records.c.locked_until <= now,
            )
            .values(claim=claim, locked_until=locked_until)
        )
        return result.rowcount == 1

    async def delete_expired_one(self, record_id: uuid.UUID, now: datetime) -> None:
        await self.conn.execute(
            delete(records).where(records.c.id == record_id, records.c.expires_at <= now)
        )

    async def answer(
        self,
        record_id: uuid.UUID,
        claim: uuid.UUID,
        state: RecordState,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        await self.conn.execute(
            update(records)
            .where(
                records.c.id == record_id,
                records.c.claim == claim,
                records.c.state == RecordState.IN_FLIGHT,
            )
            .values(state=state, status_code=status_code, headers=headers, body=body)
        )

    async def release(self, record_id: uuid.UUID, claim: uuid.UUID) -> None:
        await self.conn.execute(
            delete(records).where(
                records.c.id == record_id,
                records.c.claim == claim,
                records.c.state == RecordState.IN_FLIGHT,
            )
        )

    async def purge_expired(self, now: datetime) -> int:
        result = await self.conn.execute(delete(records).where(records.c.expires_at <= now))
        return result.rowcount or 0
