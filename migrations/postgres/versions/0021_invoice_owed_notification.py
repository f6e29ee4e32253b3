"""billing_invoices: the notification a write owes until its listeners were told

A write that creates or moves a standard invoice records, in its own transaction, that an
invoice.created / invoice.updated notification is owed; telling the listeners after the commit
clears it. One left behind (the process died between the two, or a listener failed) is told by the
billing worker's pass. Rows written before this revision owe nothing.

Revision ID: 0021_invoice_owed_notification
Revises: 0020_sub_entitlements_revision
Create Date: 2026-12-05 04:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_invoice_owed_notification"
down_revision: str | Sequence[str] | None = "0020_sub_entitlements_revision"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("billing_invoices", sa.Column("notification_owed", sa.String(), nullable=True))
    op.add_column("billing_invoices", sa.Column("notification_owed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "billing_invoices_notification_owed",
        "billing_invoices",
        ["notification_owed_at"],
        postgresql_where=sa.text("notification_owed IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("billing_invoices_notification_owed", table_name="billing_invoices")
    op.drop_column("billing_invoices", "notification_owed_at")
    op.drop_column("billing_invoices", "notification_owed")
