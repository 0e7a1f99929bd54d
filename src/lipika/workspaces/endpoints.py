from __future__ import annotations

import uuid

from fastapi import status
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.auth.dependencies import CurrentMember, PathMember, Principal, SettingsDep
from lipika.auth.repository import AuthRepository
from lipika.billing.dependencies import BillingDep
from lipika.db import SessionDep
from lipika.idempotency.dependencies import Idempotent, IdempotentInPath
from lipika.kit.routing import api_router
from lipika.kit.schemas import ListOf
from lipika.mail.mailer import OutboxDep
from lipika.workspaces.schemas import (
    InvitationCreate,
    InvitationOut,
    MemberOut,
    ReceivedInvitationOut,
    RoleUpdate,
    WorkspaceCreate,
    WorkspaceOut,
    WorkspaceUpdate,
)
from lipika.workspaces.service import WorkspaceService

router = api_router(tags=["workspaces"])


@router.get("/v1/workspaces", response_model=ListOf[WorkspaceOut])
async def list_workspaces(me: CurrentMember, session: SessionDep) -> ListOf[WorkspaceOut]:
    """The workspaces the caller belongs to (an API key sees only its own)."""
    if me.api_key_id is not None:
        return ListOf(data=[await WorkspaceService(session).get(me)])
    return ListOf(data=await WorkspaceService(session).list_for_user(me.user_id))


@router.post(
    "/v1/workspaces",
    response_model=WorkspaceOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
)
async def create_workspace(
    body: WorkspaceCreate, me: CurrentMember, session: SessionDep, billing: BillingDep
) -> WorkspaceOut:
    """A team workspace whose wallet starts empty, on the free plan without its allowance, until
    an operator puts it on a plan or grants credits; the caller becomes its owner."""
    me.require_login()
    workspace = await WorkspaceService(session).create_team(me.user_id, body.name)
    await billing.open_wallet(workspace.id)
    return workspace


@router.get("/v1/workspaces/{workspace_id}", response_model=WorkspaceOut)
async def get_workspace(me: PathMember, session: SessionDep) -> WorkspaceOut:
    return await WorkspaceService(session).get(me)


@router.patch("/v1/workspaces/{workspace_id}", response_model=WorkspaceOut)
async def update_workspace(
    body: WorkspaceUpdate, me: PathMember, session: SessionDep
) -> WorkspaceOut:
    return await WorkspaceService(session).rename(me, body.name)


@router.get("/v1/workspaces/{workspace_id}/members", response_model=ListOf[MemberOut])
async def list_members(me: PathMember, session: SessionDep) -> ListOf[MemberOut]:
    return ListOf(data=await WorkspaceService(session).members(me))


@router.patch(
    "/v1/workspaces/{workspace_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def change_member_role(
    user_id: uuid.UUID, body: RoleUpdate, me: PathMember, session: SessionDep
) -> None:
    await WorkspaceService(session).change_role(me, user_id, body.role)


@router.delete(
    "/v1/workspaces/{workspace_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def remove_member(user_id: uuid.UUID, me: PathMember, session: SessionDep) -> None:
    """Admins remove members; any member may remove themselves (leave)."""
    await WorkspaceService(session).remove_member(me, user_id)


@router.post(
    "/v1/workspaces/{workspace_id}/invitations",
    response_model=InvitationOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[IdempotentInPath],
)
async def invite(
    body: InvitationCreate,
    me: PathMember,
    session: SessionDep,
    outbox: OutboxDep,
    settings: SettingsDep,
) -> InvitationOut:
    """Invites an address (mailed a link to the front end's invitations page)."""
    invitation = await WorkspaceService(session).invite(me, body.email, body.role, outbox, settings)
    return InvitationOut.model_validate(invitation)


@router.get("/v1/workspaces/{workspace_id}/invitations", response_model=ListOf[InvitationOut])
async def list_invitations(me: PathMember, session: SessionDep) -> ListOf[InvitationOut]:
    invitations = await WorkspaceService(session).invitations(me)
    return ListOf(data=[InvitationOut.model_validate(i) for i in invitations])


@router.delete(
    "/v1/workspaces/{workspace_id}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
)
async def revoke_invitation(invitation_id: uuid.UUID, me: PathMember, session: SessionDep) -> None:
    await WorkspaceService(session).revoke_invitation(me, invitation_id)


@router.get("/v1/invitations", response_model=ListOf[ReceivedInvitationOut])
async def my_invitations(me: CurrentMember, session: SessionDep) -> ListOf[ReceivedInvitationOut]:
    """Pending invitations addressed to the caller's email (once it is verified)."""
    me.require_login()
    user = await AuthRepository(session).user_by_id(me.user_id)
    return ListOf(data=await WorkspaceService(session).received_invitations(user))


@router.post("/v1/invitations/{invitation_id}/accept", response_model=InvitationOut)
async def accept_invitation(
    invitation_id: uuid.UUID, me: CurrentMember, session: SessionDep
) -> InvitationOut:
    return await _respond(invitation_id, me, session, accept=True)


@router.post("/v1/invitations/{invitation_id}/decline", response_model=InvitationOut)
async def decline_invitation(
    invitation_id: uuid.UUID, me: CurrentMember, session: SessionDep
) -> InvitationOut:
    return await _respond(invitation_id, me, session, accept=False)


async def _respond(
    invitation_id: uuid.UUID, me: Principal, session: AsyncSession, *, accept: bool
) -> InvitationOut:
    me.require_login()
    user = await AuthRepository(session).user_by_id(me.user_id)
    return InvitationOut.model_validate(
        await WorkspaceService(session).respond(user, invitation_id, accept=accept)
    )
