"""The master key version a card has proved it holds, apart from the one last issued.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22

`rollcall cards personalise-key` recorded the card under the new version when
it made the key file, before anyone wrote the key to the card. A card whose
write then failed (taken off the reader, another applet) still held its old
key, was checked against the new one only, and was refused as a suspected
clone in every strong-tier room. A strong tap is now checked against the
version the card last proved, then the one last issued, then the keyring's
others, and the version that answered is kept here: `rollcall cards keys`
counts cards by it, which tells when an old master key line can be dropped.

Adding nullable columns: no table rebuild on SQLite. Rows from before have
proved nothing yet; their card's next strong tap fills them in.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("card_keys", sa.Column("proven_version", sa.Integer(), nullable=True))
    op.add_column("card_keys", sa.Column("proven_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("card_keys", recreate="never") as batch:
        batch.drop_column("proven_at")
        batch.drop_column("proven_version")
