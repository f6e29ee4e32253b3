"""subscriptions, with one subscription per customer at a time enforced by an exclusion constraint

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-02 11:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("namespace", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("plan_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("plan_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("plan_version", sa.Integer(), nullable=True),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("billing_cadence", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("billing_anchor", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pro_rating", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("settlement_mode", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("active_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("namespace", "id"),
    )
    op.create_index("subscriptions_customer", "subscriptions", ["namespace", "customer_id"])
    op.create_index("subscriptions_plan_key", "subscriptions", ["namespace", "plan_key"])
    op.create_index("subscriptions_updated", "subscriptions", ["updated_at"])
    # The database decides "one subscription per customer at a time": two overlapping live
    # subscriptions of one customer cannot both commit, however the requests interleave.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(
        "ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_one_at_a_time EXCLUDE USING gist "
        "(namespace WITH =, customer_id WITH =, tstzrange(active_from, active_to, '[)') WITH &&) "
        "WHERE (deleted_at IS NULL)"
    )


def downgrade() -> None:
    op.drop_table("subscriptions")
