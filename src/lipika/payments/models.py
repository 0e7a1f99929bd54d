"""Orders, subscriptions and refunds. An order's amount and currency are frozen at checkout."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from lipika.db import Base, CreatedAtMixin, IdMixin, str_enum, utcnow


class OrderKind(enum.StrEnum):
    PACK = "pack"  # one-off credits
    PLAN = "plan"  # a subscription period (new, renewal or upgrade)
    SEATS = "seats"  # seats added mid-period


class OrderState(enum.StrEnum):
    PENDING = "pending"  # waiting for the gateway
    PAID = "paid"  # validated and fulfilled, exactly once
    HELD = "held"  # validated but risky: waits for an operator (approve or refund)
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # never paid
    REFUNDED = "refunded"  # refund initiated (see refund_status) and credits taken back


class SubscriptionState(enum.StrEnum):
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELLED = "cancelled"  # ends at period end, no renewal reminders
    EXPIRED = "expired"


# A subscription whose plan is in effect (a cancelled one runs to its period end).
RUNNING = (SubscriptionState.ACTIVE, SubscriptionState.PAST_DUE, SubscriptionState.CANCELLED)


class Order(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "payment_orders"
    __table_args__ = (
        Index("ix_payment_orders_workspace", "workspace_id", "created_at"),
        Index("ix_payment_orders_state", "state", "created_at"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="RESTRICT")
    )
    user_id: Mapped[uuid.UUID | None]
    kind: Mapped[OrderKind] = mapped_column(str_enum(OrderKind, "order_kind"))
    item: Mapped[str] = mapped_column(String(50))  # pack or plan name
    period: Mapped[str | None] = mapped_column(String(10))  # month, year
    seats: Mapped[int] = mapped_column(Integer, default=0)
    # Frozen at checkout: what the gateway must confirm, to the paisa.
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    credits: Mapped[int] = mapped_column(BigInteger, default=0)  # micro-credits granted when paid
    tran_id: Mapped[str] = mapped_column(String(30), unique=True)
    gateway: Mapped[str] = mapped_column(String(20))
    session_key: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[OrderState] = mapped_column(
        str_enum(OrderState, "order_state"), default=OrderState.PENDING
    )
    val_id: Mapped[str | None] = mapped_column(String(100))
    bank_tran_id: Mapped[str | None] = mapped_column(String(100))
    risk_level: Mapped[str | None] = mapped_column(String(5))
    subscription_id: Mapped[uuid.UUID | None]
    # For a plan order: the period it pays for (a renewal starts where the last one ends).
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    refund_ref_id: Mapped[str | None] = mapped_column(String(100))
    refund_status: Mapped[str | None] = mapped_column(String(30))
    refunded_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Subscription(IdMixin, CreatedAtMixin, Base):
    """A workspace's paid plan: one per workspace; each paid period grants its credits once."""

    __tablename__ = "subscriptions"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="RESTRICT"), unique=True
    )
    plan: Mapped[str] = mapped_column(String(50))
    period: Mapped[str] = mapped_column(String(10))
    state: Mapped[SubscriptionState] = mapped_column(
        str_enum(SubscriptionState, "subscription_state")
    )
    seats: Mapped[int] = mapped_column(Integer, default=1)
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    # Take effect at period end: a downgrade, fewer seats, or a cancellation.
    next_plan: Mapped[str | None] = mapped_column(String(50))
    next_seats: Mapped[int | None] = mapped_column(Integer)
    # A renewal paid before the current period ends: its period starts at that end.
    renewal_order_id: Mapped[uuid.UUID | None]
    # Whether the wallet's calendar-month allowance was due before the subscription started,
    # so that the workspace returns to exactly that on expiry.
    free_allowance_due: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
