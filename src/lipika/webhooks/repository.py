"""Queries for webhook endpoints, the outbox and the attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        self.session.add(endpoint)
        await self.session.flush()

    async def endpoints(self, workspace_id: uuid.UUID) -> list[WebhookEndpoint]:
        query = (
            select(WebhookEndpoint)
            .where(WebhookEndpoint.workspace_id == workspace_id)
            .order_by(WebhookEndpoint.created_at)
        )
        return list((await self.session.scalars(query)).all())

    async def delete_endpoint(self, workspace_id: uuid.UUID, endpoint_id: uuid.UUID) -> bool:
        deleted = await self.session.execute(
            delete(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.workspace_id == workspace_id)
            .returning(WebhookEndpoint.id)
        )
        return deleted.first() is not None

    async def endpoint(
        self, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> WebhookEndpoint | None:
        return await self.session.scalar(
            select(WebhookEndpoint).where(
                WebhookEndpoint.id == endpoint_id, WebhookEndpoint.workspace_id == workspace_id
            )
        )

    async def add_messages(self, messages: list[WebhookMessage]) -> None:
        self.session.add_all(messages)
        await self.session.flush()

    async def claim_due(self, now: datetime, until: datetime, limit: int) -> list[str]:
        """Takes up to `limit` due messages for this sender until `until` (another sender skips
        them meanwhile), in one conditional statement per message batch."""
        due = (
            select(WebhookMessage.id)
            .where(
                WebhookMessage.delivered_at.is_(None),
                WebhookMessage.failed_at.is_(None),
                WebhookMessage.next_attempt_at <= now,
            )
            .order_by(WebhookMessage.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        taken = await self.session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id.in_(due), WebhookMessage.next_attempt_at <= now)
            .values(next_attempt_at=until)
            .returning(WebhookMessage.id)
            .execution_options(synchronize_session=False)
        )
        return list(taken.scalars())

    async def message_with_endpoint(
        self, message_id: str
    ) -> tuple[WebhookMessage, WebhookEndpoint] | None:
        row = (
            await self.session.execute(
                select(WebhookMessage, WebhookEndpoint)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
                .where(WebhookMessage.id == message_id)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def record(
        self, message_id: str, values: dict[str, Any], attempt: WebhookAttempt
    ) -> None:
        self.session.add(attempt)
        await self.session.execute(
            update(WebhookMessage).where(WebhookMessage.id == message_id).values(**values)
        )

    async def attempts(
        self, endpoint_id: uuid.UUID, limit: int
    ) -> list[tuple[WebhookAttempt, str]]:
        rows = await self.session.execute(
            select(WebhookAttempt, WebhookMessage.type)
            .join(WebhookMessage, WebhookMessage.id == WebhookAttempt.message_id)
            .where(WebhookMessage.endpoint_id == endpoint_id)
            .order_by(WebhookAttempt.created_at.desc())
            .limit(limit)
        )
        return [(row[0], row[1]) for row in rows.all()]
