"""invoices: an index of when they were issued, for the late-usage pass

The late-usage pass corrected only periods that ended within `billing.late_usage_window_s`; a
draft that waited longer than that after its period ended (for approval, or an integrator's sync)
was issued with what its snapshot read, and usage stored after the snapshot was never billed. The
pass now also reads the periods of invoices issued within the window, through this index.

Revision ID: 0025_invoices_issued_index
Revises: 0024_line_usage_subjects
Create Date: 2026-12-06 05:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_invoices_issued_index"
down_revision: str | Sequence[str] | None = "0024_line_usage_subjects"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "billing_invoices_issued",
        "billing_invoices",
        ["issued_at"],
        unique=False,
        postgresql_where=sa.text("issued_at IS NOT NULL AND deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("billing_invoices_issued", table_name="billing_invoices")
