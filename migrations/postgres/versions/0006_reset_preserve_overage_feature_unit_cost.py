"""a reset records the preserveOverage it was asked for (NULL on older resets: the entitlement's
setting applies); features carry OpenMeter's optional unitCost

Revision ID: 0006
Revises: 0005_billing
Create Date: 2026-12-02 11:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("usage_resets", sa.Column("preserve_overage", sa.Boolean(), nullable=True))
    op.add_column("features", sa.Column("unit_cost", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("features", "unit_cost")
    op.drop_column("usage_resets", "preserve_overage")
