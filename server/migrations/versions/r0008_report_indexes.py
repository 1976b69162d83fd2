"""Issue 8: indexes for the report queries (rankings, attendance matrix, kiosk lookup).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21

Only CREATE INDEX, so SQLite keeps the ledger's and the audit log's triggers.
Measured with bench/reports.py (10,000 members, a year of sessions, 1,000,000
taps): see docs/benchmarks.md.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index ledger entries by attendance and unlinked ones by time; rosters by org unit."""
    # Points in a period walk sessions → attendance → ledger entries of that attendance.
    op.create_index("ix_points_ledger_attendance_id", "points_ledger", ["attendance_id"])
    # Adjustments (no attendance) count when made: a small partial index.
    op.create_index(
        "ix_points_ledger_unlinked_created_at",
        "points_ledger",
        ["created_at"],
        sqlite_where=sa.text("attendance_id IS NULL"),
        postgresql_where=sa.text("attendance_id IS NULL"),
    )
    # A branch's expected attendance in a period (matrix, monthly star, benchmarks).
    op.create_index(
        "ix_session_roster_org_unit_id_session_id", "session_roster", ["org_unit_id", "session_id"]
    )


def downgrade() -> None:
    """Drop the report indexes."""
    op.drop_index("ix_session_roster_org_unit_id_session_id", table_name="session_roster")
    op.drop_index("ix_points_ledger_unlinked_created_at", table_name="points_ledger")
    op.drop_index("ix_points_ledger_attendance_id", table_name="points_ledger")
