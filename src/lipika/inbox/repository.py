"""Every query on `webhook_deliveries`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from lipika.inbox.models import WebhookDelivery

deliveries = WebhookDelivery.__table__


class DeliveryRepository:
    def __init__(self, db: AsyncSession | AsyncConnection) -> None:
        self.db = db
        bind = db.get_bind() if isinstance(db, AsyncSession) else db
        self._insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert

    async def store_once(self, **values: Any) -> int | None:
        """Inserts the delivery; None when (source, delivery_key) is already stored."""
        stmt = (
            self._insert(deliveries)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["source", "delivery_key"])
            .returning(deliveries.c.id)
        )
        return (await self.db.execute(stmt)).scalar_one_or_none()

    async def mark_handled(self, delivery_id: int, result: str, now: datetime) -> None:
        await self.db.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.handled_at.is_(None))
            .values(handled_at=now, result=result)
        )

    async def get(self, delivery_id: int) -> WebhookDelivery | None:
        row = (
            await self.db.execute(select(deliveries).where(deliveries.c.id == delivery_id))
        ).one_or_none()
        return None if row is None else WebhookDelivery(**row._mapping)

    async def unhandled(self, received_before: datetime, limit: int) -> Sequence[WebhookDelivery]:
        """Verified deliveries whose handling never finished (the process died half-way)."""
        rows = (
            await self.db.execute(
                select(deliveries)
                .where(
                    deliveries.c.handled_at.is_(None),
                    deliveries.c.verified,
                    deliveries.c.received_at < received_before,
                )
                .order_by(deliveries.c.id)
                .limit(limit)
            )
        ).all()
        return [WebhookDelivery(**row._mapping) for row in rows]
