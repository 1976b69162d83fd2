"""Issue 7: the strong card tier: per-card key state, where it is required, clones.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

- card_keys: a card personalised with its diversified key, and the master key
  version it was made under (the key itself is never stored);
- strong_tier_rooms / strong_tier_activity_types: where only cards that answer
  their challenge may check in;
- suspected_clones: the inbox of cards refused there;
- taps.card_tier: how the tap's card proved itself (uid, strong, failed).

Only ADD COLUMN and CREATE TABLE/INDEX on existing tables, so SQLite keeps the
ledger's and the audit log's triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the strong-tier tables and the taps' card_tier column."""
    op.create_table(
        "card_keys",
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("personalised_at", AWARE, nullable=False),
        sa.Column("personalised_by", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name="fk_card_keys_card_id_cards"),
        sa.PrimaryKeyConstraint("card_id", name="pk_card_keys"),
    )
    op.create_table(
        "strong_tier_rooms",
        sa.Column("room_id", sa.Integer(), nullable=False),
        sa.Column("required_since", AWARE, nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name="fk_strong_tier_rooms_room_id_rooms"
        ),
        sa.PrimaryKeyConstraint("room_id", name="pk_strong_tier_rooms"),
    )
    op.create_table(
        "strong_tier_activity_types",
        sa.Column("activity_type_id", sa.Integer(), nullable=False),
        sa.Column("required_since", AWARE, nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_type_id"],
            ["activity_types.id"],
            name="fk_strong_tier_activity_types_activity_type_id_activity_types",
        ),
        sa.PrimaryKeyConstraint("activity_type_id", name="pk_strong_tier_activity_types"),
    )
    op.create_table(
        "suspected_clones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("tech", sa.String(16), nullable=False),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("first_seen_at", AWARE, nullable=False),
        sa.Column("last_seen_at", AWARE, nullable=False),
        sa.Column("tap_count", sa.Integer(), nullable=False),
        sa.Column("last_reader_id", sa.String(64), nullable=True),
        sa.Column("last_reason", sa.String(200), nullable=True),
        sa.Column("resolved_at", AWARE, nullable=True),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name="fk_suspected_clones_card_id_cards"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_suspected_clones"),
        sa.UniqueConstraint("card_id", name="uq_suspected_clones_card_id"),
    )
    op.add_column("taps", sa.Column("card_tier", sa.String(8), nullable=True))


def downgrade() -> None:
    """Drop the strong-tier tables and the taps' card_tier column."""
    with op.batch_alter_table("taps", recreate="never") as batch:
        batch.drop_column("card_tier")
    for table in (
        "suspected_clones",
        "strong_tier_activity_types",
        "strong_tier_rooms",
        "card_keys",
    ):
        op.drop_table(table)
