"""invoice lines: what a void did with each line (discarded, or billed again)

A void takes OpenMeter's per-line action: `discard` (forgiven: a usage line's quantity still
counts as billed for its period key, so no later line of the period bills it again) or `pending`
(billed again: the line no longer counts, and a copy goes back to the gathering invoice). NULL
counts as discarded (a void the invoicing app reports).

A subscription's line put back to be billed again gives up its item's place, which the sync fills
again: the unique index of (namespace, sync key, period start) leaves pending lines out.

Lines of invoices voided before this migration keep what they did. A subscription's lines held
their items' places and their fees were forgiven: they become `discard` (marked `pending` they
would be made again by the next sync, billing the customer for an invoice voided long ago); their
usage, which stopped counting, now counts as forgiven, so a later part of such a period bills only
what lies beyond it (before, it billed the voided usage again). Other
lines stopped counting as billed (their usage billed again only by a later line of the period):
they become `pending`, which keeps that, and no copy is made of them.

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
        "UPDATE billing_invoice_lines l"
        " SET void_action = CASE WHEN l.subscription_id IS NULL THEN 'pending' ELSE 'discard' END"
        " FROM billing_invoices i WHERE i.namespace = l.namespace AND i.id = l.invoice_id AND i.status = 'voided'"
    )
    _sync_key_index(_HELD)


def downgrade() -> None:
    _sync_key_index(_HELD_BEFORE)
    op.drop_column("billing_invoice_lines", "void_action")


_HELD_BEFORE = "deleted_at IS NULL AND sync_key IS NOT NULL"
_HELD = f"{_HELD_BEFORE} AND (void_action IS NULL OR void_action <> 'pending')"


def _sync_key_index(where: str) -> None:
    op.drop_index("billing_invoice_lines_sync_key", table_name="billing_invoice_lines")
    op.create_index(
        "billing_invoice_lines_sync_key",
        "billing_invoice_lines",
        ["namespace", "sync_key", "period_start"],
        unique=True,
        postgresql_where=sa.text(where),
    )
