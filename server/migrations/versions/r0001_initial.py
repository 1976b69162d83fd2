"""Initial schema: organisation, members, cards, rooms, readers, sessions, taps, points.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand and checked against the models by a test that compares them
(tests/integration/server/test_migrations.py) on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the enum values as of this revision: a migration must not
# change meaning when the code's enums change later.
CARD_TECHS = ("iso14443a", "iso14443b", "felica", "iso7816")
CARD_STATUSES = ("active", "lost", "revoked", "replaced")
TAP_MODES = ("checkin", "checkout", "kiosk", "enroll")
READER_STATES = ("online", "offline")
ACK_RESULTS = (
    "accepted",
    "duplicate",
    "unknown_card",
    "card_revoked",
    "no_session",
    "not_expected",
    "rejected",
)
ATTENDANCE_STATUSES = ("present", "late", "left_early", "absent", "excused")
LEDGER_SOURCES = ("attendance", "adjustment", "reversal")

BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.func.now()


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _unique_where(name: str, table: str, columns: list[str], condition: str) -> None:
    """A partial unique index, on both backends."""
    op.create_index(
        name,
        table,
        columns,
        unique=True,
        sqlite_where=sa.text(condition),
        postgresql_where=sa.text(condition),
    )


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


SQLITE_LEDGER_TRIGGERS = (
    """CREATE TRIGGER points_ledger_no_update BEFORE UPDATE ON points_ledger
    BEGIN SELECT RAISE(ABORT, 'points_ledger is append-only'); END""",
    """CREATE TRIGGER points_ledger_no_delete BEFORE DELETE ON points_ledger
    BEGIN SELECT RAISE(ABORT, 'points_ledger is append-only'); END""",
)
POSTGRESQL_LEDGER_TRIGGERS = (
    """CREATE FUNCTION points_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'points_ledger is append-only'; END $$""",
    """CREATE TRIGGER points_ledger_no_change BEFORE UPDATE OR DELETE ON points_ledger
    FOR EACH ROW EXECUTE FUNCTION points_ledger_append_only()""",
    """CREATE TRIGGER points_ledger_no_truncate BEFORE TRUNCATE ON points_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION points_ledger_append_only()""",
)


def upgrade() -> None:
    """Create every table, index and the ledger's append-only triggers."""
    op.create_table(
        "org_units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", _when(), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["org_units.id"], name="fk_org_units_parent_id_org_units"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_org_units"),
        sa.UniqueConstraint("code", name="uq_org_units_code"),
    )
    op.create_index("ix_org_units_parent_id", "org_units", ["parent_id"])

    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("employee_no", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("active_from", sa.Date(), nullable=True),
        sa.Column("active_to", sa.Date(), nullable=True),
        sa.Column("created_at", _when(), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "active_to IS NULL OR active_from IS NULL OR active_to >= active_from",
            name="ck_members_active_dates",
        ),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_units.id"], name="fk_members_org_unit_id_org_units"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_members"),
        sa.UniqueConstraint("employee_no", name="uq_members_employee_no"),
    )
    op.create_index("ix_members_org_unit_id", "members", ["org_unit_id"])

    op.create_table(
        "member_org_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=False),
        sa.Column("valid_from", _when(), nullable=False),
        sa.Column("valid_to", _when(), nullable=True),
        sa.CheckConstraint(
            "valid_to IS NULL OR valid_to > valid_from", name="ck_member_org_history_valid_range"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_member_org_history_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["org_unit_id"],
            ["org_units.id"],
            name="fk_member_org_history_org_unit_id_org_units",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_member_org_history"),
    )
    op.create_index(
        "ix_member_org_history_member_id_valid_from",
        "member_org_history",
        ["member_id", "valid_from"],
    )
    _unique_where(
        "uq_member_org_history_open", "member_org_history", ["member_id"], "valid_to IS NULL"
    )

    op.create_table(
        "cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tech", sa.String(16), nullable=False),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", _when(), server_default=NOW, nullable=False),
        sa.Column("status_changed_at", _when(), nullable=True),
        sa.CheckConstraint(_one_of("tech", CARD_TECHS), name="ck_cards_tech"),
        sa.CheckConstraint(_one_of("status", CARD_STATUSES), name="ck_cards_status"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name="fk_cards_member_id_members"),
        sa.PrimaryKeyConstraint("id", name="pk_cards"),
    )
    op.create_index("ix_cards_member_id", "cards", ["member_id"])
    op.create_index("ix_cards_tech_uid", "cards", ["tech", "uid"])
    _unique_where("uq_cards_active_tech_uid", "cards", ["tech", "uid"], "status = 'active'")

    op.create_table(
        "rooms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rooms"),
        sa.UniqueConstraint("code", name="uq_rooms_code"),
    )

    op.create_table(
        "readers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("room_id", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=True),
        sa.Column("last_seen_at", _when(), nullable=True),
        sa.Column("last_status_at", _when(), nullable=True),
        sa.Column("boot_id", sa.Uuid(), nullable=True),
        sa.Column("agent_version", sa.String(200), nullable=True),
        sa.Column("card_source", sa.String(200), nullable=True),
        sa.Column("outbox_depth", sa.Integer(), nullable=True),
        sa.Column("oldest_pending_at", _when(), nullable=True),
        sa.Column("clock_synced", sa.Boolean(), nullable=True),
        sa.Column("skew_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", _when(), server_default=NOW, nullable=False),
        sa.CheckConstraint(_one_of("mode", TAP_MODES), name="ck_readers_mode"),
        sa.CheckConstraint(
            f"state IS NULL OR {_one_of('state', READER_STATES)}", name="ck_readers_state"
        ),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name="fk_readers_room_id_rooms"),
        sa.PrimaryKeyConstraint("id", name="pk_readers"),
        sa.UniqueConstraint("reader_id", name="uq_readers_reader_id"),
    )
    op.create_index("ix_readers_room_id", "readers", ["room_id"])

    op.create_table(
        "activity_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("default_points", sa.Integer(), nullable=False),
        sa.CheckConstraint("default_points >= 0", name="ck_activity_types_points"),
        sa.PrimaryKeyConstraint("id", name="pk_activity_types"),
        sa.UniqueConstraint("code", name="uq_activity_types_code"),
    )

    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("activity_type_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", _when(), nullable=False),
        sa.Column("ends_at", _when(), nullable=False),
        sa.Column("checkin_open_minutes", sa.Integer(), nullable=False),
        sa.Column("late_grace_minutes", sa.Integer(), nullable=False),
        sa.Column("closes_at", _when(), nullable=True),
        sa.Column("allow_walk_in", sa.Boolean(), nullable=False),
        sa.Column("created_at", _when(), server_default=NOW, nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name="ck_sessions_times"),
        sa.CheckConstraint(
            "checkin_open_minutes BETWEEN 0 AND 1440", name="ck_sessions_open_minutes"
        ),
        sa.CheckConstraint("late_grace_minutes >= 0", name="ck_sessions_grace_minutes"),
        sa.ForeignKeyConstraint(
            ["activity_type_id"],
            ["activity_types.id"],
            name="fk_sessions_activity_type_id_activity_types",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_activity_type_id", "sessions", ["activity_type_id"])
    op.create_index("ix_sessions_starts_at", "sessions", ["starts_at"])
    op.create_index("ix_sessions_ends_at", "sessions", ["ends_at"])

    op.create_table(
        "session_rooms",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_session_rooms_session_id_sessions"
        ),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name="fk_session_rooms_room_id_rooms"),
        sa.PrimaryKeyConstraint("session_id", "room_id", name="pk_session_rooms"),
    )
    op.create_index("ix_session_rooms_room_id", "session_rooms", ["room_id"])

    op.create_table(
        "session_audience",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(org_unit_id IS NULL) <> (member_id IS NULL)",
            name="ck_session_audience_unit_or_member",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_session_audience_session_id_sessions"
        ),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_units.id"], name="fk_session_audience_org_unit_id_org_units"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_session_audience_member_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_session_audience"),
    )
    op.create_index("ix_session_audience_session_id", "session_audience", ["session_id"])

    op.create_table(
        "taps",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("reader_id", sa.String(64), nullable=True),
        sa.Column("boot_id", sa.Uuid(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("card_tech", sa.String(16), nullable=True),
        sa.Column("card_uid", sa.String(64), nullable=True),
        sa.Column("occurred_at", _when(), nullable=True),
        sa.Column("received_at", _when(), nullable=False),
        sa.Column("clock_synced", sa.Boolean(), nullable=True),
        sa.Column("mode", sa.String(16), nullable=True),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("card_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.Column("display", sa.JSON(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("raw_payload", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(_one_of("result", ACK_RESULTS), name="ck_taps_result"),
        sa.CheckConstraint(f"mode IS NULL OR {_one_of('mode', TAP_MODES)}", name="ck_taps_mode"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_taps_session_id_sessions"
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name="fk_taps_member_id_members"),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name="fk_taps_card_id_cards"),
        sa.PrimaryKeyConstraint("id", name="pk_taps"),
        sa.UniqueConstraint("event_id", name="uq_taps_event_id"),
    )
    op.create_index("ix_taps_reader_id_received_at", "taps", ["reader_id", "received_at"])
    op.create_index("ix_taps_received_at", "taps", ["received_at"])
    op.create_index("ix_taps_session_id", "taps", ["session_id"])
    op.create_index("ix_taps_member_id", "taps", ["member_id"])

    op.create_table(
        "unknown_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tech", sa.String(16), nullable=False),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("first_seen_at", _when(), nullable=False),
        sa.Column("last_seen_at", _when(), nullable=False),
        sa.Column("tap_count", sa.Integer(), nullable=False),
        sa.Column("last_reader_id", sa.String(64), nullable=True),
        sa.Column("last_mode", sa.String(16), nullable=True),
        sa.Column("resolved_at", _when(), nullable=True),
        sa.CheckConstraint(_one_of("tech", CARD_TECHS), name="ck_unknown_cards_tech"),
        sa.PrimaryKeyConstraint("id", name="pk_unknown_cards"),
        sa.UniqueConstraint("tech", "uid", name="uq_unknown_cards_tech_uid"),
    )

    op.create_table(
        "attendance",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_tap_id", sa.BigInteger(), nullable=True),
        sa.Column("checked_in_at", _when(), nullable=True),
        sa.Column("checkout_tap_id", sa.BigInteger(), nullable=True),
        sa.Column("checked_out_at", _when(), nullable=True),
        sa.Column("created_at", _when(), server_default=NOW, nullable=False),
        sa.CheckConstraint(_one_of("status", ATTENDANCE_STATUSES), name="ck_attendance_status"),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_attendance_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_attendance_session_id_sessions"
        ),
        sa.ForeignKeyConstraint(
            ["first_tap_id"], ["taps.id"], name="fk_attendance_first_tap_id_taps"
        ),
        sa.ForeignKeyConstraint(
            ["checkout_tap_id"], ["taps.id"], name="fk_attendance_checkout_tap_id_taps"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_attendance"),
        sa.UniqueConstraint("member_id", "session_id", name="uq_attendance_member_id_session_id"),
    )
    op.create_index("ix_attendance_session_id", "attendance", ["session_id"])

    op.create_table(
        "points_ledger",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("rule_version", sa.String(64), nullable=False),
        sa.Column("attendance_id", sa.BigInteger(), nullable=True),
        sa.Column("reverses_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("created_at", _when(), server_default=NOW, nullable=False),
        sa.CheckConstraint(_one_of("source", LEDGER_SOURCES), name="ck_points_ledger_source"),
        sa.CheckConstraint(
            "source <> 'attendance' OR attendance_id IS NOT NULL",
            name="ck_points_ledger_attendance_has_id",
        ),
        sa.CheckConstraint(
            "source <> 'reversal' OR reverses_id IS NOT NULL",
            name="ck_points_ledger_reversal_has_id",
        ),
        sa.CheckConstraint(
            "source <> 'adjustment' OR reason IS NOT NULL",
            name="ck_points_ledger_adjustment_reason",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name="fk_points_ledger_member_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["attendance_id"], ["attendance.id"], name="fk_points_ledger_attendance_id_attendance"
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"], ["points_ledger.id"], name="fk_points_ledger_reverses_id_points_ledger"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_points_ledger"),
    )
    op.create_index(
        "ix_points_ledger_member_id_created_at", "points_ledger", ["member_id", "created_at"]
    )
    _unique_where(
        "uq_points_ledger_attendance_credit",
        "points_ledger",
        ["attendance_id"],
        "source = 'attendance'",
    )
    _unique_where(
        "uq_points_ledger_reverses_id", "points_ledger", ["reverses_id"], "reverses_id IS NOT NULL"
    )

    triggers = {"sqlite": SQLITE_LEDGER_TRIGGERS, "postgresql": POSTGRESQL_LEDGER_TRIGGERS}
    for statement in triggers.get(op.get_bind().dialect.name, ()):
        op.execute(statement)


def downgrade() -> None:
    """Drop everything upgrade() created, dependants first."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS points_ledger_no_update")
        op.execute("DROP TRIGGER IF EXISTS points_ledger_no_delete")
    for table in (
        "points_ledger",
        "attendance",
        "unknown_cards",
        "taps",
        "session_audience",
        "session_rooms",
        "sessions",
        "activity_types",
        "readers",
        "rooms",
        "cards",
        "member_org_history",
        "members",
        "org_units",
    ):
        op.drop_table(table)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS points_ledger_append_only()")
