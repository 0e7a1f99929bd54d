from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from lipika.db import Base, CreatedAtMixin, IdMixin


class ApiKey(IdMixin, CreatedAtMixin, Base):
    """A workspace credential acting as the member who created it, with that member's role."""

    __tablename__ = "api_keys"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Like a gateway's virtual keys: refused after `expires_at`, only for `allowed_models`
    # (None: every model the plan allows), and at most `credit_budget` micro-credits in all.
    expires_at: Mapped[datetime | None]
    allowed_models: Mapped[list[Any] | None] = mapped_column(JSON)
    credit_budget: Mapped[int | None] = mapped_column(BigInteger)
