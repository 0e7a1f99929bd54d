"""Queries for workspaces, memberships and invitations."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Row, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.auth.models import User
from lipika.workspaces.models import (
    Invitation,
    InvitationStatus,
    Membership,
    Role,
    Workspace,
    WorkspaceKind,
)


class WorkspaceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *rows: object) -> None:
        self.session.add_all(rows)
        await self.session.flush()

    async def get(self, workspace_id: uuid.UUID) -> Workspace | None:
        return await self.session.get(Workspace, workspace_id)

    async def lock(self, workspace_id: uuid.UUID) -> Workspace | None:
        """Locks the workspace row: membership changes in one workspace run one at a time."""
        return await self.session.scalar(
            select(Workspace).where(Workspace.id == workspace_id).with_for_update()
        )

    async def of_user(self, user_id: uuid.UUID) -> Sequence[Row[tuple[Workspace, Role]]]:
        return (
            await self.session.execute(
                select(Workspace, Membership.role)
                .join(Membership, Membership.workspace_id == Workspace.id)
                .where(Membership.user_id == user_id)
                .order_by(Workspace.created_at, Workspace.id)
            )
        ).all()

    async def personal_workspace_id(self, user_id: uuid.UUID) -> uuid.UUID | None:
        return await self.session.scalar(
            select(Workspace.id)
            .join(Membership, Membership.workspace_id == Workspace.id)
            .where(Membership.user_id == user_id, Workspace.kind == WorkspaceKind.PERSONAL)
        )

    async def membership(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
        return await self.session.get(Membership, (workspace_id, user_id))

    async def members(self, workspace_id: uuid.UUID) -> Sequence[Row[tuple[Membership, User]]]:
        return (
            await self.session.execute(
                select(Membership, User)
                .join(User, User.id == Membership.user_id)
                .where(Membership.workspace_id == workspace_id)
                .order_by(Membership.created_at, User.email)
            )
        ).all()

    async def count_owners(self, workspace_id: uuid.UUID) -> int:
        return (
            await self.session.scalar(
                select(func.count())
                .select_from(Membership)
                .where(Membership.workspace_id == workspace_id, Membership.role == Role.OWNER)
            )
            or 0
        )

    async def remove_member(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(Membership).where(
                Membership.workspace_id == workspace_id, Membership.user_id == user_id
            )
        )

    async def invitation(self, invitation_id: uuid.UUID) -> Invitation | None:
        return await self.session.get(Invitation, invitation_id)

    async def pending_invitation(self, workspace_id: uuid.UUID, email: str) -> Invitation | None:
        return await self.session.scalar(
            select(Invitation).where(
                Invitation.workspace_id == workspace_id,
                Invitation.email == email,
                Invitation.status == InvitationStatus.PENDING,
            )
        )

    async def invitations_of_workspace(self, workspace_id: uuid.UUID) -> Sequence[Invitation]:
        return (
            await self.session.scalars(
                select(Invitation)
                .where(Invitation.workspace_id == workspace_id)
                .order_by(Invitation.created_at.desc())
            )
        ).all()

    async def pending_invitations_for(
        self, email: str
    ) -> Sequence[Row[tuple[Invitation, Workspace]]]:
        return (
            await self.session.execute(
                select(Invitation, Workspace)
                .join(Workspace, Workspace.id == Invitation.workspace_id)
                .where(Invitation.email == email, Invitation.status == InvitationStatus.PENDING)
                .order_by(Invitation.created_at.desc())
            )
        ).all()
