"""invoice lines: what a void did with each line (discarded, or billed again)

A void takes OpenMeter's per-line action: `discard` (forgiven: a usage line's quantity still
counts as billed for its period key, so no later line of the period bills it again) or `pending`
(billed again: the line no longer counts, and a copy goes back to the gathering invoice). NULL
counts as discarded (a void the invoicing app reports). Lines of invoices voided before this
migration stopped counting, as voided lines did then: they become `pending`, which keeps what
their periods' later lines bill as it was.

Revision ID: 0026_line_void_action
Revises: 0025_invoices_issued_index
Create Date: 2026-12-06 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026_line_void_action"
down_revision: str | Sequence[str] | None = "0025_invoices_issued_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("billing_invoice_lines", sa.Column("void_action", sa.String(), nullable=True))
    op.execute(
        "UPDATE billing_invoice_lines l SET void_action = 'pending' FROM billing_invoices i"
        " WHERE i.namespace = l.namespace AND i.id = l.invoice_id AND i.status = 'voided'"
    )


def downgrade() -> None:
    op.drop_column("billing_invoice_lines", "void_action")
