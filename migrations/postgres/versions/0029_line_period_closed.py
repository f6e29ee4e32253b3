"""invoice lines: whether a line that counts had already closed the line's period (was rated as its
last line, so judged its minimum spend) when its quantity was snapshotted

Late usage of a period with a minimum spend was never billed: a correction is its period's last
line too, and by position it would charge the shortfall a second time. Such a correction is now
rated above what the period's last line charged, and that needs to be known when it is rated.
Lines snapshotted before this column existed are not corrections of such periods (none was made),
so NULL reads as "not closed": they rate as they did.

Revision ID: 0029_line_period_closed
Revises: 0028_billing_worker_marks
Create Date: 2026-12-07 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029_line_period_closed"
down_revision: str | Sequence[str] | None = "0028_billing_worker_marks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("billing_invoice_lines", sa.Column("period_closed", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("billing_invoice_lines", "period_closed")
