"""Audit chain and message signing: the append-only `audit_log`, per-reader signing keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

- audit_log: who did what to what, each row carrying the SHA-256 of the previous
  row (`prev_hash`) and its own (`hash`); triggers refuse UPDATE, DELETE (and
  TRUNCATE on PostgreSQL), as they do for the points ledger. `prev_hash` is
  unique, so two writers can never fork the chain from the same row;
- readers.sign_key: the reader's HMAC key (hex) when its taps must be signed;
- readers.last_boot_id / last_seq: the newest (boot, seq) accepted from it, to
  refuse replays.

Only ADD COLUMN is used on existing tables, so SQLite keeps the ledger's triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SQLITE_AUDIT_TRIGGERS = (
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
)
POSTGRESQL_AUDIT_TRIGGERS = (
    """CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    """CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""",
)


def upgrade() -> None:
    """Create the audit log with its triggers; add the signing columns to readers."""
    op.create_table(
        "audit_log",
        # Numbered by record_audit under its lock, since the number is hashed.
        sa.Column("id", BIG_KEY, autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
    )
    triggers = (
        POSTGRESQL_AUDIT_TRIGGERS
        if op.get_bind().dialect.name == "postgresql"
        else SQLITE_AUDIT_TRIGGERS
    )
    for statement in triggers:
        op.execute(statement)
    op.add_column("readers", sa.Column("sign_key", sa.String(128), nullable=True))
    op.add_column("readers", sa.Column("last_boot_id", sa.Uuid(), nullable=True))
    op.add_column("readers", sa.Column("last_seq", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop the audit log (its rows with it) and the signing columns."""
    with op.batch_alter_table("readers", recreate="never") as batch:
        for name in ("last_seq", "last_boot_id", "sign_key"):
            batch.drop_column(name)
    op.drop_table("audit_log")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_log_append_only()")
