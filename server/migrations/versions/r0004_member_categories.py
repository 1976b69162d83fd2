"""Issue 4: the configurable member-category list (正式党员, 预备党员 …).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

Only ADD COLUMN and CREATE TABLE/INDEX on existing tables, so SQLite keeps the
ledger's and the audit log's triggers.
"""

from collections.abc import Sequence

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing yet: filled in by the issue's work."""


def downgrade() -> None:
    """Nothing yet: filled in by the issue's work."""
