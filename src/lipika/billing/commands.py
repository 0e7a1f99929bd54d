"""Operator commands behind `lipika credits|plans|ledger|reconcile`: each one transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lipika import migrate
from lipika.auth.models import User
from lipika.billing.meter import Meter, build_meter
from lipika.billing.models import EntryKind
from lipika.billing.service import BillingService, Posted
from lipika.billing.tasks import Reconciler, ReconcileReport
from lipika.config import Settings
from lipika.db import create_engine, create_sessionmaker
from lipika.errors import NotFound
from lipika.workspaces.models import Membership, Workspace, WorkspaceKind


@dataclass
class Operator:
    meter: Meter
    sessionmaker: async_sessionmaker[AsyncSession]

    @classmethod
    @asynccontextmanager
    async def connect(cls, settings: Settings) -> AsyncIterator[Operator]:
        if settings.embedded:  # the embedded server migrates at start; so do its commands
            await asyncio.to_thread(migrate.upgrade, settings.app_db_url)
        engine = create_engine(settings)
        try:
            meter = build_meter(settings, engine)
            yield cls(meter, create_sessionmaker(engine))
            await meter.aclose()
        finally:
            await engine.dispose()

    async def resolve_workspace(
        self, session: AsyncSession, *, email: str | None, workspace: str | None
    ) -> uuid.UUID:
        """`--workspace ID`, or `--email` for that user's personal workspace."""
        if workspace:
            try:
                workspace_id = uuid.UUID(workspace)
            except ValueError:
                raise NotFound(f"{workspace!r} is not a workspace id") from None
            if await session.get(Workspace, workspace_id) is None:
                raise NotFound(f"no workspace {workspace}")
            return workspace_id
        found = await session.scalar(
            select(Workspace.id)
            .join(Membership, Membership.workspace_id == Workspace.id)
            .join(User, User.id == Membership.user_id)
            .where(
                User.email == (email or "").strip().lower(),
                Workspace.kind == WorkspaceKind.PERSONAL,
            )
        )
        if found is None:
            raise NotFound(f"no user with email {email!r}")
        return found

    async def post(
        self,
        kind: EntryKind,
        amount: int,
        reason: str,
        *,
        email: str | None,
        workspace: str | None,
        key: str | None,
    ) -> Posted:
        async with self.sessionmaker.begin() as session:
            workspace_id = await self.resolve_workspace(session, email=email, workspace=workspace)
            billing = BillingService(session, self.meter.plans)
            return await billing.post(
                workspace_id, kind, amount, f"cli:{key or uuid.uuid4()}", reason=reason
            )

    async def assign_plan(
        self, plan: str, *, email: str | None, workspace: str | None
    ) -> uuid.UUID:
        async with self.sessionmaker.begin() as session:
            workspace_id = await self.resolve_workspace(session, email=email, workspace=workspace)
            await BillingService(session, self.meter.plans).assign_plan(workspace_id, plan)
            return workspace_id

    async def audit(self) -> tuple[int, list]:
        async with self.sessionmaker() as session:
            checked, drift = await BillingService(session, self.meter.plans).audit()
            return checked, list(drift)

    async def reconcile(self) -> ReconcileReport:
        return await Reconciler(self.meter, self.sessionmaker).run_once()
