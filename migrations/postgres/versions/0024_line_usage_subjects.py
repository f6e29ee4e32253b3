"""invoice lines: the event subjects a late-usage correction counts

A late-usage correction bills more usage of a period an issued invoice billed, for the subjects
that invoice copied from its customer; it is invoiced later, on an invoice that copies the
customer as it is then, so the line keeps the subjects it counts. NULL: the line counts its own
invoice's (every line but a correction; corrections made before this migration too).

Revision ID: 0024_line_usage_subjects
Revises: 0023_line_billing_period
Create Date: 2026-12-06 04:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0024_line_usage_subjects"
down_revision: str | Sequence[str] | None = "0023_line_billing_period"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("billing_invoice_lines", sa.Column("usage_subjects", JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("billing_invoice_lines", "usage_subjects")
