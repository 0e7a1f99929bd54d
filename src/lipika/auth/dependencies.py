"""Who is calling: every request resolves to (user, workspace, role) or is refused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lipika.auth.repository import AuthRepository, PrincipalRepository
from lipika.auth.security import (
    AccessClaims,
    PasswordHashing,
    decode_access_token,
    hash_secret,
)
from lipika.config import Settings
from lipika.db import SessionDep, utcnow
from lipika.errors import Forbidden, NotFound, Unauthorized
from lipika.kit import access
from lipika.workspaces.models import Role, WorkspaceKind

API_KEY_PREFIX = "lpk_"
_API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


async def get_settings(request: Request) -> Settings:
    return request.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_password_hashing(request: Request) -> PasswordHashing:
    return request.state.passwords


PasswordsDep = Annotated[PasswordHashing, Depends(get_password_hashing)]


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    workspace_id: uuid.UUID
    workspace_kind: WorkspaceKind
    role: Role
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    # What the API key itself allows (None: not a key, or no such limit).
    key_models: frozenset[str] | None = None
    key_budget: int | None = None

    def require(self, role: Role) -> None:
        if not self.role.at_least(role):
            raise Forbidden(
                f"this action needs the {role.value} role or higher", code="insufficient_role"
            )

    def require_login(self) -> AccessClaims:
        """Account-level actions (create workspaces, answer invitations, log out) need a login."""
        if self.session_id is None:
            raise Forbidden(
                "this action needs a user access token, not an API key", code="user_token_required"
            )
        return AccessClaims(self.user_id, self.session_id)


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer credentials", code="missing_credentials")
    return token.strip()


async def _authenticate(
    session: SessionDep,
    settings: Settings,
    authorization: str | None,
    workspace_id: uuid.UUID | None,
) -> Principal:
    """Resolves the caller, then ends its own unit of work (committing the API key's last-use
    time), so no database connection stays checked out while the endpoint does slow work."""
    principal = await _resolve(session, settings, authorization, workspace_id)
    await session.commit()
    access.note(
        workspace_id=str(principal.workspace_id),
        user_id=str(principal.user_id),
        api_key_id=str(principal.api_key_id) if principal.api_key_id else None,
    )
    return principal


async def _resolve(
    session: SessionDep,
    settings: Settings,
    authorization: str | None,
    workspace_id: uuid.UUID | None,
) -> Principal:
    token = _bearer(authorization)
    principals = PrincipalRepository(session)
    if token.startswith(API_KEY_PREFIX):
        found = await principals.by_api_key(hash_secret(token))
        if found is None:
            raise Unauthorized("invalid or revoked API key", code="invalid_api_key")
        key, role, kind = found
        now = utcnow()
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthorized(
                f"this API key expired at {key.expires_at.isoformat()}", code="api_key_expired"
            )
        if workspace_id is not None and workspace_id != key.workspace_id:
            raise NotFound("workspace not found")
        if key.last_used_at is None or key.last_used_at < now - _API_KEY_TOUCH_INTERVAL:
            await principals.touch_api_key(key.id, now, _API_KEY_TOUCH_INTERVAL)
        return Principal(
            key.user_id,
            key.workspace_id,
            kind,
            role,
            api_key_id=key.id,
            key_models=None if key.allowed_models is None else frozenset(key.allowed_models),
            key_budget=key.credit_budget,
        )

    claims = decode_access_token(token, key=settings.signing_key)
    found_member = await principals.by_login(claims.user_id, claims.session_id, workspace_id)
    if found_member is None:
        if await AuthRepository(session).live_session(claims.session_id) is None:
            raise Unauthorized("the session has been revoked", code="session_revoked")
        raise NotFound("workspace not found")
    ws_id, role, kind = found_member
    return Principal(claims.user_id, ws_id, kind, role, session_id=claims.session_id)


# Declares the credential in the OpenAPI document (the docs' Authorize button, generated
# clients); the header is still read and refused by `_bearer`, with our own errors.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A user access token (from sign-in) or an `lpk_` API key.",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


def _authorization(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return f"{credentials.scheme} {credentials.credentials}" if credentials else None


async def current_member(
    session: SessionDep,
    settings: SettingsDep,
    credentials: BearerCredentials,
    x_workspace_id: Annotated[uuid.UUID | None, Header()] = None,
) -> Principal:
    """The caller in the workspace of their API key, or the one `X-Workspace-Id` names."""
    return await _authenticate(session, settings, _authorization(credentials), x_workspace_id)


async def path_member(
    workspace_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    credentials: BearerCredentials,
) -> Principal:
    """The caller as a member of the workspace named in the path (404 if they are not one)."""
    return await _authenticate(session, settings, _authorization(credentials), workspace_id)


CurrentMember = Annotated[Principal, Depends(current_member)]
PathMember = Annotated[Principal, Depends(path_member)]


async def authenticate(
    session: SessionDep,
    settings: Settings,
    authorization: str | None,
    workspace_id: uuid.UUID | None = None,
) -> Principal:
    """The caller of a connection that is not a plain request (a WebSocket): the same checks
    as `current_member`, given the credentials it presented."""
    return await _authenticate(session, settings, authorization, workspace_id)
