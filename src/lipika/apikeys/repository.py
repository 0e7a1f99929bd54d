from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.apikeys.models import ApiKey


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, key: ApiKey) -> None:
        self.session.add(key)
        await self.session.flush()

    async def get(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.scalar(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id)
        )

    async def revoke_all(self, workspace_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.workspace_id == workspace_id,
                ApiKey.user_id == user_id,
                ApiKey.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )

    async def revoke_all_of_user(self, user_id: uuid.UUID, now: datetime) -> None:
        """Every key the user made, in every workspace (their account was taken back)."""
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def list(
        self, workspace_id: uuid.UUID, *, user_id: uuid.UUID | None, include_revoked: bool
    ) -> Sequence[ApiKey]:
        query = select(ApiKey).where(ApiKey.workspace_id == workspace_id)
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return (await self.session.scalars(query.order_by(ApiKey.created_at.desc()))).all()
