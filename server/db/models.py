"""SQLAlchemy models of every table; the schema itself is made by the Alembic migrations.

Rules the database enforces, so that several ingest workers can never disagree:
- `taps.event_id` is unique: a tap is recorded once, whoever receives it;
- `attendance (member_id, session_id)` is unique: one attendance per member per session;
- `points_ledger (attendance_id, credit_seq)` is unique among attendance credits: the
  tap-time credit (seq 0) happens once; a re-credit after a reversal takes the next seq;
- `cards (tech, uid)` is unique among active cards (a partial index);
- `points_ledger` is append-only (triggers in the migration refuse UPDATE and DELETE).
"""

import uuid
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from protocol import AckResult, CardTech, ReaderState, TapMode
from server.db.types import BigIntKey, UtcDateTime
from server.domain.attendance import AttendanceStatus
from server.domain.cards import CardStatus
from server.domain.closing import LeaveStatus
from server.domain.points import LedgerSource

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: type[Any]) -> str:
    """SQL check that a column holds one of an enum's values (or is NULL)."""
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({allowed})"


# The partial unique index of attendance credits; an ON CONFLICT naming it repeats it.
ATTENDANCE_CREDIT_WHERE = "source = 'attendance'"


def _partial(condition: str) -> dict[str, Any]:
    """Index keyword arguments for a partial index on both backends."""
    return {"sqlite_where": text(condition), "postgresql_where": text(condition)}


class Base(DeclarativeBase):
    """Base of all models; datetimes are aware UTC everywhere."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), uuid.UUID: Uuid()}  # noqa: RUF012


def table_of(model: type[Base]) -> Table:
    """The Core Table behind a model, for batched Core statements."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a single table")
    return table


class OrgUnit(Base):
    """A node of the organisation: 党委 → 支部 → 党小组, any depth."""

    __tablename__ = "org_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Member(Base):
    """A person who can attend: employee number, name, current org unit, category."""

    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint(
            "active_to IS NULL OR active_from IS NULL OR active_to >= active_from",
            name="active_dates",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_no: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    active_from: Mapped[date | None] = mapped_column(Date)
    active_to: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class MemberOrgHistory(Base):
    """Which org unit a member belonged to when; the open row (no valid_to) is current."""

    __tablename__ = "member_org_history"
    __table_args__ = (
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="valid_range"),
        Index("ix_member_org_history_member_id_valid_from", "member_id", "valid_from"),
        Index(
            "uq_member_org_history_open",
            "member_id",
            unique=True,
            **_partial("valid_to IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]


class Card(Base):
    """A card a member holds or held; only an active card identifies its holder."""

    __tablename__ = "cards"
    __table_args__ = (
        CheckConstraint(_one_of("tech", CardTech), name="tech"),
        CheckConstraint(_one_of("status", CardStatus), name="status"),
        Index("ix_cards_tech_uid", "tech", "uid"),
        Index(
            "uq_cards_active_tech_uid", "tech", "uid", unique=True, **_partial("status = 'active'")
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tech: Mapped[str] = mapped_column(String(16))
    uid: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=CardStatus.ACTIVE.value)
    issued_at: Mapped[datetime] = mapped_column(server_default=func.now())
    status_changed_at: Mapped[datetime | None]


class Room(Base):
    """A place where sessions are held and readers are mounted."""

    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))


class Reader(Base):
    """A card reader terminal: where it is, its mode, and what it last reported."""

    __tablename__ = "readers"
    __table_args__ = (
        CheckConstraint(_one_of("mode", TapMode), name="mode"),
        CheckConstraint(f"state IS NULL OR {_one_of('state', ReaderState)}", name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(100))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16), default=TapMode.CHECKIN.value)
    state: Mapped[str | None] = mapped_column(String(16))
    last_seen_at: Mapped[datetime | None]
    last_status_at: Mapped[datetime | None]
    boot_id: Mapped[uuid.UUID | None]
    agent_version: Mapped[str | None] = mapped_column(String(200))
    card_source: Mapped[str | None] = mapped_column(String(200))
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    oldest_pending_at: Mapped[datetime | None]
    clock_synced: Mapped[bool | None] = mapped_column(Boolean)
    skew_seconds: Mapped[float | None] = mapped_column(Float)
    # Arrival time of the tap the skew was measured from (migration 0010).
    skew_measured_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Message signing (migration 0003): the HMAC key in hex (stored as given), and
    # the newest (boot_id, seq) accepted from this reader, against replays.
    sign_key: Mapped[str | None] = mapped_column(String(128))
    last_boot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    last_seq: Mapped[int | None] = mapped_column(Integer)


class ActivityType(Base):
    """A kind of session (支部党员大会, 党课, 学习 …) and the points it is worth."""

    __tablename__ = "activity_types"
    __table_args__ = (CheckConstraint("default_points >= 0", name="points"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    default_points: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32), server_default="general")


class AttendanceSession(Base):
    """A session people check in to, with its check-in window settings."""

    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="times"),
        CheckConstraint("checkin_open_minutes BETWEEN 0 AND 1440", name="open_minutes"),
        CheckConstraint("late_grace_minutes >= 0", name="grace_minutes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    activity_type_id: Mapped[int] = mapped_column(ForeignKey("activity_types.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime] = mapped_column(index=True)
    checkin_open_minutes: Mapped[int] = mapped_column(Integer, default=30)
    late_grace_minutes: Mapped[int] = mapped_column(Integer, default=5)
    closes_at: Mapped[datetime | None]
    allow_walk_in: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    requires_checkout: Mapped[bool] = mapped_column(Boolean, server_default=false())
    min_stay_minutes: Mapped[int] = mapped_column(Integer, server_default="0")
    recurrence_rule: Mapped[str | None] = mapped_column(String(200))
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    roster_frozen_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class SessionSeries(Base):
    """Sessions holding the same lesson: attending any one occurrence fulfils it."""

    __tablename__ = "session_series"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    activity_type_id: Mapped[int] = mapped_column(ForeignKey("activity_types.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SeriesSession(Base):
    """A session's place in a series (a session belongs to at most one)."""

    __tablename__ = "series_sessions"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("session_series.id"), index=True)


class SessionRosterEntry(Base):
    """A member a session expects, frozen from the membership at its start."""

    __tablename__ = "session_roster"
    # Issue 8 (migration 0008): a branch's expected attendance over a period.
    __table_args__ = (
        Index("ix_session_roster_org_unit_id_session_id", "org_unit_id", "session_id"),
    )

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True, index=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))


