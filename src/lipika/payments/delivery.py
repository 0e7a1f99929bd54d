"""What a paid order delivers, inside the transaction that moved it to `paid`: the credits
(ledger entries under idempotency keys), the subscription period, the seats; and what a refund
takes back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.billing.errors import InsufficientCredits
from lipika.billing.models import EntryKind
from lipika.billing.plans import PlanCatalogue
from lipika.billing.repository import LedgerRepository
from lipika.billing.service import BillingService
from lipika.payments.models import RUNNING, Order, OrderKind, Subscription, SubscriptionState
from lipika.payments.periods import period_end
from lipika.payments.repository import PaymentsRepository

log = structlog.get_logger()


@dataclass(frozen=True)
class Delivery:
    plans: PlanCatalogue

    async def deliver(self, session: AsyncSession, order: Order, now: datetime) -> None:
        billing = BillingService(session, self.plans)
        reason = f"order {order.tran_id}"
        if order.kind == OrderKind.PACK:
            await billing.post(
                order.workspace_id,
                EntryKind.PURCHASE,
                order.credits,
                f"order:{order.id}",
                reason=f"credit pack {order.item}, {reason}",
                user_id=order.user_id,
            )
            return
        repo = PaymentsRepository(session)
        subscription = await repo.subscription(order.workspace_id, lock=True)
        if order.kind == OrderKind.SEATS:
            if subscription is None or subscription.id != order.subscription_id:
                log.error("seats_without_subscription", tran_id=order.tran_id)
                return
            subscription.seats += order.seats
            subscription.updated_at = now
            await self._grant(
                billing, order, order.credits, f"order:{order.id}", f"seats, {reason}"
            )
            return
        await self._subscribe(session, billing, order, subscription, now)

    async def _subscribe(
        self,
        session: AsyncSession,
        billing: BillingService,
        order: Order,
        subscription: Subscription | None,
        now: datetime,
    ) -> None:
        assert order.period is not None
        running = subscription is not None and subscription.state in RUNNING
        if running and order.subscription_id == subscription.id and order.period_start is None:
            # An upgrade: the plan now, the prorated credit difference at once.
            subscription.plan = order.item
            subscription.seats = order.seats
            subscription.updated_at = now
            await billing.follow_subscription(order.workspace_id, order.item)
            await self._grant(
                billing, order, order.credits, f"order:{order.id}", f"upgrade, {order.tran_id}"
            )
            return
        if running:
            # A paid period follows the current one (a renewal, or a second plan order paid
            # meanwhile: never a restart that would lose paid days). Paid before the current
            # period ends, it waits for that end (`roll_due`); paid after (in the grace
            # period), it starts at once, from that end.
            if now < subscription.current_period_end:
                if subscription.renewal_order_id is not None:
                    await self.roll(session, billing, subscription, now)  # the one waiting
                if now < subscription.current_period_end:
                    subscription.renewal_order_id = order.id
                    subscription.updated_at = now
                    order.subscription_id = subscription.id
                    order.period_start = subscription.current_period_end
                    order.period_end = period_end(order.period_start, order.period)
                    return
            await self._start_period(session, billing, subscription, order, now, renews=True)
            return
        wallet = await LedgerRepository(session).wallet(order.workspace_id)
        if subscription is None:
            subscription = Subscription(
                id=uuid.uuid4(), workspace_id=order.workspace_id, created_at=now
            )
            session.add(subscription)
        subscription.free_allowance_due = bool(wallet and wallet.allowance_due)
        await self._start_period(session, billing, subscription, order, now, renews=False)

    async def roll(
        self,
        session: AsyncSession,
        billing: BillingService,
        subscription: Subscription,
        now: datetime,
    ) -> None:
        """Starts the period a renewal paid ahead for (its order waits on the subscription)."""
        order = await PaymentsRepository(session).order(subscription.renewal_order_id)
        subscription.renewal_order_id = None
        if order is not None:
            await self._start_period(session, billing, subscription, order, now, renews=True)

    async def _start_period(
        self,
        session: AsyncSession,
        billing: BillingService,
        subscription: Subscription,
        order: Order,
        now: datetime,
        *,
        renews: bool,
    ) -> None:
        assert order.period is not None
        start = subscription.current_period_end if renews else now
        end = period_end(start, order.period)
        if renews:
            # The period that ends gives way to this one: what is left of its credits expires.
            ended = subscription.current_period_start.isoformat()
            await billing.expire_unused_grant(
                order.workspace_id,
                f"period:{subscription.id}:{ended}",
                f"expiry:{subscription.id}:{ended}",
                reason=f"unused credits of the period from {subscription.current_period_start:%Y-%m-%d}",
            )
        subscription.current_period_start = start
        subscription.plan = order.item
        subscription.period = order.period
        subscription.seats = order.seats
        subscription.state = SubscriptionState.ACTIVE
        subscription.current_period_end = end
        subscription.next_plan = None
        subscription.next_seats = None
        subscription.updated_at = now
        order.subscription_id = subscription.id
        order.period_start, order.period_end = start, end
        await session.flush()
        await billing.follow_subscription(order.workspace_id, order.item)
        await self._grant(
            billing,
            order,
            order.credits,
            f"period:{subscription.id}:{start.isoformat()}",
            f"{order.item} plan, period from {start:%Y-%m-%d}, {order.tran_id}",
            kind=EntryKind.GRANT,
        )

    @staticmethod
    async def _grant(
        billing: BillingService,
        order: Order,
        amount: int,
        key: str,
        reason: str,
        kind: EntryKind = EntryKind.PURCHASE,
    ) -> None:
        if amount > 0:
            await billing.post(
                order.workspace_id, kind, amount, key, reason=reason, user_id=order.user_id
            )

    # -- refunds ----------------------------------------------------------------------------

    async def take_back(self, session: AsyncSession, order: Order) -> None:
        state = await LedgerRepository(session).wallet_state(order.workspace_id)
        available = state.available if state else 0
        amount = min(order.credits, max(0, available))
        if amount <= 0:
            return
        short = order.credits - amount
        reason = f"refund of order {order.tran_id}" + (
            f"; {short} micro-credits already spent, not recovered" if short else ""
        )
        try:
            await BillingService(session, self.plans).post(
                order.workspace_id, EntryKind.REFUND, -amount, f"refund:{order.id}", reason=reason
            )
        except InsufficientCredits:  # spent in the meantime: take back none, say so in the log
            log.warning("refund_credits_spent", tran_id=order.tran_id)
