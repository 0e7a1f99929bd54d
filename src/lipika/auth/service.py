"""Sign-up, login, refresh-token rotation and logout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.auth.limits import AbuseLimits
from lipika.auth.models import AuthSession, RefreshToken, User
from lipika.auth.repository import AuthRepository
from lipika.auth.schemas import AuthResponse, TokenPair, UserOut
from lipika.auth.security import (
    AccessClaims,
    PasswordHashing,
    encode_access_token,
    hash_secret,
    new_secret,
)
from lipika.billing.service import BillingService
from lipika.config import Settings
from lipika.db import utcnow
from lipika.errors import Conflict, Unauthorized
from lipika.workspaces.service import WorkspaceService

REFRESH_TOKEN_PREFIX = "lrt_"


class RefreshTokenReused(Unauthorized):
    """A used refresh token came back: it was stolen or replayed, so its session is revoked."""

    code = "refresh_token_reused"
    keep_changes = True


@dataclass
class AuthService:
    session: AsyncSession
    settings: Settings
    passwords: PasswordHashing

    @property
    def repo(self) -> AuthRepository:
        return AuthRepository(self.session)

    async def signup(
        self, email: str, password: str, name: str, billing: BillingService
    ) -> AuthResponse:
        # Hashed before the first query: no database connection is held while it waits.
        password_hash = await self.passwords.hash(password)
        if await self.repo.user_by_email(email) is not None:
            raise Conflict("an account with this email already exists", code="email_taken")
        user = User(email=email, name=name, password_hash=password_hash)
        try:
            await self.repo.add(user)
        except IntegrityError:
            # Lost a race with a concurrent sign-up for the same email.
            raise Conflict(
                "an account with this email already exists", code="email_taken"
            ) from None
        workspace = await WorkspaceService(self.session).create_personal(user)
        await billing.open_wallet(workspace.id)
        return await self._open_session(user)

    async def login(self, email: str, password: str, limits: AbuseLimits) -> AuthResponse:
        """Counts the attempt against the failed-login limits before hashing (a locked account
        answers 429 even to the right password) and gives it back if it succeeds."""
        await limits.login_attempt(email)
        user = await self.repo.user_by_email(email)
        # End the read before the hash waits its turn: a queue of logins holds no database
        # connection (nor, on SQLite, the write lock that every transaction takes).
        await self.session.commit()
        stored = user.password_hash if user else None  # None still costs a hash
        if not await self.passwords.verify(password, stored) or user is None:
            raise Unauthorized("email or password is incorrect", code="invalid_credentials")
        await limits.login_succeeded(email)
        return await self._open_session(user)

    async def refresh(self, refresh_token: str) -> TokenPair:
        now = utcnow()
        token = await self.repo.refresh_token(hash_secret(refresh_token))
        if token is None or token.expires_at <= now:
            raise Unauthorized("invalid or expired refresh token", code="invalid_refresh_token")
        if token.used_at is not None or not await self.repo.claim_refresh_token(token.id, now):
            await self.repo.revoke_session(token.session_id, now)
            raise RefreshTokenReused("refresh token was already used; the session is revoked")
        login = await self.repo.live_session(token.session_id)
        if login is None:
            raise Unauthorized("the session has been revoked", code="session_revoked")
        return await self._issue_tokens(login, now)

    async def logout(self, claims: AccessClaims, *, all_sessions: bool) -> None:
        now = utcnow()
        if all_sessions:
            await self.repo.revoke_all_sessions(claims.user_id, now)
        else:
            await self.repo.revoke_session(claims.session_id, now)

    async def _open_session(self, user: User) -> AuthResponse:
        login = AuthSession(user_id=user.id)
        await self.repo.add(login)
        tokens = await self._issue_tokens(login, utcnow())
        return AuthResponse(**tokens.model_dump(), user=UserOut.model_validate(user))

    async def _issue_tokens(self, login: AuthSession, now: datetime) -> TokenPair:
        access_ttl = timedelta(seconds=self.settings.access_token_ttl_seconds)
        refresh_ttl = timedelta(seconds=self.settings.refresh_token_ttl_seconds)
        refresh_token = new_secret(REFRESH_TOKEN_PREFIX)
        await self.repo.add(
            RefreshToken(
                session_id=login.id,
                token_hash=hash_secret(refresh_token),
                expires_at=now + refresh_ttl,
            )
        )
        access = encode_access_token(
            AccessClaims(login.user_id, login.id),
            key=self.settings.signing_key,
            now=now,
            ttl=access_ttl,
        )
        return TokenPair(
            access_token=access,
            expires_in=int(access_ttl.total_seconds()),
            refresh_token=refresh_token,
            refresh_expires_in=int(refresh_ttl.total_seconds()),
        )
