"""Inbound deliveries, one row per (source, delivery key): the second copy is never stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lipika.db import Base, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")


class WebhookDelivery(Base):
    """A callback as received: the raw body (what a signature covers), the headers that matter,
    whether it verified, and when and how it was handled."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("source", "delivery_key", name="uq_webhook_deliveries_source_key"),
        Index("ix_webhook_deliveries_unhandled", "handled_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(50))
    delivery_key: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    verified: Mapped[bool] = mapped_column(default=False)
    handled_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(String(50))
