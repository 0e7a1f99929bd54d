"""Billing rules outside the hot path: wallets, grants and adjustments, plans, reports, audit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.billing.errors import InsufficientCredits, WalletMissing
from lipika.billing.models import EntryKind, LedgerEntry, Wallet
from lipika.billing.plans import DEFAULT_PLAN, PlanCatalogue
from lipika.billing.repository import LedgerRepository
from lipika.db import utcnow
from lipika.errors import BadRequest, Conflict


@dataclass(frozen=True, slots=True)
class Posted:
    entry: LedgerEntry
    duplicate: bool


@dataclass
class BillingService:
    session: AsyncSession
    plans: PlanCatalogue

    @property
    def repo(self) -> LedgerRepository:
        return LedgerRepository(self.session)

    async def open_wallet(self, workspace_id: uuid.UUID) -> None:
        """A wallet on the free plan, empty, with no allowance due: credits come with a verified
        owner (`start_allowance`), a plan an operator assigns, or an operator's grant."""
        await self.repo.create_wallet(workspace_id, DEFAULT_PLAN, utcnow())

    async def start_allowance(self, workspace_id: uuid.UUID) -> None:
        """Makes the plan's monthly credits due to the wallet from now on; grants this month's."""
        plan = await self.repo.make_allowance_due(workspace_id)
        if plan is None:
            raise WalletMissing("this workspace has no wallet")
        await self.grant_allowance(workspace_id, plan, utcnow())

    async def assign_plan(self, workspace_id: uuid.UUID, plan: str) -> None:
        """An operator's choice of plan, whose monthly credits are due from now on."""
        if self.plans.get(plan) is None:
            raise BadRequest(
                f"no plan named {plan!r}", code="unknown_plan", plans=sorted(self.plans.plans)
            )
        if not await self.repo.set_plan(workspace_id, plan):
            raise WalletMissing("this workspace has no wallet")
        await self.grant_allowance(workspace_id, plan, utcnow())

    async def follow_subscription(
        self, workspace_id: uuid.UUID, plan: str, *, allowance_due: bool = False
    ) -> None:
        """The wallet's plan as a subscription sets it: the paid plan while it runs (its paid
        periods grant the credits), the free plan and its former allowance once it expires."""
        if not await self.repo.set_subscribed_plan(workspace_id, plan, allowance_due=allowance_due):
            raise WalletMissing("this workspace has no wallet")
        if allowance_due:
            await self.grant_allowance(workspace_id, plan, utcnow())

    async def expire_unused_grant(
        self, workspace_id: uuid.UUID, grant_key: str, expiry_key: str, *, reason: str
    ) -> int:
        """Expires what is left of a period's grant, once (`expiry_key`): period credits are
        spent before any others, so what is left is the grant less the usage since it, and
        never more than is available. Returns the micro-credits expired."""
        grant = await self.repo.entry_by_key(grant_key)
        if grant is None or grant.amount <= 0:
            return 0
        spent = await self.repo.spent_since(workspace_id, grant.created_at)
        state = await self.repo.wallet_state(workspace_id)
        left = min(max(0, grant.amount - spent), state.available if state else 0)
        if left <= 0:
            return 0
        await self.post(workspace_id, EntryKind.EXPIRY, -left, expiry_key, reason=reason)
        return left

    async def grant_allowance(self, workspace_id: uuid.UUID, plan_name: str, now: datetime) -> None:
        """The plan's monthly credits, at most once per plan and calendar month (the key says so)."""
        plan = self.plans.get(plan_name)
        period = now.strftime("%Y-%m")
        if plan is not None and plan.monthly_credits > 0:
            await self.post(
                workspace_id,
                EntryKind.GRANT,
                plan.monthly_credits,
                f"allowance:{workspace_id}:{plan.name}:{period}",
                reason=f"{plan.label} plan, {period}",
            )
        await self.repo.mark_allowance(workspace_id, period)

    async def post(
        self,
        workspace_id: uuid.UUID,
        kind: EntryKind,
        amount: int,
        idempotency_key: str,
        *,
        reason: str,
        user_id: uuid.UUID | None = None,
    ) -> Posted:
        """Appends one entry and moves the balance with it; the same key twice changes nothing.

        A negative amount may not take the available balance (balance - held) below zero.
        """
        existing = await self.repo.entry_by_key(idempotency_key)
        if existing is not None:
            return self._replayed(existing, workspace_id, kind, amount)
        balance = await self.repo.move(workspace_id, balance=amount, floor=amount < 0)
        if balance is None:
            state = await self.repo.wallet_state(workspace_id)
            if state is None:
                raise WalletMissing("this workspace has no wallet")
            raise InsufficientCredits(-amount, state.available)
        now = utcnow()
        values = dict(
            workspace_id=workspace_id,
            kind=kind,
            amount=amount,
            balance_after=balance,
            idempotency_key=idempotency_key,
            user_id=user_id,
            reason=reason,
            created_at=now,
        )
        try:
            entry_id = await self.repo.append_entry(**values)
        except IntegrityError:
            # A concurrent post with the same key won; this transaction must not stand.
            raise Conflict(
                "a concurrent request used this idempotency key", code="idempotency_conflict"
            ) from None
        return Posted(LedgerEntry(id=entry_id, hold_id=None, model=None, **values), duplicate=False)

    @staticmethod
    def _replayed(
        existing: LedgerEntry, workspace_id: uuid.UUID, kind: EntryKind, amount: int
    ) -> Posted:
        if (existing.workspace_id, existing.kind, existing.amount) != (workspace_id, kind, amount):
            raise Conflict(
                "this idempotency key was already used for a different entry",
                code="idempotency_key_reused",
            )
        return Posted(existing, duplicate=True)

    async def wallet(self, workspace_id: uuid.UUID) -> Wallet:
        wallet = await self.repo.wallet(workspace_id)
        if wallet is None:
            raise WalletMissing("this workspace has no wallet")
        return wallet

    async def set_member_cap(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID, cap: int | None
    ) -> None:
        """Sets (or, with None, removes) a member's monthly cap.

        The month's counter only runs while a cap is set, so setting one seeds it with what the
        member already spent this month plus their holds in flight, and those holds start naming
        the counter, so settling them gives back what they did not spend.
        """
        await self.repo.set_member_cap(workspace_id, user_id, cap)
        if cap is None:
            return
        now = utcnow()
        key = f"member:{workspace_id}:{user_id}:{now:%Y-%m}"
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        spent = await self.repo.month_spend(workspace_id, user_id, month_start)
        await self.repo.set_counter(key, now.strftime("%Y-%m-%d"), spent)
        await self.repo.count_open_holds_against(workspace_id, user_id, key)

    async def audit(self) -> tuple[int, Sequence]:
        """(wallets checked, wallets whose cache disagrees with the ledger and the open holds)."""
        return await self.repo.wallet_count(), await self.repo.drift()
