"""invoice lines: whether a line that counts had already started the line's period when its
quantity was snapshotted (a graduated price's first-tier flat fee is due once per period)

Revision ID: 0018_line_period_started
Revises: 0017_line_plan_indexes
Create Date: 2026-12-04 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_line_period_started"
down_revision: str | Sequence[str] | None = "0017_line_plan_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("billing_invoice_lines", sa.Column("period_started", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("billing_invoice_lines", "period_started")
