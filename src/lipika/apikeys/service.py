"""API keys: workspace credentials that act as their creator, with the creator's role.

Members manage their own keys; owners and admins see and revoke every key of the workspace.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from lipika.apikeys.models import ApiKey
from lipika.apikeys.repository import ApiKeyRepository
from lipika.apikeys.schemas import ApiKeyCreated, ApiKeyOut
from lipika.auth.dependencies import API_KEY_PREFIX, Principal
from lipika.auth.security import hash_secret, new_secret
from lipika.db import utcnow
from lipika.errors import NotFound
from lipika.workspaces.models import Role

_DISPLAY_PREFIX_LEN = len(API_KEY_PREFIX) + 8


@dataclass
class ApiKeyService:
    session: AsyncSession

    @property
    def repo(self) -> ApiKeyRepository:
        return ApiKeyRepository(self.session)

    async def create(self, member: Principal, name: str) -> ApiKeyCreated:
        secret = new_secret(API_KEY_PREFIX)
        key = ApiKey(
            workspace_id=member.workspace_id,
            user_id=member.user_id,
            name=name,
            prefix=secret[:_DISPLAY_PREFIX_LEN],
            key_hash=hash_secret(secret),
        )
        await self.repo.add(key)
        return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)

    async def list(self, member: Principal, *, include_revoked: bool) -> list[ApiKeyOut]:
        keys = await self.repo.list(
            member.workspace_id, user_id=self._only_own(member), include_revoked=include_revoked
        )
        return [ApiKeyOut.model_validate(k) for k in keys]

    async def revoke(self, member: Principal, key_id: uuid.UUID) -> None:
        key = await self.repo.get(member.workspace_id, key_id)
        if key is None or (self._only_own(member) not in (None, key.user_id)):
            raise NotFound("API key not found")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            await self.session.flush()

    @staticmethod
    def _only_own(member: Principal) -> uuid.UUID | None:
        return None if member.role.at_least(Role.ADMIN) else member.user_id
