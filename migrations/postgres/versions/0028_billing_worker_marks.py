"""billing worker marks: when the last late-usage read began

Late usage is read for the periods that ended, or whose invoice was issued, within the late-usage
window. The window ran back from now, so a billing worker stopped for longer than the window never
read the usage stored meanwhile for the periods that left it while it was down: billable usage
lost without a word. The read now looks back from the last read that finished, kept here so a
restarted worker knows it.

A database that has issued invoices starts with a mark at the migration's time, as if a read had
just finished: its worker goes on from where it was (reading periods the old window had left
would bill long-settled usage). A new one starts with none, and a read with no mark reads every
issued period, so a worker that first runs long after the first invoices still reads them all.

Revision ID: 0028_billing_worker_marks
Revises: 0027_line_netted_of
Create Date: 2026-12-07 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028_billing_worker_marks"
down_revision: str | Sequence[str] | None = "0027_line_netted_of"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_worker_marks",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        "INSERT INTO billing_worker_marks (name, at) SELECT 'late_usage_read', now()"
        " WHERE EXISTS (SELECT 1 FROM billing_invoices WHERE issued_at IS NOT NULL)"
    )


def downgrade() -> None:
    op.drop_table("billing_worker_marks")
