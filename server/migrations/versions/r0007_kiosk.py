"""Issue 6: kiosks: device tokens paired with readers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21

Only ADD COLUMN and CREATE TABLE/INDEX on existing tables, so SQLite keeps the
ledger's and the audit log's triggers.
"""

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing yet: filled in by the issue's work."""


def downgrade() -> None:
    """Nothing yet: filled in by the issue's work."""
