"""Issue 7: the strong card tier: per-card key state, where it is required, clones.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

Only ADD COLUMN and CREATE TABLE/INDEX on existing tables, so SQLite keeps the
ledger's and the audit log's triggers.
"""

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing yet: filled in by the issue's work."""


def downgrade() -> None:
    """Nothing yet: filled in by the issue's work."""
