"""Ledger tables. Only `lipika.billing.repository` writes them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from lipika.db import Base, CreatedAtMixin, IdMixin, str_enum, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class EntryKind(enum.StrEnum):
    GRANT = "grant"
    PURCHASE = "purchase"
    USAGE = "usage"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    EXPIRY = "expiry"


class HoldStatus(enum.StrEnum):
    OPEN = "open"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


# Foreign-key columns name their type: the meter and the operator commands load these tables
# without importing every model, and a type inherited from an unloaded table would be lost.


class Wallet(Base):
    """The workspace's credit account. `balance` and `held` cache SUM(entries) and SUM(open holds),
    written in the same transaction as the entry or hold that changes them."""

    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("held >= 0", name="held_not_negative"),
        CheckConstraint("balance - held >= 0", name="available_not_negative"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="RESTRICT"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    plan: Mapped[str] = mapped_column(String(50))
    allowance_period: Mapped[str | None] = mapped_column(
        String(7)
    )  # YYYY-MM of the last monthly grant
    # The plan's monthly credits are owed to this wallet: set when the owner of a personal
    # workspace verifies their address, or when an operator puts the workspace on a plan.
    # A new wallet starts without, so neither a throwaway sign-up nor a new team workspace
    # is a source of free credits.
    allowance_due: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(CreatedAtMixin, Base):
    """Append-only: never updated, never deleted. `amount` is signed micro-credits."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_workspace_seq", "workspace_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="RESTRICT")
    )
    kind: Mapped[EntryKind] = mapped_column(str_enum(EntryKind, "entry_kind"))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    hold_id: Mapped[uuid.UUID | None]
    user_id: Mapped[uuid.UUID | None]
    model: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(500), default="")


class Hold(IdMixin, CreatedAtMixin, Base):
    """Credits set aside before a provider call; settled exactly once."""

    __tablename__ = "holds"
    __table_args__ = (
        Index("ix_holds_open_expiry", "status", "expires_at"),
        Index("ix_holds_owner", "owner_kind", "owner_id"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="RESTRICT")
    )
    user_id: Mapped[uuid.UUID | None]
    operation: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[HoldStatus] = mapped_column(
        str_enum(HoldStatus, "hold_status"), default=HoldStatus.OPEN
    )
    price_version: Mapped[str] = mapped_column(String(50))
    rates: Mapped[dict[str, int]] = mapped_column(JSON)
    counters: Mapped[list[Any]] = mapped_column(JSON, default=list)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    expires_at: Mapped[datetime]
    captured: Mapped[int | None] = mapped_column(BigInteger)
    overage: Mapped[int] = mapped_column(BigInteger, default=0)
    usage: Mapped[dict[str, int] | None] = mapped_column(JSON)
    outcome: Mapped[str | None] = mapped_column(String(50))
    settled_at: Mapped[datetime | None]
    # What owns the hold (a chat request, an agent step, a job, a speech session): the resolver
    # registered for the kind decides what happens to it once expired.
    owner_kind: Mapped[str | None] = mapped_column(String(50))
    owner_id: Mapped[str | None] = mapped_column(String(200))


class UsageCounter(Base):
    """A limit counter whose period is part of its key (no reset job to get wrong)."""

    __tablename__ = "usage_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    day: Mapped[str] = mapped_column(String(10), index=True)


class MemberCap(Base):
    """An optional monthly credit cap a workspace admin sets for one member."""

    __tablename__ = "member_caps"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    monthly_credit_cap: Mapped[int] = mapped_column(BigInteger)