class LeaveRequestRecord(Base):
    """A leave request (请假) for one session; only an approved one excuses an absence."""

    __tablename__ = "leave_requests"
    __table_args__ = (
        UniqueConstraint("member_id", "session_id"),
        CheckConstraint(_one_of("status", LeaveStatus), name="status"),
        CheckConstraint("status = 'pending' OR approver IS NOT NULL", name="decided_by"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    approver: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class PointsRuleVersion(Base):
    """One version of the points rules and the day it takes effect; the body is JSON."""

    __tablename__ = "points_rule_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    effective_from: Mapped[date] = mapped_column(Date, unique=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Publication(Base):
    """Figures of one org unit for one period (2026Q1), frozen when published."""

    __tablename__ = "publications"
    __table_args__ = (UniqueConstraint("period", "org_unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(16))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    published_at: Mapped[datetime]
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)


class SessionRoom(Base):
    """A room a session is held in (a session may use several)."""

    __tablename__ = "session_rooms"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), primary_key=True, index=True)


class SessionAudience(Base):
    """One entry of a session's audience: an org unit (with sub-units) or a member."""

    __tablename__ = "session_audience"
    __table_args__ = (
        CheckConstraint("(org_unit_id IS NULL) <> (member_id IS NULL)", name="unit_or_member"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))


class TapRecord(Base):
    """Every tap received, valid or not, with the outcome it was answered with.

    `event_id` is NULL only for payloads too broken to name one; `raw_payload`
    keeps the bytes of rejected payloads for diagnosis.
    """

    __tablename__ = "taps"
    __table_args__ = (
        CheckConstraint(_one_of("result", AckResult), name="result"),
        CheckConstraint(f"mode IS NULL OR {_one_of('mode', TapMode)}", name="mode"),
        Index("ix_taps_reader_id_received_at", "reader_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    event_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    reader_id: Mapped[str | None] = mapped_column(String(64))
    boot_id: Mapped[uuid.UUID | None]
    seq: Mapped[int | None] = mapped_column(BigInteger)
    card_tech: Mapped[str | None] = mapped_column(String(16))
    card_uid: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(index=True)
    clock_synced: Mapped[bool | None] = mapped_column(Boolean)
    mode: Mapped[str | None] = mapped_column(String(16))
    result: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(Integer, default=0)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"))
    detail: Mapped[str | None] = mapped_column(String(500))
    display: Mapped[dict[str, Any]] = mapped_column(JSON)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    raw_payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Issue 7 (migration 0005): how the card proved itself, 'uid' / 'strong' / 'failed';
    # NULL when no known card was reached.
    card_tier: Mapped[str | None] = mapped_column(String(8))


class UnknownCard(Base):
    """Inbox of cards seen but held by nobody, waiting for an administrator to enrol them."""

    __tablename__ = "unknown_cards"
    __table_args__ = (
        UniqueConstraint("tech", "uid"),
        CheckConstraint(_one_of("tech", CardTech), name="tech"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tech: Mapped[str] = mapped_column(String(16))
    uid: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    tap_count: Mapped[int] = mapped_column(Integer)
    last_reader_id: Mapped[str | None] = mapped_column(String(64))
    last_mode: Mapped[str | None] = mapped_column(String(16))
    resolved_at: Mapped[datetime | None]


class Attendance(Base):
    """One member's attendance of one session (at most one row per pair)."""

    __tablename__ = "attendance"
    __table_args__ = (
        UniqueConstraint("member_id", "session_id"),
        CheckConstraint(_one_of("status", AttendanceStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    first_tap_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("taps.id"))
    checked_in_at: Mapped[datetime | None]
    checkout_tap_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("taps.id"))
    checked_out_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LedgerEntry(Base):
    """An append-only points entry; a balance is the sum of a member's entries."""

    __tablename__ = "points_ledger"
    __table_args__ = (
        CheckConstraint(_one_of("source", LedgerSource), name="source"),
        CheckConstraint(
            "source <> 'attendance' OR attendance_id IS NOT NULL", name="attendance_has_id"
        ),
        CheckConstraint("source <> 'reversal' OR reverses_id IS NOT NULL", name="reversal_has_id"),
        CheckConstraint("source <> 'adjustment' OR reason IS NOT NULL", name="adjustment_reason"),
        Index("ix_points_ledger_member_id_created_at", "member_id", "created_at"),
        Index(
            "uq_points_ledger_attendance_credit",
            "attendance_id",
            "credit_seq",
            unique=True,
            **_partial(ATTENDANCE_CREDIT_WHERE),
        ),
        Index(
            "uq_points_ledger_reverses_id",
            "reverses_id",
            unique=True,
            **_partial("reverses_id IS NOT NULL"),
        ),
        # Issue 8 (migration 0008): points in a period, from its sessions' attendance
        # and from the entries tied to no attendance (adjustments), by time.
        Index("ix_points_ledger_attendance_id", "attendance_id"),
        Index(
            "ix_points_ledger_unlinked_created_at",
            "created_at",
            **_partial("attendance_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    amount: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    rule_version: Mapped[str] = mapped_column(String(64))
    attendance_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("attendance.id"))
    reverses_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("points_ledger.id"))
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # 0 for the tap-time credit; each re-credit after a reversal takes the next number.
    credit_seq: Mapped[int] = mapped_column(Integer, server_default="0")


class AuditEntry(Base):
    """One append-only audit row, chained to the one before it by `prev_hash`."""

    __tablename__ = "audit_log"

    # Numbered by server.audit.chain under its lock, since the number is hashed.
    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))


# --- issue 4: member categories (migration 0004) ---


class MemberCategory(Base):
    """A category a member may have (正式党员, 预备党员 …), in display order.

    `members.category` holds the name; the services refuse names not listed here.
    Not the same as an activity type's `category`, which groups activities for caps.
    """

    __tablename__ = "member_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    position: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


# --- issue 7: card challenge-response (migration 0005) ---


class CardKey(Base):
    """A card personalised with its strong-tier key: the master key versions issued and proved.

    The key itself is never stored: it is diversified again from the master key.
    `key_version` is the version last issued (`rollcall cards personalise-key`);
    the card holds it only once the key file is written to it at a terminal, so
    `proven_version` is the version the card last answered a challenge with (and
    `proven_at` when it first did), NULL until it has.
    """

    __tablename__ = "card_keys"

    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), primary_key=True)
    key_version: Mapped[int] = mapped_column(Integer)
    personalised_at: Mapped[datetime]
    personalised_by: Mapped[str] = mapped_column(String(100))
    proven_version: Mapped[int | None] = mapped_column(Integer)
    proven_at: Mapped[datetime | None]


class StrongTierRoom(Base):
    """A room where only cards that answer their challenge may check in."""

    __tablename__ = "strong_tier_rooms"

    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    required_since: Mapped[datetime]


class StrongTierActivityType(Base):
    """An activity type whose sessions only accept cards that answer their challenge."""

    __tablename__ = "strong_tier_activity_types"

    activity_type_id: Mapped[int] = mapped_column(ForeignKey("activity_types.id"), primary_key=True)
    required_since: Mapped[datetime]


class SuspectedClone(Base):
    """Inbox of cards refused where the strong tier is required: a clone or an unkeyed card."""

    __tablename__ = "suspected_clones"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), unique=True)
    tech: Mapped[str] = mapped_column(String(16))
    uid: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    tap_count: Mapped[int] = mapped_column(Integer)
    last_reader_id: Mapped[str | None] = mapped_column(String(64))
    last_reason: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None]


