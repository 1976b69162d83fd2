"""Issue 6: kiosks: device tokens paired with readers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21

- device_tokens: a kiosk's (paired with a reader) or a live screen's (paired with
  a session or a room) credential, stored as the SHA-256 of the token.

Only ADD COLUMN and CREATE TABLE/INDEX on existing tables, so SQLite keeps the
ledger's and the audit log's triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KIND = "kind IN ('kiosk', 'screen')"
TARGET = (
    "(kind = 'kiosk' AND reader_id IS NOT NULL AND session_id IS NULL AND room_id IS NULL)"
    " OR (kind = 'screen' AND reader_id IS NULL"
    " AND (session_id IS NULL) <> (room_id IS NULL))"
)


def upgrade() -> None:
    """Create the device tokens table."""
    op.create_table(
        "device_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("room_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(KIND, name="ck_device_tokens_kind"),
        sa.CheckConstraint(TARGET, name="ck_device_tokens_target"),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["readers.id"], name="fk_device_tokens_reader_id_readers"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_device_tokens_session_id_sessions"
        ),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name="fk_device_tokens_room_id_rooms"),
        sa.PrimaryKeyConstraint("id", name="pk_device_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_device_tokens_token_hash"),
    )
    op.create_index("ix_device_tokens_reader_id", "device_tokens", ["reader_id"])


def downgrade() -> None:
    """Drop the device tokens table."""
    op.drop_index("ix_device_tokens_reader_id", table_name="device_tokens")
    op.drop_table("device_tokens")
