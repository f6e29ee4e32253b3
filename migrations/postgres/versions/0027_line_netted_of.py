"""invoice lines: the credit a subscription's flat fee was billed net of

A subscription's flat fee is billed net of what earlier lines charged for its time (a plan
change's successor, a later version of its item). When one of those lines is voided, the fee
bills what the void took back as a balance line. That can never be more than the fee was netted
of when it was made: a fee billed whole (a workflow that bills the period a subscription ends in
whole, say) owes no balance, whatever a void does to the lines before it. The sync records the
credit on each flat-fee line it makes; lines made before this migration keep NULL (not known),
and their balances are capped by the rest of the rule alone, as before.

Revision ID: 0027_line_netted_of
Revises: 0026_line_void_action
Create Date: 2026-12-06 23:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_line_netted_of"
down_revision: str | Sequence[str] | None = "0026_line_void_action"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("billing_invoice_lines", sa.Column("netted_of", sa.Numeric(), nullable=True))


def downgrade() -> None:
    op.drop_column("billing_invoice_lines", "netted_of")
