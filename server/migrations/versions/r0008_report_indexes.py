"""Issue 8: indexes for the report queries (rankings, attendance matrix, kiosk lookup).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21

Only CREATE INDEX, so SQLite keeps the ledger's and the audit log's triggers.
"""

from collections.abc import Sequence

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing yet: filled in by the issue's work."""


def downgrade() -> None:
    """Nothing yet: filled in by the issue's work."""
