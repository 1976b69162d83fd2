"""When a reader's clock skew was last measured, apart from when it was last heard.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22

A tap's batch wrote the reader's skew only when the tap was newer than the
reader's `last_seen_at`. A status report moves `last_seen_at` too, and a
status received just after a tap can be stored before that tap's batch
commits: the tap then looked old, its skew was dropped, and the worker did not
try again for its touch interval (CI saw a reader an hour behind left with no
skew on record). Skew is measured from taps only, so it is ordered by its own
time: `skew_measured_at`, the arrival time of the tap it came from.

Adding a nullable column: no table rebuild on SQLite, so migration 0009's
triggers stay. Rows from before have no measurement time; their next tap
writes one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "readers", sa.Column("skew_measured_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # Never a rebuild on SQLite: that would drop migration 0009's triggers on readers.
    with op.batch_alter_table("readers", recreate="never") as batch:
        batch.drop_column("skew_measured_at")
