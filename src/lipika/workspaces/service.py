"""Workspace rules: who may see, rename, invite, promote and remove whom."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from lipika.apikeys.repository import ApiKeyRepository
from lipika.auth.dependencies import Principal
from lipika.auth.errors import EmailNotVerified
from lipika.auth.models import User
from lipika.config import Settings
from lipika.db import utcnow
from lipika.errors import BadRequest, Conflict, Forbidden, NotFound
from lipika.mail.mailer import Outbox
from lipika.payments.seats import require_seat, seat_limit
from lipika.workspaces import emails
from lipika.workspaces.models import (
    Invitation,
    InvitationStatus,
    Membership,
    Role,
    Workspace,
    WorkspaceKind,
)
from lipika.workspaces.repository import WorkspaceRepository
from lipika.workspaces.schemas import InvitationOut, MemberOut, ReceivedInvitationOut, WorkspaceOut

INVITATION_TTL = timedelta(days=7)


@dataclass
class WorkspaceService:
    session: AsyncSession

    @property
    def repo(self) -> WorkspaceRepository:
        return WorkspaceRepository(self.session)

    async def create_personal(self, user: User) -> Workspace:
        return await self._create(user.id, user.name or user.email, WorkspaceKind.PERSONAL)

    async def create_team(self, owner_id: uuid.UUID, name: str) -> WorkspaceOut:
        workspace = await self._create(owner_id, name, WorkspaceKind.TEAM)
        return _workspace_out(workspace, Role.OWNER)

    async def _create(self, owner_id: uuid.UUID, name: str, kind: WorkspaceKind) -> Workspace:
        workspace = Workspace(name=name, kind=kind)
        await self.repo.add(workspace)
        await self.repo.add(
            Membership(workspace_id=workspace.id, user_id=owner_id, role=Role.OWNER)
        )
        return workspace

    async def list_for_user(self, user_id: uuid.UUID) -> list[WorkspaceOut]:
        return [_workspace_out(ws, role) for ws, role in await self.repo.of_user(user_id)]

    async def get(self, member: Principal) -> WorkspaceOut:
        workspace = await self._workspace(member.workspace_id)
        return _workspace_out(workspace, member.role)

    async def rename(self, member: Principal, name: str) -> WorkspaceOut:
        member.require(Role.ADMIN)
        workspace = await self._workspace(member.workspace_id)
        workspace.name = name
        await self.session.flush()
        return _workspace_out(workspace, member.role)

    async def members(self, member: Principal) -> list[MemberOut]:
        return [
            MemberOut(
                user_id=user.id,
                email=user.email,
                name=user.name,
                role=m.role,
                joined_at=m.created_at,
            )
            for m, user in await self.repo.members(member.workspace_id)
        ]

    async def change_role(self, actor: Principal, user_id: uuid.UUID, role: Role) -> None:
        actor.require(Role.ADMIN)
        await self.repo.lock(actor.workspace_id)
        target = await self._membership(actor.workspace_id, user_id)
        if Role.OWNER in (role, target.role) and actor.role is not Role.OWNER:
            raise Forbidden(
                "only an owner can grant or take away the owner role", code="insufficient_role"
            )
        if target.role is Role.OWNER and role is not Role.OWNER:
            await self._keep_an_owner(actor.workspace_id)
        target.role = role
        await self.session.flush()

    async def remove_member(self, actor: Principal, user_id: uuid.UUID) -> None:
        if actor.workspace_kind is WorkspaceKind.PERSONAL:
            raise BadRequest("a personal workspace has only its owner", code="personal_workspace")
        leaving = user_id == actor.user_id
        if not leaving:
            actor.require(Role.ADMIN)
        await self.repo.lock(actor.workspace_id)
        target = await self._membership(actor.workspace_id, user_id)
        if target.role is Role.OWNER:
            if not leaving and actor.role is not Role.OWNER:
                raise Forbidden("only an owner can remove an owner", code="insufficient_role")
            await self._keep_an_owner(actor.workspace_id)
        await self.repo.remove_member(actor.workspace_id, user_id)
        # Their keys die with the membership; being invited back must not revive an old secret.
        await ApiKeyRepository(self.session).revoke_all(actor.workspace_id, user_id, utcnow())

    async def invite(
        self, actor: Principal, email: str, role: Role, outbox: Outbox, settings: Settings
    ) -> Invitation:
        """Invites an address and mails it; only a verified owner of that address can accept."""
        actor.require(Role.ADMIN)
        if actor.workspace_kind is WorkspaceKind.PERSONAL:
            raise BadRequest(
                "invite people to a team workspace, not a personal one", code="personal_workspace"
            )
        if role is Role.OWNER and actor.role is not Role.OWNER:
            raise Forbidden("only an owner can invite an owner", code="insufficient_role")
        await self.repo.lock(actor.workspace_id)
        pending = await self.repo.pending_invitation(actor.workspace_id, email)
        if pending is not None and pending.expires_at > utcnow():
            raise Conflict("this email already has a pending invitation", code="invitation_exists")
        if pending is not None:  # expired: closed, so the new one can take its place
            pending.status = InvitationStatus.REVOKED
            pending.responded_at = utcnow()
            await self.session.flush()
        members = await self.repo.members(actor.workspace_id)
        if any(user.email == email for _, user in members):
            raise Conflict("this person is already a member", code="already_member")
        limit = await seat_limit(self.session, actor.workspace_id)
        if limit is not None:
            open_invitations = [
                i
                for i in await self.repo.invitations_of_workspace(actor.workspace_id)
                if i.status is InvitationStatus.PENDING and i.expires_at > utcnow()
            ]
            require_seat(limit, len(members) + len(open_invitations))
        invitation = Invitation(
            workspace_id=actor.workspace_id,
            email=email,
            role=role,
            invited_by=actor.user_id,
            expires_at=utcnow() + INVITATION_TTL,
        )
        await self.repo.add(invitation)
        workspace = await self._workspace(actor.workspace_id)
        inviter = await self.session.get(User, actor.user_id)
        outbox.send(
            emails.invitation(
                email,
                workspace.name,
                (inviter.name or inviter.email) if inviter else "A member",
                role.value,
                settings.app_link("/invitations"),
                INVITATION_TTL.days,
            )
        )
        return invitation

    async def invitations(self, actor: Principal) -> list[Invitation]:
        actor.require(Role.ADMIN)
        return list(await self.repo.invitations_of_workspace(actor.workspace_id))

    async def revoke_invitation(self, actor: Principal, invitation_id: uuid.UUID) -> None:
        actor.require(Role.ADMIN)
        invitation = await self.repo.invitation(invitation_id)
        if invitation is None or invitation.workspace_id != actor.workspace_id:
            raise NotFound("invitation not found")
        if invitation.status is not InvitationStatus.PENDING:
            raise Conflict(
                f"the invitation is already {invitation.status.value}", code="invitation_closed"
            )
        invitation.status = InvitationStatus.REVOKED
        invitation.responded_at = utcnow()
        await self.session.flush()

    async def received_invitations(self, user: User) -> list[ReceivedInvitationOut]:
        _require_verified(user, "see the invitations sent to it")
        now = utcnow()
        return [
            ReceivedInvitationOut(
                **InvitationOut.model_validate(inv).model_dump(), workspace_name=ws.name
            )
            for inv, ws in await self.repo.pending_invitations_for(user.email)
            if inv.expires_at > now
        ]

    async def respond(self, user: User, invitation_id: uuid.UUID, *, accept: bool) -> Invitation:
        # Whoever signs up with an invited address is not yet its owner: until the mailbox is
        # proven, an invitation (an admin's, say) must not be theirs to take, or to decline.
        _require_verified(user, "answer invitations sent to it")
        invitation = await self.repo.invitation(invitation_id)
        if invitation is None or invitation.email != user.email:
            raise NotFound("invitation not found")
        if invitation.status is not InvitationStatus.PENDING:
            raise Conflict(
                f"the invitation is already {invitation.status.value}", code="invitation_closed"
            )
        if invitation.expires_at <= utcnow():
            raise Conflict("the invitation has expired", code="invitation_expired")
        invitation.responded_at = utcnow()
        if not accept:
            invitation.status = InvitationStatus.DECLINED
        else:
            await self.repo.lock(invitation.workspace_id)
            if await self.repo.membership(invitation.workspace_id, user.id) is not None:
                raise Conflict("you are already a member of this workspace", code="already_member")
            # The invitation held a seat; fewer seats since (a renewal) may leave none for it.
            members = await self.repo.members(invitation.workspace_id)
            require_seat(await seat_limit(self.session, invitation.workspace_id), len(members))
            invitation.status = InvitationStatus.ACCEPTED
            await self.repo.add(
                Membership(
                    workspace_id=invitation.workspace_id, user_id=user.id, role=invitation.role
                )
            )
        await self.session.flush()
        return invitation

    async def _workspace(self, workspace_id: uuid.UUID) -> Workspace:
        workspace = await self.repo.get(workspace_id)
        if workspace is None:
            raise NotFound("workspace not found")
        return workspace

    async def _membership(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
        membership = await self.repo.membership(workspace_id, user_id)
        if membership is None:
            raise NotFound("member not found")
        return membership

    async def _keep_an_owner(self, workspace_id: uuid.UUID) -> None:
        if await self.repo.count_owners(workspace_id) <= 1:
            raise Conflict("a workspace must keep at least one owner", code="last_owner")


def _require_verified(user: User, action: str) -> None:
    if not user.verified:
        raise EmailNotVerified(action)


def _workspace_out(workspace: Workspace, role: Role) -> WorkspaceOut:
    return WorkspaceOut(
        id=workspace.id,
        name=workspace.name,
        kind=workspace.kind,
        created_at=workspace.created_at,
        role=role,
    )
