"""Rules and closing: series, frozen rosters, leave, rule versions, publications, re-credits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-01

- activity_types.category: the cap category of an activity type;
- sessions: check-out requirement and minimum stay, recurrence rule, cancellation,
  roster freezing and closing times;
- session_series / series_sessions: sessions whose occurrences are interchangeable;
- session_roster: the expected members, frozen from the membership at the start;
- leave_requests: 请假, with the approver;
- points_rule_versions: versioned points rules with effective dates (JSON body);
- publications: quarterly figures, frozen;
- points_ledger.credit_seq: an attendance may be credited again after a reversal;
  the unique index moves from (attendance_id) to (attendance_id, credit_seq), so
  the tap-time credit (seq 0) still happens once whatever the race.

Only ADD COLUMN is used on existing tables, so SQLite keeps the ledger's triggers.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEAVE_STATUSES = ("pending", "approved", "rejected")
NOW = sa.func.now()


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _unique_where(name: str, table: str, columns: list[str], condition: str) -> None:
    op.create_index(
        name,
        table,
        columns,
        unique=True,
        sqlite_where=sa.text(condition),
        postgresql_where=sa.text(condition),
    )


def upgrade() -> None:
    """Add the tables and columns of the full attendance and points rules."""
    op.add_column(
        "activity_types",
        sa.Column("category", sa.String(32), server_default="general", nullable=False),
    )
    for column in (
        sa.Column("requires_checkout", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("min_stay_minutes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("recurrence_rule", sa.String(200), nullable=True),
        sa.Column("cancelled_at", _when(), nullable=True),
        sa.Column("cancel_reason", sa.String(200), nullable=True),
        sa.Column("roster_frozen_at", _when(), nullable=True),
        sa.Column("closed_at", _when(), nullable=True),
    ):
        op.add_column("sessions", column)
    op.add_column(
        "points_ledger",
        sa.Column("credit_seq", sa.Integer(), server_default="0", nullable=False),
    )
    op.drop_index("uq_points_ledger_attendance_credit", table_name="points_ledger")
    _unique_where(
        "uq_points_ledger_attendance_credit",
        "points_ledger",
        ["attendance_id", "credit_seq"],
        "source = 'attendance'",
    )

    op.create_table(
        "session_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("activity_type_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _when(), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_type_id"],
            ["activity_types.id"],
            name="fk_session_series_activity_type_id_activity_types",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_session_series"),
    )
    op.create_table(
        "series_sessions",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_series_sessions_session_id_sessions"
        ),
        sa.ForeignKeyConstraint(
            ["series_id"], ["session_series.id"], name="fk_series_sessions_series_id_session_series"
        ),
        sa.PrimaryKeyConstraint("session_id", name="pk_series_sessions"),
    )
    op.create_index("ix_series_sessions_series_id", "series_sessions", ["series_id"])
    op.create_table(
        "session_roster",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_session_roster_session_id_sessions"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_session_roster_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_units.id"], name="fk_session_roster_org_unit_id_org_units"
        ),
        sa.PrimaryKeyConstraint("session_id", "member_id", name="pk_session_roster"),
    )
    op.create_index("ix_session_roster_member_id", "session_roster", ["member_id"])
    op.create_table(
        "leave_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("approver", sa.String(100), nullable=True),
        sa.Column("decided_at", _when(), nullable=True),
        sa.Column("created_at", _when(), server_default=NOW, nullable=False),
        sa.CheckConstraint(_one_of("status", LEAVE_STATUSES), name="ck_leave_requests_status"),
        sa.CheckConstraint(
            "status = 'pending' OR approver IS NOT NULL", name="ck_leave_requests_decided_by"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_leave_requests_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_leave_requests_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_leave_requests"),
        sa.UniqueConstraint(
            "member_id", "session_id", name="uq_leave_requests_member_id_session_id"
        ),
    )
    op.create_index("ix_leave_requests_session_id", "leave_requests", ["session_id"])
    op.create_table(
        "points_rule_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", _when(), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_points_rule_versions"),
        sa.UniqueConstraint("version", name="uq_points_rule_versions_version"),
        sa.UniqueConstraint("effective_from", name="uq_points_rule_versions_effective_from"),
    )
    op.create_table(
        "publications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("published_at", _when(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_units.id"], name="fk_publications_org_unit_id_org_units"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_publications"),
        sa.UniqueConstraint("period", "org_unit_id", name="uq_publications_period_org_unit_id"),
    )


def downgrade() -> None:
    """Drop what upgrade() added; the ledger keeps its rows but loses re-credit numbers."""
    for table in (
        "publications",
        "points_rule_versions",
        "leave_requests",
        "session_roster",
        "series_sessions",
        "session_series",
    ):
        op.drop_table(table)
    op.drop_index("uq_points_ledger_attendance_credit", table_name="points_ledger")
    _unique_where(
        "uq_points_ledger_attendance_credit",
        "points_ledger",
        ["attendance_id"],
        "source = 'attendance'",
    )
    with op.batch_alter_table("points_ledger", recreate="never") as batch:
        batch.drop_column("credit_seq")
    with op.batch_alter_table("sessions", recreate="never") as batch:
        for name in (
            "closed_at",
            "roster_frozen_at",
            "cancel_reason",
            "cancelled_at",
            "recurrence_rule",
            "min_stay_minutes",
            "requires_checkout",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("activity_types", recreate="never") as batch:
        batch.drop_column("category")
