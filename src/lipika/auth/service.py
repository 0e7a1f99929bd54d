"""Accounts: sign-up, verification of the address, login, password reset, token rotation.

Sign-up, resend and reset answer the same whatever the address, so none of them tells whether
an account exists: what differs is only the mail the address receives, and mail leaves after
the commit, from the mailer's own tasks (lipika.mail.mailer). Resend and reset do even the
look-up there, so their answer takes as long for a registered address as for an unknown one;
sign-up hashes the password in both branches, which outweighs its few writes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.apikeys.repository import ApiKeyRepository
from lipika.auth import emails
from lipika.auth.errors import (
    InvalidCredentials,
    InvalidEmailToken,
    RefreshTokenReused,
    SessionOfUnverifiedAddress,
    UnverifiedLogin,
)
from lipika.auth.limits import AbuseLimits
from lipika.auth.models import AuthSession, EmailToken, RefreshToken, TokenPurpose, User
from lipika.auth.passwords import require_strong_password
from lipika.auth.repository import AuthRepository
from lipika.auth.schemas import AuthResponse, TokenPair, UserOut
from lipika.auth.security import (
    AccessClaims,
    HashingBusy,
    PasswordHashing,
    encode_access_token,
    hash_secret,
    new_secret,
)
from lipika.billing.service import BillingService
from lipika.config import Settings
from lipika.db import utcnow
from lipika.errors import Unauthorized
from lipika.mail.base import Email
from lipika.mail.mailer import Outbox
from lipika.workspaces.repository import WorkspaceRepository
from lipika.workspaces.service import WorkspaceService

REFRESH_TOKEN_PREFIX = "lrt_"
LINK_PATHS = {
    TokenPurpose.VERIFY_EMAIL: "/verify-email",
    TokenPurpose.RESET_PASSWORD: "/reset-password",
}


async def new_link(
    session: AsyncSession, settings: Settings, user_id: uuid.UUID, purpose: TokenPurpose
) -> str:
    """A new single-use token for the user, stored as its hash, as a link into the front end."""
    ttl = (
        settings.email_verification_ttl_seconds
        if purpose is TokenPurpose.VERIFY_EMAIL
        else settings.password_reset_ttl_seconds
    )
    secret = new_secret("")
    await AuthRepository(session).add(
        EmailToken(
            user_id=user_id,
            purpose=purpose,
            token_hash=hash_secret(secret),
            expires_at=utcnow() + timedelta(seconds=ttl),
        )
    )
    return settings.app_link(LINK_PATHS[purpose], secret)


def verification_email(settings: Settings, to: str, link: str) -> Email:
    return emails.verification(to, link, settings.email_verification_ttl_seconds // 3600)


def reset_email(settings: Settings, to: str, link: str, *, signing_up: bool = False) -> Email:
    minutes = settings.password_reset_ttl_seconds // 60
    if signing_up:
        return emails.already_registered(to, link, minutes)
    return emails.password_reset(to, link, minutes)


async def record_verified_address(
    session: AsyncSession, billing: BillingService, user_id: uuid.UUID, now: datetime
) -> bool:
    """Marks the address proven (a link came back, or support checked it by hand); False if it
    already was. The first proof makes the free plan's allowance due to the person's own
    workspace: free credits per verified person, not per sign-up."""
    repo = AuthRepository(session)
    first = await repo.mark_verified(user_id, now)
    if first:
        personal = await WorkspaceRepository(session).personal_workspace_id(user_id)
        if personal is not None:
            await billing.start_allowance(personal)
    await repo.retire_email_tokens(user_id, TokenPurpose.VERIFY_EMAIL, now)
    return first


@dataclass
class AuthService:
    session: AsyncSession
    settings: Settings
    passwords: PasswordHashing
    outbox: Outbox
    billing: BillingService
    sessionmaker: async_sessionmaker[AsyncSession]

    @property
    def repo(self) -> AuthRepository:
        return AuthRepository(self.session)

    # -- sign-up and verification ----------------------------------------------------------

    async def signup(self, email: str, password: str, name: str, limits: AbuseLimits) -> None:
        """A new address gets an account (unverified, with an empty wallet) and a verification
        link; a registered one gets a message saying so, with a reset link (counted as a reset
        for that address: past its limit the mail is skipped, the answer unchanged)."""
        await require_strong_password(password, email=email, name=name)
        # Hashed in both branches, so both take as long, and before the first query: no
        # database connection is held while the hash waits its turn.
        password_hash = await self.passwords.hash(password)
        existing = await self.repo.user_by_email(email)
        if existing is not None:
            if not await limits.may_send_reset(email):
                return
            link = await new_link(
                self.session, self.settings, existing.id, TokenPurpose.RESET_PASSWORD
            )
            self.outbox.send(reset_email(self.settings, email, link, signing_up=True))
            return
        user = User(email=email, name=name, password_hash=password_hash)
        try:
            async with self.session.begin_nested():
                await self.repo.add(user)
        except IntegrityError:
            return  # a concurrent sign-up for this address won; it mails the link
        workspace = await WorkspaceService(self.session).create_personal(user)
        await self.billing.open_wallet(workspace.id)
        await self._send_verification(user)

    async def resend_verification(self, email: str) -> None:
        """A fresh link if the address has an unverified account (looked up after the answer)."""

        async def compose() -> Email | None:
            async with self.sessionmaker.begin() as session:
                user = await AuthRepository(session).user_by_email(email)
                if user is None or user.verified:
                    return None
                link = await new_link(session, self.settings, user.id, TokenPurpose.VERIFY_EMAIL)
            return verification_email(self.settings, email, link)

        self.outbox.send_composed(compose)

    async def verify_email(self, token: str) -> AuthResponse:
        """Spends the link, marks the address verified, and logs the user in."""
        now = utcnow()
        user_id = await self.repo.use_email_token(
            hash_secret(token), TokenPurpose.VERIFY_EMAIL, now
        )
        if user_id is None:
            raise InvalidEmailToken
        user = await self._user(user_id)
        await self._mark_verified(user, now)
        return await self._open_session(user)

    # -- login -----------------------------------------------------------------------------

    async def login(self, email: str, password: str, limits: AbuseLimits) -> AuthResponse:
        """Counts the attempt against the failed-login limits before hashing (a locked account
        answers 429 even to the right password) and gives it back when the password is right.
        An unverified address is refused like a wrong password; with the right one, a fresh
        link is mailed."""
        await limits.login_attempt(email)
        user = await self.repo.user_by_email(email)
        # End the read before the hash waits its turn: a queue of logins holds no database
        # connection (nor, on SQLite, the write lock that every transaction takes).
        await self.session.commit()
        stored = user.password_hash if user else None  # None still costs a hash
        try:
            right = await self.passwords.verify(password, stored)
        except HashingBusy:
            await limits.login_succeeded(email)  # never checked: not a failed attempt
            raise
        if not right or user is None:
            raise InvalidCredentials
        if not user.verified:
            # The owner of the password may have lost the first link: mail a fresh one
            # (within the verification e-mail limits; past them, nothing is sent). The attempt
            # still counts, so the limits do not tell a right password from a wrong one.
            if await limits.may_send_verification(email):
                await self._send_verification(user)
            raise UnverifiedLogin
        await limits.login_succeeded(email)
        return await self._open_session(user)

    # -- password reset --------------------------------------------------------------------

    async def request_password_reset(self, email: str) -> None:
        """A reset link if the address has an account (looked up after the answer)."""

        async def compose() -> Email | None:
            async with self.sessionmaker.begin() as session:
                user = await AuthRepository(session).user_by_email(email)
                if user is None:
                    return None
                link = await new_link(session, self.settings, user.id, TokenPurpose.RESET_PASSWORD)
            return reset_email(self.settings, email, link)

        self.outbox.send_composed(compose)

    async def reset_password(self, token: str, password: str) -> AuthResponse:
        """Sets the new password, proves the mailbox, ends every login, and logs in anew.

        The policy is checked before the link is spent, so a refused password leaves it usable.
        """
        now = utcnow()
        token_hash = hash_secret(token)
        live = await self.repo.live_email_token(token_hash, TokenPurpose.RESET_PASSWORD, now)
        if live is None:
            raise InvalidEmailToken
        user = await self._user(live.user_id)
        await require_strong_password(password, email=user.email, name=user.name)
        password_hash = await self.passwords.hash(password)
        if await self.repo.use_email_token(token_hash, TokenPurpose.RESET_PASSWORD, now) is None:
            raise InvalidEmailToken  # spent by a concurrent request meanwhile
        await self.repo.retire_email_tokens(user.id, TokenPurpose.RESET_PASSWORD, now)
        await self.repo.set_password(user.id, password_hash)
        # Whoever had the account before the mailbox was proven loses every way in: its logins
        # and its API keys.
        await self.repo.revoke_all_sessions(user.id, now)
        await ApiKeyRepository(self.session).revoke_all_of_user(user.id, now)
        await self._mark_verified(user, now)
        return await self._open_session(user)

    # -- sessions --------------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> TokenPair:
        now = utcnow()
        token = await self.repo.refresh_token(hash_secret(refresh_token))
        if token is None or token.expires_at <= now:
            raise Unauthorized("invalid or expired refresh token", code="invalid_refresh_token")
        rotating = token.used_at is None and await self.repo.claim_refresh_token(token.id, now)
        if not rotating:
            # Used already. Within the grace window that is a second tab refreshing at the same
            # moment: it gets the very pair the first refresh got. After it, a replay: the
            # token was stolen or copied, and its whole login ends. (Read from the database:
            # the session's copy of the row may carry this request's own failed claim.)
            used_at = await self.repo.refresh_token_used_at(token.id)
            if used_at is None or now - used_at > self._refresh_grace:
                await self.repo.revoke_session(token.session_id, now)
                raise RefreshTokenReused("refresh token was already used; the session is revoked")
        login = await self.repo.live_session(token.session_id)
        if login is None:
            raise Unauthorized("the session has been revoked", code="session_revoked")
        user = await self.repo.user_by_id(login.user_id)
        if user is None or not user.verified:
            # A login from before addresses were verified: it ends here; logging in again
            # mails the link that verifies the address.
            await self.repo.revoke_session(login.id, now)
            raise SessionOfUnverifiedAddress
        successor = _successor(self.settings, token.token_hash)
        if not rotating:
            return self._pair(login, used_at, successor)
        return await self._issue_tokens(login, now, successor)

    async def logout(self, claims: AccessClaims, *, all_sessions: bool) -> None:
        now = utcnow()
        if all_sessions:
            await self.repo.revoke_all_sessions(claims.user_id, now)
        else:
            await self.repo.revoke_session(claims.session_id, now)

    # -- helpers ---------------------------------------------------------------------------

    async def _user(self, user_id: uuid.UUID) -> User:
        user = await self.repo.user_by_id(user_id)
        if user is None:  # deleted between the link and its use
            raise InvalidEmailToken
        return user

    async def _send_verification(self, user: User) -> None:
        link = await new_link(self.session, self.settings, user.id, TokenPurpose.VERIFY_EMAIL)
        self.outbox.send(verification_email(self.settings, user.email, link))

    async def _mark_verified(self, user: User, now: datetime) -> None:
        await record_verified_address(self.session, self.billing, user.id, now)

    async def _open_session(self, user: User) -> AuthResponse:
        login = AuthSession(user_id=user.id)
        await self.repo.add(login)
        tokens = await self._issue_tokens(login, utcnow())
        return AuthResponse(**tokens.model_dump(), user=UserOut.model_validate(user))

    @property
    def _refresh_grace(self) -> timedelta:
        return timedelta(seconds=self.settings.refresh_grace_seconds)

    async def _issue_tokens(
        self, login: AuthSession, now: datetime, refresh_token: str | None = None
    ) -> TokenPair:
        """A new pair; `refresh_token` is the rotated token's successor (see `_successor`)."""
        refresh_ttl = timedelta(seconds=self.settings.refresh_token_ttl_seconds)
        refresh_token = refresh_token or new_secret(REFRESH_TOKEN_PREFIX)
        await self.repo.add(
            RefreshToken(
                session_id=login.id,
                token_hash=hash_secret(refresh_token),
                expires_at=now + refresh_ttl,
            )
        )
        return self._pair(login, now, refresh_token)

    def _pair(self, login: AuthSession, now: datetime, refresh_token: str) -> TokenPair:
        """The pair issued at `now`: the same moment and refresh token give the same pair."""
        access_ttl = timedelta(seconds=self.settings.access_token_ttl_seconds)
        refresh_ttl = timedelta(seconds=self.settings.refresh_token_ttl_seconds)
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


def _successor(settings: Settings, token_hash: str) -> str:
    """The refresh token that replaces the one whose hash is `token_hash`: derived from it with
    the signing key, so a second refresh inside the grace window can hand out the same one
    (only hashes are stored)."""
    digest = hmac.new(
        settings.signing_key.encode(), b"refresh-successor:" + token_hash.encode(), hashlib.sha256
    ).digest()
    return REFRESH_TOKEN_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")
