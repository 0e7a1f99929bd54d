"""The job row: the durable truth of one long operation (see jobs/runner.py for its life)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lipika.db import Base, CreatedAtMixin, IdMixin, str_enum, utcnow


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


LIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class Job(IdMixin, CreatedAtMixin, Base):
    """One job of a workspace.

    The hold (`hold_id`) is owned by the job (owner kind `job`) and priced at the rates frozen
    here at submit. `lease_owner` names the process running it and `lease_expires_at` when
    another may adopt it; the owner renews the leases of all its jobs in one statement per
    heartbeat. `operation_id` is the provider's, stored as soon as the provider accepted the
    work, so an adopter resumes by polling it and never submits twice. `usage` is what the
    provider reported, written before the hold is captured, so reconciliation can capture a
    job whose process died in between.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key", name="uq_jobs_workspace_id_key"),
        # The workspace's jobs, newest first (the list's keyset order).
        Index("ix_jobs_workspace_id_created_at", "workspace_id", "created_at", "id"),
        # A process's leases, renewed together by its heartbeat.
        Index("ix_jobs_lease_owner", "lease_owner"),
        # Live jobs by lease expiry: what adoption and the deadline alarm scan.
        Index("ix_jobs_status_lease_expires_at", "status", "lease_expires_at"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(30))
    provider: Mapped[str] = mapped_column(String(30))
    model: Mapped[str] = mapped_column(String(100))
    status: Mapped[JobStatus] = mapped_column(str_enum(JobStatus, "job_status"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    thread_id: Mapped[uuid.UUID | None]  # the agent thread that started it, if one did
    price: Mapped[str] = mapped_column(String(100))
    rates: Mapped[dict[str, int]] = mapped_column(JSON)
    max_usage: Mapped[dict[str, int]] = mapped_column(JSON)
    hold_id: Mapped[uuid.UUID | None]
    operation_id: Mapped[str | None] = mapped_column(String(500))
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    deadline: Mapped[datetime]
    progress: Mapped[int] = mapped_column(Integer, default=0)
    usage: Mapped[dict[str, int] | None] = mapped_column(JSON)
    outcome: Mapped[str | None] = mapped_column(String(40))
    charged: Mapped[int | None] = mapped_column(BigInteger)
    result: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(60))
    error_message: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
