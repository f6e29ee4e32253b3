"""invoice lines: the subscription's billing period a synced line is invoiced with

OpenMeter's line `subscription.billingPeriod` is the subscription's aligned billing period (a daily
item of a monthly subscription shows the month), not the line's own full period. Lines synced
before this migration have none and keep showing their full period.

Revision ID: 0023_line_billing_period
Revises: 0022_balance_inputs_revision
Create Date: 2026-12-05 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_line_billing_period"
down_revision: str | Sequence[str] | None = "0022_balance_inputs_revision"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("subscription_billing_period_start", "subscription_billing_period_end"):
        op.add_column("billing_invoice_lines", sa.Column(column, sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for column in ("subscription_billing_period_start", "subscription_billing_period_end"):
        op.drop_column("billing_invoice_lines", column)
