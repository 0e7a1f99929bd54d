"""Queries for users, login sessions and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.apikeys.models import ApiKey
from lipika.auth.models import AuthSession, RefreshToken, User
from lipika.workspaces.models import Membership, Role, Workspace, WorkspaceKind


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def user_by_email(self, email: str) -> User | None:
        return await self.session.scalar(select(User).where(User.email == email))

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def add(self, *rows: object) -> None:
        self.session.add_all(rows)
        await self.session.flush()

    async def refresh_token(self, token_hash: str) -> RefreshToken | None:
        return await self.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        )

    async def claim_refresh_token(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Marks the token used; False if a concurrent request used it first."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
        )
        return result.rowcount == 1

    async def live_session(self, session_id: uuid.UUID) -> AuthSession | None:
        return await self.session.scalar(
            select(AuthSession).where(
                AuthSession.id == session_id, AuthSession.revoked_at.is_(None)
            )
        )

    async def revoke_session(self, session_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_all_sessions(self, user_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )


class PrincipalRepository:
    """Resolves a credential to (user, workspace, role) in one query."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_api_key(self, key_hash: str) -> tuple[ApiKey, Role, WorkspaceKind] | None:
        row = (
            await self.session.execute(
                select(ApiKey, Membership.role, Workspace.kind)
                .join(
                    Membership,
                    (Membership.workspace_id == ApiKey.workspace_id)
                    & (Membership.user_id == ApiKey.user_id),
                )
                .join(Workspace, Workspace.id == ApiKey.workspace_id)
                .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
            )
        ).one_or_none()
        return None if row is None else (row[0], row[1], row[2])

    async def touch_api_key(self, key_id: uuid.UUID, now: datetime, every: timedelta) -> None:
        """Records use, at most once per `every`, so a busy key does not write on every call."""
        await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < now - every),
            )
            .values(last_used_at=now)
        )

    async def by_login(
        self, user_id: uuid.UUID, session_id: uuid.UUID, workspace_id: uuid.UUID | None
    ) -> tuple[uuid.UUID, Role, WorkspaceKind] | None:
        """The member row of a live login in the given workspace (default: the personal one)."""
        which = (
            Workspace.id == workspace_id
            if workspace_id is not None
            else Workspace.kind == WorkspaceKind.PERSONAL
        )
        row = (
            await self.session.execute(
                select(Workspace.id, Membership.role, Workspace.kind)
                .join(Membership, Membership.workspace_id == Workspace.id)
                .join(AuthSession, AuthSession.user_id == Membership.user_id)
                .where(
                    AuthSession.id == session_id,
                    AuthSession.user_id == user_id,
                    AuthSession.revoked_at.is_(None),
                    which,
                )
            )
        ).one_or_none()
        return None if row is None else (row[0], row[1], row[2])
