"""change notifications: entity writes notify listening api processes when they commit

Revision ID: 0015_change_notifications
Revises: 0014_void_reason
Create Date: 2026-12-02 16:00:00.000000

Triggers, so every write notifies whatever process or path made it, and only once it commits
(Postgres delivers a NOTIFY at commit, never for a rolled-back transaction). Channels:
- tally_entities (payload: the table): customers, subjects, features, meters and entitlements;
- tally_entitlements (payload: namespace, a space, entitlement ID): grants and usage resets.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_change_notifications"
down_revision: str | Sequence[str] | None = "0014_void_reason"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTITY_TABLES = ("customers", "customer_subjects", "subjects", "features", "meters", "entitlements")
ENTITLEMENT_TABLES = ("grants", "usage_resets")


def upgrade() -> None:
    op.execute(
        "CREATE FUNCTION tally_notify_entities() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('tally_entities', TG_TABLE_NAME); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE FUNCTION tally_notify_entitlement() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN "
        "IF TG_OP = 'DELETE' THEN PERFORM pg_notify('tally_entitlements', OLD.namespace || ' ' || OLD.entitlement_id); "
        "ELSE PERFORM pg_notify('tally_entitlements', NEW.namespace || ' ' || NEW.entitlement_id); END IF; "
        "RETURN NULL; END $$"
    )
    for table in ENTITY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION tally_notify_entities()"
        )
    for table in ENTITLEMENT_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tally_notify_entitlement()"
        )


def downgrade() -> None:
    for table in ENTITY_TABLES + ENTITLEMENT_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify ON {table}")
    op.execute("DROP FUNCTION IF EXISTS tally_notify_entities()")
    op.execute("DROP FUNCTION IF EXISTS tally_notify_entitlement()")
