"""subscriptions: the revision whose managed entitlements were last reconciled

A write stores the subscription and then reconciles its entitlements, in two steps; a row whose
entitlements revision differs from its revision is one the billing worker reconciles again. Rows
written before this revision were reconciled by their writes (the column starts equal).

Revision ID: 0020_sub_entitlements_revision
Revises: 0019_app_description
Create Date: 2026-12-04 23:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_sub_entitlements_revision"
down_revision: str | Sequence[str] | None = "0019_app_description"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("entitlements_revision", sa.Integer(), nullable=True))
    op.execute("UPDATE subscriptions SET entitlements_revision = revision")
    op.create_index(
        "subscriptions_entitlements_pending",
        "subscriptions",
        ["updated_at"],
        postgresql_where=sa.text("entitlements_revision IS DISTINCT FROM revision"),
    )


def downgrade() -> None:
    op.drop_index("subscriptions_entitlements_pending", table_name="subscriptions")
    op.drop_column("subscriptions", "entitlements_revision")
