"""billing: index of invoice lines by subscription (the subscription sync reads them)

Revision ID: 0013_subscription_lines
Revises: 0012_invoices
Create Date: 2026-12-02 15:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_subscription_lines"
down_revision: str | Sequence[str] | None = "0012_invoices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "billing_invoice_lines_subscription",
        "billing_invoice_lines",
        ["namespace", "subscription_id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL AND subscription_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "billing_invoice_lines_subscription",
        table_name="billing_invoice_lines",
        postgresql_where=sa.text("deleted_at IS NULL AND subscription_id IS NOT NULL"),
    )
