"""Issue 8: a change counter for the reference data the tap path reads on every batch.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21

The ingest reads readers, rooms, sessions (with their rooms and audiences),
activity types, rule versions, the strong-tier requirements and the org tree
for every batch of taps: half of a batch's statements, for data that changes a
few times a day. `reference_generation` is one row whose `generation` the
triggers below raise in the same transaction as any change to those tables, so
an ingest worker can keep what it read and check one integer per batch instead
(`server/services/reference.py`). On `readers` only the columns the tap path
reads as reference trigger it (room, mode, signing key): every batch updates
`last_seen_at`, and the signing position is read fresh.

Only CREATE TABLE and CREATE TRIGGER, so SQLite keeps its other triggers. A
later migration that makes SQLite rebuild one of these tables drops its
triggers with it: the cache checks they are all there before trusting them, and
`tests/integration/server/test_migrations.py` checks them at head.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Table → the columns whose UPDATE counts (None: any change).
WATCHED: dict[str, tuple[str, ...] | None] = {
    "readers": ("room_id", "mode", "sign_key"),
    "rooms": None,
    "sessions": None,
    "session_rooms": None,
    "session_audience": None,
    "activity_types": None,
    "points_rule_versions": None,
    "strong_tier_rooms": None,
    "strong_tier_activity_types": None,
    "org_units": None,
}
_BUMP = "UPDATE reference_generation SET generation = generation + 1 WHERE id = 1"


def _sqlite_triggers(table: str, columns: tuple[str, ...] | None) -> list[str]:
    update = f"UPDATE OF {', '.join(columns)}" if columns else "UPDATE"
    return [
        f"CREATE TRIGGER reference_bump_{table}_{name} AFTER {event} ON {table} BEGIN {_BUMP}; END"
        for name, event in (("insert", "INSERT"), ("update", update), ("delete", "DELETE"))
    ]


def _postgresql_triggers(table: str, columns: tuple[str, ...] | None) -> list[str]:
    update = f"UPDATE OF {', '.join(columns)}" if columns else "UPDATE"
    return [
        f"CREATE TRIGGER reference_bump_{table} AFTER INSERT OR {update} OR DELETE OR TRUNCATE "
        f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION reference_bump()"
    ]


def upgrade() -> None:
    """Create the counter row and the triggers that raise it."""
    op.create_table(
        "reference_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"),
        sa.CheckConstraint("id = 1", name="ck_reference_generation_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_reference_generation"),
    )
    op.execute("INSERT INTO reference_generation (id, generation) VALUES (1, 0)")
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(
            "CREATE FUNCTION reference_bump() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {_BUMP}; RETURN NULL; END $$"
        )
    for table, columns in WATCHED.items():
        statements = (
            _postgresql_triggers(table, columns) if postgresql else _sqlite_triggers(table, columns)
        )
        for statement in statements:
            op.execute(statement)


def downgrade() -> None:
    """Drop the triggers, their function and the counter."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in WATCHED:
        if postgresql:
            op.execute(f"DROP TRIGGER reference_bump_{table} ON {table}")
        else:
            for name in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER reference_bump_{table}_{name}")
    if postgresql:
        op.execute("DROP FUNCTION reference_bump()")
    op.drop_table("reference_generation")
