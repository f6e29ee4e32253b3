"""scheduled entitlements: one (customer, feature key) may hold several live entitlements whose
active windows follow each other, so the unique partial index gives way to a plain one (the
repository refuses overlapping windows under an advisory lock)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(
        "entitlements_live_customer_feature",
        table_name="entitlements",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "entitlements_customer_feature_key", "entitlements", ["namespace", "customer_id", "feature_key"], unique=False
    )


def downgrade() -> None:
    op.drop_index("entitlements_customer_feature_key", table_name="entitlements")
    op.create_index(
        "entitlements_live_customer_feature",
        "entitlements",
        ["namespace", "customer_id", "feature_id"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
