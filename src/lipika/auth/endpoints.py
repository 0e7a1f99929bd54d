from __future__ import annotations

from typing import Annotated

from fastapi import Depends, status
from pydantic import BaseModel

from lipika.auth.dependencies import CurrentMember, PasswordsDep, SettingsDep
from lipika.auth.limits import AbuseLimitsDep
from lipika.auth.repository import AuthRepository
from lipika.auth.schemas import (
    AuthResponse,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    SignupRequest,
    TokenPair,
    UserOut,
)
from lipika.auth.service import AuthService
from lipika.billing.dependencies import BillingDep
from lipika.db import SessionDep
from lipika.kit.routing import api_router
from lipika.workspaces.schemas import WorkspaceOut
from lipika.workspaces.service import WorkspaceService

router = api_router(tags=["auth"])


async def get_auth(
    session: SessionDep, settings: SettingsDep, passwords: PasswordsDep
) -> AuthService:
    return AuthService(session, settings, passwords)


AuthDep = Annotated[AuthService, Depends(get_auth)]


@router.post("/v1/auth/signup", response_model=AuthResponse, status_code=status.HTTP_201_CREATED)
async def signup(
    body: SignupRequest, auth: AuthDep, billing: BillingDep, limits: AbuseLimitsDep
) -> AuthResponse:
    """Creates the account, its personal workspace (with the free plan's credits), and logs in.
    Sign-ups per client address are limited (429 `too_many_attempts`)."""
    await limits.signup()
    return await auth.signup(body.email, body.password, body.name, billing)


@router.post("/v1/auth/login", response_model=AuthResponse)
async def login(body: LoginRequest, auth: AuthDep, limits: AbuseLimitsDep) -> AuthResponse:
    """Failed logins are limited per account and per client address, with windows from a
    minute to a day (429 `too_many_attempts`, `Retry-After`); while a limit is reached even
    the right password is refused."""
    return await auth.login(body.email, body.password, limits)


@router.post("/v1/auth/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, auth: AuthDep) -> TokenPair:
    """Trades a refresh token for a new pair; each refresh token works once."""
    return await auth.refresh(body.refresh_token)


@router.post("/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(me: CurrentMember, auth: AuthDep, body: LogoutRequest | None = None) -> None:
    """Revokes this login (or every login, with `all_sessions`); its tokens stop working at once."""
    claims = me.require_login()
    all_sessions = body.all_sessions if body else False
    await auth.logout(claims, all_sessions=all_sessions)


class MeOut(BaseModel):
    user: UserOut
    workspace: WorkspaceOut
    workspaces: list[WorkspaceOut]
    via: str


@router.get("/v1/me", response_model=MeOut, tags=["auth"])
async def me(me: CurrentMember, session: SessionDep) -> MeOut:
    """The caller, the workspace this request acts in, and every workspace they belong to."""
    user = await AuthRepository(session).user_by_id(me.user_id)
    workspaces = WorkspaceService(session)
    current = await workspaces.get(me)
    return MeOut(
        user=UserOut.model_validate(user),
        workspace=current,
        workspaces=[current] if me.api_key_id else await workspaces.list_for_user(me.user_id),
        via="api_key" if me.api_key_id else "access_token",
    )
