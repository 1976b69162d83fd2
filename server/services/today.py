"""The console's Today page: sessions running and coming up, check-in counts, readers, inbox."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from protocol import ReaderState
from server.db.models import (
    Attendance,
    AttendanceSession,
    Member,
    Reader,
    Room,
    SessionRoom,
    SessionRosterEntry,
    UnknownCard,
)
from server.domain.attendance import AttendanceStatus
from server.services.auth import Principal
from server.services.auth_scope import member_condition, session_condition

# Sessions starting within this horizon count as coming up.
UPCOMING: Final = timedelta(hours=24)
# A reader silent this long is shown as offline even if it never said so.
SILENT_AFTER: Final = timedelta(minutes=5)
_ARRIVED: Final = (AttendanceStatus.PRESENT, AttendanceStatus.LATE, AttendanceStatus.LEFT_EARLY)


@dataclass(frozen=True)
class SessionNow:
    """A session on the Today page with its live counts (within the viewer's scope)."""

    id: int
    title: str
    starts_at: datetime
    ends_at: datetime
    running: bool
    rooms: list[str]
    expected: int | None
    checked_in: int


@dataclass(frozen=True)
class ReaderProblem:
    """A reader that is offline, silent or holding taps it has not delivered."""

    reader_id: str
    name: str | None
    room: str | None
    state: str | None
    last_seen_at: datetime | None
    outbox_depth: int | None
    oldest_pending_at: datetime | None


@dataclass(frozen=True)
class WaitingCard:
    """An unknown card in the inbox."""

    id: int
    tech: str
    uid: str
    last_seen_at: datetime
    tap_count: int
    last_reader_id: str | None


@dataclass(frozen=True)
class Today:
    """Everything the Today page shows."""

    sessions: list[SessionNow]
    readers: list[ReaderProblem]
    readers_total: int
    unknown_cards: list[WaitingCard]
    unknown_total: int


def sessions_now(db: Session, principal: Principal, now: datetime) -> list[SessionNow]:
    """Sessions running now or starting within a day that concern the principal, soonest first."""
    connection = db.connection()
    rows = connection.execute(
        select(
            AttendanceSession.id,
            AttendanceSession.title,
            AttendanceSession.starts_at,
            AttendanceSession.ends_at,
            AttendanceSession.roster_frozen_at,
        )
        .where(
            AttendanceSession.cancelled_at.is_(None),
            AttendanceSession.closed_at.is_(None),
            AttendanceSession.ends_at > now,
            AttendanceSession.starts_at <= now + UPCOMING,
            session_condition(connection, principal),
        )
        .order_by(AttendanceSession.starts_at, AttendanceSession.id)
        .limit(30)
    ).all()
    ids = [row.id for row in rows]
    if not ids:
        return []
    in_scope = member_condition(principal)
    rooms: dict[int, list[str]] = {}
    for session_id, name in connection.execute(
        select(SessionRoom.session_id, Room.name)
        .join(Room, Room.id == SessionRoom.room_id)
        .where(SessionRoom.session_id.in_(ids))
        .order_by(Room.name)
    ):
        rooms.setdefault(session_id, []).append(name)
    arrived = dict(
        connection.execute(
            select(Attendance.session_id, func.count())
            .join(Member, Member.id == Attendance.member_id)
            .where(Attendance.session_id.in_(ids), Attendance.status.in_(_ARRIVED), in_scope)
            .group_by(Attendance.session_id)
        ).all()
    )
    expected = dict(
        connection.execute(
            select(SessionRosterEntry.session_id, func.count())
            .join(Member, Member.id == SessionRosterEntry.member_id)
            .where(SessionRosterEntry.session_id.in_(ids), in_scope)
            .group_by(SessionRosterEntry.session_id)
        ).all()
    )
    return [
        SessionNow(
            id=row.id,
            title=row.title,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            running=row.starts_at <= now,
            rooms=rooms.get(row.id, []),
            # Before its roster is frozen a session's expected members are not fixed yet.
            expected=expected.get(row.id, 0) if row.roster_frozen_at is not None else None,
            checked_in=arrived.get(row.id, 0),
        )
        for row in rows
    ]


def today(db: Session, principal: Principal, now: datetime) -> Today:
    """The Today page's figures as the principal may see them."""
    troubled = or_(
        Reader.state == ReaderState.OFFLINE.value,
        Reader.last_seen_at.is_(None),
        Reader.last_seen_at < now - SILENT_AFTER,
        Reader.outbox_depth > 0,
    )
    readers = [
        ReaderProblem(*row)
        for row in db.execute(
            select(
                Reader.reader_id,
                Reader.name,
                Room.name,
                Reader.state,
                Reader.last_seen_at,
                Reader.outbox_depth,
                Reader.oldest_pending_at,
            )
            .outerjoin(Room, Room.id == Reader.room_id)
            .where(troubled)
            .order_by(Reader.reader_id)
            .limit(50)
        )
    ]
    waiting = and_(UnknownCard.resolved_at.is_(None))
    cards = [
        WaitingCard(*row)
        for row in db.execute(
            select(
                UnknownCard.id,
                UnknownCard.tech,
                UnknownCard.uid,
                UnknownCard.last_seen_at,
                UnknownCard.tap_count,
                UnknownCard.last_reader_id,
            )
            .where(waiting)
            .order_by(UnknownCard.last_seen_at.desc())
            .limit(5)
        )
    ]
    return Today(
        sessions=sessions_now(db, principal, now),
        readers=readers,
        readers_total=db.scalar(select(func.count()).select_from(Reader)) or 0,
        unknown_cards=cards,
        unknown_total=db.scalar(select(func.count()).select_from(UnknownCard).where(waiting)) or 0,
    )
