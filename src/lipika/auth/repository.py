"""Queries for users, login sessions and refresh tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Row, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.apikeys.models import ApiKey
from lipika.auth.models import AuthSession, EmailToken, Operator, RefreshToken, TokenPurpose, User
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

    async def refresh_token_used_at(self, token_id: uuid.UUID) -> datetime | None:
        """When a concurrent request used the token (read after losing the claim to it)."""
        return await self.session.scalar(
            select(RefreshToken.used_at).where(RefreshToken.id == token_id)
        )

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

    async def mark_verified(self, user_id: uuid.UUID, now: datetime) -> bool:
        """Records the proven address; False if it was already verified (only the first counts)."""
        result = await self.session.execute(
            update(User)
            .where(User.id == user_id, User.email_verified_at.is_(None))
            .values(email_verified_at=now)
        )
        return result.rowcount == 1

    async def set_password(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self.session.execute(
            update(User).where(User.id == user_id).values(password_hash=password_hash)
        )

    # -- e-mail tokens ---------------------------------------------------------------------

    async def live_email_token(
        self, token_hash: str, purpose: TokenPurpose, now: datetime
    ) -> EmailToken | None:
        return await self.session.scalar(
            select(EmailToken).where(
                EmailToken.token_hash == token_hash,
                EmailToken.purpose == purpose,
                EmailToken.used_at.is_(None),
                EmailToken.expires_at > now,
            )
        )

    async def use_email_token(
        self, token_hash: str, purpose: TokenPurpose, now: datetime
    ) -> uuid.UUID | None:
        """Spends a live token in one conditional write and returns its user; None if it is
        unknown, expired or used (by this request's competitor too: only one of them wins)."""
        result = await self.session.execute(
            update(EmailToken)
            .where(
                EmailToken.token_hash == token_hash,
                EmailToken.purpose == purpose,
                EmailToken.used_at.is_(None),
                EmailToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(EmailToken.user_id)
        )
        return result.scalar_one_or_none()

    async def retire_email_tokens(
        self, user_id: uuid.UUID, purpose: TokenPurpose, now: datetime
    ) -> None:
        """Spends every other live token of the kind: an older link must not work after one did."""
        await self.session.execute(
            update(EmailToken)
            .where(
                EmailToken.user_id == user_id,
                EmailToken.purpose == purpose,
                EmailToken.used_at.is_(None),
            )
            .values(used_at=now)
        )

    # -- operators -------------------------------------------------------------------------

    async def is_verified_operator(self, user_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(Operator.user_id)
            .join(User, User.id == Operator.user_id)
            .where(Operator.user_id == user_id, User.email_verified_at.is_not(None))
        )
        return found is not None

    async def operator(self, user_id: uuid.UUID) -> Operator | None:
        return await self.session.get(Operator, user_id)

    async def remove_operator(self, user_id: uuid.UUID) -> bool:
        result = await self.session.execute(delete(Operator).where(Operator.user_id == user_id))
        return result.rowcount == 1

    async def operators(self) -> Sequence[Row[tuple[Operator, User]]]:
        return (
            await self.session.execute(
                select(Operator, User)
                .join(User, User.id == Operator.user_id)
                .order_by(Operator.added_at, User.email)
            )
        ).all()


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
