"""Identity commands behind `lipika operators|users`: each one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika.auth.models import Operator, User
from lipika.auth.repository import AuthRepository
from lipika.auth.service import record_verified_address
from lipika.billing.commands import Operator as BillingCommands
from lipika.billing.plans import PlanCatalogue
from lipika.billing.service import BillingService
from lipika.config import Settings
from lipika.db import utcnow
from lipika.errors import BadRequest, NotFound


@dataclass(frozen=True, slots=True)
class OperatorRow:
    email: str
    added_at: str
    note: str


@dataclass
class IdentityCommands:
    sessionmaker: async_sessionmaker[AsyncSession]
    plans: PlanCatalogue

    @classmethod
    @asynccontextmanager
    async def connect(cls, settings: Settings) -> AsyncIterator[IdentityCommands]:
        async with BillingCommands.connect(settings) as billing:
            yield cls(billing.sessionmaker, billing.meter.plans)

    async def add_operator(self, email: str, note: str) -> bool:
        """Names a platform operator; False if they already were one. Refuses an unverified
        address: whoever signed up with it may not be its owner."""
        async with self.sessionmaker.begin() as session:
            user = await _user(session, email)
            if not user.verified:
                raise BadRequest(
                    f"{user.email} is not verified: its owner must use a verification link "
                    "first (or support checks it and runs `lipika users verify`)",
                    code="email_not_verified",
                )
            repo = AuthRepository(session)
            if await repo.operator(user.id) is not None:
                return False
            await repo.add(Operator(user_id=user.id, added_at=utcnow(), note=note))
            return True

    async def remove_operator(self, email: str) -> bool:
        async with self.sessionmaker.begin() as session:
            return await AuthRepository(session).remove_operator((await _user(session, email)).id)

    async def operators(self) -> list[OperatorRow]:
        async with self.sessionmaker() as session:
            return [
                OperatorRow(
                    user.email, operator.added_at.isoformat(timespec="seconds"), operator.note
                )
                for operator, user in await AuthRepository(session).operators()
            ]

    async def verify(self, email: str) -> bool:
        """Marks an address verified by hand (support checked it); False if it already was."""
        async with self.sessionmaker.begin() as session:
            user = await _user(session, email)
            billing = BillingService(session, self.plans)
            return await record_verified_address(session, billing, user.id, utcnow())


async def _user(session: AsyncSession, email: str) -> User:
    user = await AuthRepository(session).user_by_email(email.strip().lower())
    if user is None:
        raise NotFound(f"no user with email {email!r}")
    return user
