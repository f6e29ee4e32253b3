"""apps: the description OpenMeter's AppReplaceUpdate sets

Revision ID: 0019_app_description
Revises: 0018_line_period_started
Create Date: 2026-12-04 21:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0019_app_description"
down_revision: str | Sequence[str] | None = "0018_line_period_started"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("apps", sa.Column("description", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    op.drop_column("apps", "description")
