"""gateway: stored answers of idempotency keys; API keys with an expiry, allowed models and a
credit budget

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Existing API keys get no expiry, every model and no budget: they work as before. On
PostgreSQL, `lipika_extend` (0007) grows a key's spend counter (`keyspend:<key>`) with its hold,
uncapped: a key's budget is checked at admission, not against the plan's daily cap.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_MEMBER_BRANCH = """            IF starts_with(e ->> 0, 'member:') THEN
                v_cap := v_member_cap;"""
_KEY_BRANCH = """            IF starts_with(e ->> 0, 'keyspend:') THEN
                v_cap := NULL;
            ELSIF starts_with(e ->> 0, 'member:') THEN
                v_cap := v_member_cap;"""


def _extend_0007() -> str:
    path = Path(__file__).with_name("0007_metering_core.py")
    spec = importlib.util.spec_from_file_location("lipika_migration_0007", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sql = module.EXTEND.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    assert _MEMBER_BRANCH in sql
    return sql


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_extend_0007().replace(_MEMBER_BRANCH, _KEY_BRANCH))
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=120), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "in_flight",
                "done",
                "streamed",
                name="idempotency_state",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("claim", sa.Uuid(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("scope", "key", name="uq_idempotency_keys_scope_key"),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("credit_budget", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_extend_0007())
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("credit_budget")
        batch_op.drop_column("allowed_models")
        batch_op.drop_column("expires_at")
    op.drop_index("ix_idempotency_keys_expires_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
