"""invoice lines: indexes whose choice cannot make the billing worker's reads quadratic

`billing_invoice_lines_parent` covered every line, so `parent_line_id IS NULL` could be answered
from it: without table statistics (a table filled by one sync pass before any ANALYZE) the planner
took it for "a subscription's lines" and for the late-usage check, scanning every top-level line of
the namespace once per subscription or per line. It now holds detailed lines only (what it is for:
a parent's children). `billing_invoice_lines_usage_ended` lets the late-usage pass read the usage
lines whose period ended recently instead of every usage line ever billed.

Revision ID: 0017_line_plan_indexes
Revises: 0016_line_external_ids
Create Date: 2026-12-03 09:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_line_plan_indexes"
down_revision: str | Sequence[str] | None = "0016_line_external_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("billing_invoice_lines_parent", table_name="billing_invoice_lines")
    op.create_index(
        "billing_invoice_lines_parent",
        "billing_invoice_lines",
        ["namespace", "parent_line_id"],
        unique=False,
        postgresql_where=sa.text("parent_line_id IS NOT NULL"),
    )
    op.create_index(
        "billing_invoice_lines_usage_ended",
        "billing_invoice_lines",
        ["period_end"],
        unique=False,
        postgresql_where=sa.text(
            "type = 'usage_based' AND period_key IS NOT NULL AND parent_line_id IS NULL AND deleted_at IS NULL"
        ),
    )


def downgrade() -> None:
    op.drop_index("billing_invoice_lines_usage_ended", table_name="billing_invoice_lines")
    op.drop_index("billing_invoice_lines_parent", table_name="billing_invoice_lines")
    op.create_index(
        "billing_invoice_lines_parent", "billing_invoice_lines", ["namespace", "parent_line_id"], unique=False
    )
