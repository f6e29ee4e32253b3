"""invoice void reason

Revision ID: 0014_void_reason
Revises: 0013_subscription_lines
Create Date: 2026-12-02 15:25:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014_void_reason"
down_revision: str | Sequence[str] | None = "0013_subscription_lines"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("billing_invoices", sa.Column("void_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    op.drop_column("billing_invoices", "void_reason")
