from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lipika.db import Base, CreatedAtMixin, IdMixin, utcnow


class Thread(IdMixin, CreatedAtMixin, Base):
    """A conversation with the agent, owned by a workspace. Its messages live in the checkpoint
    database under the thread's id; this row is what the app database knows of it."""

    __tablename__ = "threads"
    __table_args__ = (
        # The workspace's threads, most recently active first (the list's keyset order).
        Index("ix_threads_workspace_id_updated_at", "workspace_id", "updated_at", "id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    title: Mapped[str] = mapped_column(String(200))
    last_model: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
