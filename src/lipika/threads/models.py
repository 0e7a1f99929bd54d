from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lipika.db import Base, CreatedAtMixin, IdMixin, str_enum, utcnow


class Visibility(enum.StrEnum):
    PRIVATE = "private"  # its creator only
    WORKSPACE = "workspace"  # every member of the workspace may read it


class Thread(IdMixin, CreatedAtMixin, Base):
    """A conversation with the agent, owned by a workspace and private to its creator unless
    shared. Its messages live in the checkpoint database under the thread's id; this row is
    what the app database knows of it, and the lease of the run answering it now.

    The run lease: `run_id` names the run holding the thread, `run_owner` the process running
    it, `run_expires_at` when another process may take it (the owner renews it while the run
    lives), and `run_fence` counts acquisitions, so a run's release or renewal that names an
    older fence changes nothing.
    """

    __tablename__ = "threads"
    __table_args__ = (
        # The workspace's threads, most recently active first (the list's keyset order).
        Index("ix_threads_workspace_id_updated_at", "workspace_id", "updated_at", "id"),
        # A process's leases, renewed together by its heartbeat.
        Index("ix_threads_run_owner", "run_owner"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    title: Mapped[str] = mapped_column(String(200))
    visibility: Mapped[Visibility] = mapped_column(
        str_enum(Visibility, "thread_visibility"), default=Visibility.PRIVATE
    )
    last_model: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    run_id: Mapped[uuid.UUID | None]
    run_owner: Mapped[str | None] = mapped_column(String(100))
    run_expires_at: Mapped[datetime | None]
    run_fence: Mapped[int] = mapped_column(BigInteger, default=0)
