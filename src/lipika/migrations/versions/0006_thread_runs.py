"""thread runs and privacy: the run lease on the thread row (replacing the Redis lock), and
each thread's visibility

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01

Existing threads become private to their creator, the rule from now on. The server defaults
stay, so a process of the previous release still inserts threads during a rolling deploy.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "visibility",
                sa.Enum(
                    "private",
                    "workspace",
                    name="thread_visibility",
                    native_enum=False,
                    length=20,
                ),
                server_default="private",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("run_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("run_owner", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("run_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("run_fence", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.create_index("ix_threads_run_owner", ["run_owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.drop_index("ix_threads_run_owner")
        batch_op.drop_column("run_fence")
        batch_op.drop_column("run_expires_at")
        batch_op.drop_column("run_owner")
        batch_op.drop_column("run_id")
        batch_op.drop_column("visibility")
