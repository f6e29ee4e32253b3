"""entitlements: a revision of the balance's inputs, so a stale snapshot is never saved

Every grant, void and reset counts itself here in the transaction that drops the balance snapshots
it outdates (before, the drop was a second transaction: a crash or a failure between the two left
snapshots that ignored the write). A snapshot is saved only while the revision is the one its
computation read, so a computation that read the inputs before such a write cannot save a snapshot
after the drop.

Revision ID: 0022_balance_inputs_revision
Revises: 0021_invoice_owed_notification
Create Date: 2026-12-05 05:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_balance_inputs_revision"
down_revision: str | Sequence[str] | None = "0021_invoice_owed_notification"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "entitlements",
        sa.Column("balance_inputs_revision", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("entitlements", "balance_inputs_revision")
