"""Account routes. Handlers stay thin: limits (per address, per client) are dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, status
from pydantic import BaseModel

from lipika.auth.dependencies import CurrentMember, PasswordsDep, SettingsDep
from lipika.auth.limits import AbuseLimitsDep
from lipika.auth.repository import AuthRepository
from lipika.auth.schemas import (
    Accepted,
    AuthResponse,
    EmailRequest,
    LoginRequest,
    LogoutRequest,
    PasswordResetConfirm,
    RefreshRequest,
    SignupRequest,
    TokenPair,
    UserOut,
    VerifyEmailRequest,
)
from lipika.auth.service import AuthService
from lipika.billing.dependencies import BillingDep
from lipika.db import SessionDep
from lipika.kit.routing import api_router
from lipika.mail.mailer import OutboxDep
from lipika.workspaces.schemas import WorkspaceOut
from lipika.workspaces.service import WorkspaceService

router = api_router(tags=["auth"])


async def get_auth(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    outbox: OutboxDep,
    billing: BillingDep,
) -> AuthService:
    return AuthService(session, settings, passwords, outbox, billing, request.state.sessionmaker)


AuthDep = Annotated[AuthService, Depends(get_auth)]


@router.post("/v1/auth/signup", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def signup(body: SignupRequest, auth: AuthDep, limits: AbuseLimitsDep) -> Accepted:
    """Mails a verification link to a new address (or, to a registered one, a note with a reset
    link). The answer is the same either way; the account works once the link is used.
    Sign-ups per client address are limited (429 `too_many_attempts`)."""
    await limits.signup()
    await auth.signup(body.email, body.password, body.name, limits)
    return Accepted(status="verification_sent")


@router.post("/v1/auth/verify-email", response_model=AuthResponse)
async def verify_email(body: VerifyEmailRequest, auth: AuthDep) -> AuthResponse:
    """Spends the token of a verification link and logs in. The first verification grants the
    free plan's credits to the personal workspace."""
    return await auth.verify_email(body.token)


@router.post(
    "/v1/auth/verify-email/resend", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED
)
async def resend_verification(
    body: EmailRequest, auth: AuthDep, limits: AbuseLimitsDep
) -> Accepted:
    """A fresh verification link, if the address has an unverified account; the same answer
    either way. Limited per client address and per e-mail (429 `too_many_attempts`)."""
    await limits.verification_email(body.email)
    await auth.resend_verification(body.email)
    return Accepted(status="verification_sent")


@router.post(
    "/v1/auth/password-reset", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED
)
async def request_password_reset(
    body: EmailRequest, auth: AuthDep, limits: AbuseLimitsDep
) -> Accepted:
    """Mails a reset link if the address has an account; the same answer either way. Limited
    per client address and per e-mail (429 `too_many_attempts`)."""
    await limits.password_reset(body.email)
    await auth.request_password_reset(body.email)
    return Accepted(status="reset_sent")


@router.post("/v1/auth/password-reset/confirm", response_model=AuthResponse)
async def confirm_password_reset(body: PasswordResetConfirm, auth: AuthDep) -> AuthResponse:
    """Sets the new password, marks the address verified, ends every login of the account, and
    logs in anew."""
    return await auth.reset_password(body.token, body.password)


@router.post("/v1/auth/login", response_model=AuthResponse)
async def login(body: LoginRequest, auth: AuthDep, limits: AbuseLimitsDep) -> AuthResponse:
    """An unverified address is refused like a wrong password; with the right password, a fresh
    verification link is mailed. Failed logins are limited per account and per client address,
    with windows from a minute to a day (429 `too_many_attempts`, `Retry-After`); while a limit
    is reached even the right password is refused."""
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
