"""Every query on orders and subscriptions."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.payments.models import Order, OrderState, Subscription, SubscriptionState

orders = Order.__table__
subscriptions = Subscription.__table__


class PaymentsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_order(self, order: Order) -> Order:
        self.session.add(order)
        await self.session.flush()
        return order

    async def order(self, order_id: uuid.UUID) -> Order | None:
        return await self.session.get(Order, order_id, populate_existing=True)

    async def order_by_tran_id(self, tran_id: str) -> Order | None:
        return await self.session.scalar(
            select(Order).where(Order.tran_id == tran_id).execution_options(populate_existing=True)
        )

    async def orders_of(self, workspace_id: uuid.UUID, limit: int) -> Sequence[Order]:
        return (
            await self.session.scalars(
                select(Order)
                .where(Order.workspace_id == workspace_id)
                .order_by(Order.created_at.desc())
                .limit(limit)
            )
        ).all()

    async def move_order(
        self, order_id: uuid.UUID, from_states: Iterable[OrderState], **values: Any
    ) -> bool:
        """The one conditional write of an order's state: True for the caller that moved it."""
        result = await self.session.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.state.in_([s.value for s in from_states]))
            .values(**values)
        )
        return result.rowcount == 1

    async def pending_orders(self, checked_before: datetime, limit: int) -> Sequence[Order]:
        """Pending orders not looked at since `checked_before` (each check touches
        `updated_at`), the longest unchecked first."""
        return (
            await self.session.scalars(
                select(Order)
                .where(Order.state == OrderState.PENDING, Order.updated_at < checked_before)
                .order_by(Order.updated_at)
                .limit(limit)
            )
        ).all()

    async def refunds_in_progress(self, limit: int) -> Sequence[Order]:
        return (
            await self.session.scalars(
                select(Order)
                .where(Order.state == OrderState.REFUNDED, Order.refund_status == "processing")
                .limit(limit)
            )
        ).all()

    async def subscription(
        self, workspace_id: uuid.UUID, *, lock: bool = False
    ) -> Subscription | None:
        query = select(Subscription).where(Subscription.workspace_id == workspace_id)
        if lock:
            query = query.with_for_update()
        return await self.session.scalar(query.execution_options(populate_existing=True))

    async def subscriptions_due(
        self, states: Iterable[SubscriptionState], ended_before: datetime, limit: int
    ) -> Sequence[Subscription]:
        return (
            await self.session.scalars(
                select(Subscription)
                .where(
                    Subscription.state.in_([s.value for s in states]),
                    Subscription.current_period_end < ended_before,
                )
                .limit(limit)
            )
        ).all()
