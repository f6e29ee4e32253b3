"""invoice lines: the invoicing app's ID of each line (custom invoicing's lineExternalIds)

Revision ID: 0016_line_external_ids
Revises: 0015_change_notifications
Create Date: 2026-12-02 16:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016_line_external_ids"
down_revision: str | Sequence[str] | None = "0015_change_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "billing_invoice_lines", sa.Column("invoicing_external_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("billing_invoice_lines", "invoicing_external_id")
