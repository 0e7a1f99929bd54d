from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from lipika.db import Base, CreatedAtMixin, IdMixin, str_enum


class RecordState(enum.StrEnum):
    IN_FLIGHT = "in_flight"  # claimed by a request still running
    DONE = "done"  # the answer is stored and replayed
    STREAMED = "streamed"  # answered with a stream, which is not replayed


class IdempotencyRecord(IdMixin, CreatedAtMixin, Base):
    """One `Idempotency-Key` of one caller: the request it was first sent with (its
    fingerprint) and, once answered, the answer that a retry gets back."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    scope: Mapped[str] = mapped_column(String(120))  # "<workspace>:k:<api key>" or ":u:<user>"
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[RecordState] = mapped_column(str_enum(RecordState, "idempotency_state"))
    claim: Mapped[uuid.UUID] = mapped_column(Uuid)  # the request that holds it in flight
    locked_until: Mapped[datetime]  # an in-flight claim older than this was abandoned
    expires_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
