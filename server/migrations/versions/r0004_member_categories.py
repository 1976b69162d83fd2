"""Issue 4: the configurable member-category list (正式党员, 预备党员 …).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

- member_categories: the categories a member may have, by name, in display
  order; seeded with 正式党员, 预备党员, 入党积极分子, 群众 and every other
  category members already hold, so no existing member falls outside the list.
  `members.category` keeps the name (no foreign key: adding one would rebuild
  the members table on SQLite); the services check it against this list.

Only CREATE TABLE is used, so SQLite keeps the ledger's and the audit log's triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEEDED = ("正式党员", "预备党员", "入党积极分子", "群众")


def upgrade() -> None:
    """Create the category list and seed it."""
    categories = op.create_table(
        "member_categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_member_categories"),
        sa.UniqueConstraint("name", name="uq_member_categories_name"),
    )
    in_use = [
        name
        for (name,) in op.get_bind().execute(
            sa.text("SELECT DISTINCT category FROM members ORDER BY category")
        )
        if name not in SEEDED
    ]
    op.bulk_insert(
        categories,
        [{"name": name, "position": n} for n, name in enumerate((*SEEDED, *in_use), start=1)],
    )


def downgrade() -> None:
    """Drop the category list; members keep their category names."""
    op.drop_table("member_categories")