# --- issue 5: admin console (migration 0006) ---


class ConsoleUser(Base):
    """Someone who signs in to the console: a role and, for an org admin, the unit they run."""

    __tablename__ = "console_users"
    __table_args__ = (
        CheckConstraint("role IN ('super_admin', 'org_admin', 'auditor')", name="role"),
        CheckConstraint("role <> 'org_admin' OR org_unit_id IS NOT NULL", name="org_admin_unit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_login_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser; the cookie holds a secret whose SHA-256 is the key here."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class LoginFailure(Base):
    """A wrong password, kept a short while to throttle guessing."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_remote_at", "remote", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    remote: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class ApiToken(Base):
    """A bearer token for integrations; only its SHA-256 is stored, shown once when made."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('super_admin', 'org_admin', 'auditor')", name="role"),
        CheckConstraint("role <> 'org_admin' OR org_unit_id IS NOT NULL", name="org_admin_unit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class MemberPinyin(Base):
    """A member's name in pinyin (initials and full) for search, and the `name` it was made from."""

    __tablename__ = "member_pinyin"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    initials: Mapped[str] = mapped_column(String(100), index=True)
    full: Mapped[str] = mapped_column(String(400))


class EnrollRequest(Base):
    """A member picked by an administrator: the next enroll-mode tap on the reader binds it."""

    __tablename__ = "enroll_requests"
    __table_args__ = (Index("ix_enroll_requests_reader_id_expires_at", "reader_id", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"))
    completed_at: Mapped[datetime | None]


# --- issue 6: kiosks (migration 0007) ---


class DeviceToken(Base):
    """A kiosk or live screen's credential: paired with a reader, a session or a room.

    Only the SHA-256 of the token is stored; the token is shown once, at creation.
    """

    __tablename__ = "device_tokens"
    __table_args__ = (
        CheckConstraint("kind IN ('kiosk', 'screen')", name="kind"),
        CheckConstraint(
            "(kind = 'kiosk' AND reader_id IS NOT NULL AND session_id IS NULL AND room_id IS NULL)"
            " OR (kind = 'screen' AND reader_id IS NULL"
            " AND (session_id IS NULL) <> (room_id IS NULL))",
            name="target",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


# --- issue 8: what the ingest may keep between batches (migration 0009) ---


class ReferenceGeneration(Base):
    """One row, raised by triggers whenever reference data the tap path reads changes.

    The triggers (migration 0009) watch readers (room, mode, signing key), rooms,
    sessions, their rooms and audiences, activity types, rule versions, the
    strong-tier requirements and org units; see `server/services/reference.py`.
    """

    __tablename__ = "reference_generation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, server_default="0")
