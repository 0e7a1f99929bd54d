"""payments: inbound webhook deliveries, orders, subscriptions

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

`webhook_deliveries` is the inbox of every inbound callback (payment notifications now,
research callbacks next): one row per (source, delivery key), inserted with ON CONFLICT DO
NOTHING before anything acts on it. `payment_orders` freezes what a checkout charges (amount in
paisa, currency) under a unique `tran_id`; `subscriptions` holds a workspace's paid plan, one per
workspace.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=20)


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("delivery_key", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("handled_at", UTC, nullable=True),
        sa.Column("result", sa.String(length=50), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("source", "delivery_key", name="uq_webhook_deliveries_source_key"),
    )
    op.create_index(
        "ix_webhook_deliveries_unhandled", "webhook_deliveries", ["handled_at", "received_at"]
    )
    op.create_table(
        "payment_orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("kind", _enum("order_kind", "pack", "plan", "seats"), nullable=False),
        sa.Column("item", sa.String(length=50), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=True),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("tran_id", sa.String(length=30), nullable=False),
        sa.Column("gateway", sa.String(length=20), nullable=False),
        sa.Column("session_key", sa.String(length=100), nullable=True),
        sa.Column(
            "state",
            _enum(
                "order_state",
                "pending",
                "paid",
                "held",
                "failed",
                "cancelled",
                "expired",
                "refunded",
            ),
            nullable=False,
        ),
        sa.Column("val_id", sa.String(length=100), nullable=True),
        sa.Column("bank_tran_id", sa.String(length=100), nullable=True),
        sa.Column("risk_level", sa.String(length=5), nullable=True),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        sa.Column("period_start", UTC, nullable=True),
        sa.Column("period_end", UTC, nullable=True),
        sa.Column("paid_at", UTC, nullable=True),
        sa.Column("refund_ref_id", sa.String(length=100), nullable=True),
        sa.Column("refund_status", sa.String(length=30), nullable=True),
        sa.Column("refunded_at", UTC, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payment_orders_amount_positive")),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_payment_orders_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_orders")),
        sa.UniqueConstraint("tran_id", name=op.f("uq_payment_orders_tran_id")),
    )
    op.create_index("ix_payment_orders_workspace", "payment_orders", ["workspace_id", "created_at"])
    op.create_index("ix_payment_orders_state", "payment_orders", ["state", "created_at"])
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("plan", sa.String(length=50), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column(
            "state",
            _enum("subscription_state", "active", "past_due", "cancelled", "expired"),
            nullable=False,
        ),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("current_period_start", UTC, nullable=False),
        sa.Column("current_period_end", UTC, nullable=False),
        sa.Column("next_plan", sa.String(length=50), nullable=True),
        sa.Column("next_seats", sa.Integer(), nullable=True),
        sa.Column("renewal_order_id", sa.Uuid(), nullable=True),
        sa.Column("free_allowance_due", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_subscriptions_workspace_id_workspaces"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("workspace_id", name=op.f("uq_subscriptions_workspace_id")),
    )


def downgrade() -> None:
    op.drop_table("subscriptions")
    op.drop_index("ix_payment_orders_state", table_name="payment_orders")
    op.drop_index("ix_payment_orders_workspace", table_name="payment_orders")
    op.drop_table("payment_orders")
    op.drop_index("ix_webhook_deliveries_unhandled", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
