"""Reading attendance: who came to a session, when, and how."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    Member,
    OrgUnit,
    Room,
    SessionRoom,
)
from server.errors import NotFound


@dataclass(frozen=True)
class Attendee:
    """One member's attendance of a session."""

    employee_no: str
    name: str
    org_unit: str
    status: str
    checked_in_at: datetime | None
    checked_out_at: datetime | None


@dataclass(frozen=True)
class SessionAttendance:
    """A session and everyone recorded for it, in check-in order."""

    session_id: int
    title: str
    activity_type: str
    starts_at: datetime
    ends_at: datetime
    rooms: list[str]
    attendees: list[Attendee]


def session_attendance(session: Session, session_id: int) -> SessionAttendance:
    """The attendance list of one session; NotFound if there is no such session."""
    row = session.execute(
        select(
            AttendanceSession.title,
            ActivityType.name,
            AttendanceSession.starts_at,
            AttendanceSession.ends_at,
        )
        .join(ActivityType, ActivityType.id == AttendanceSession.activity_type_id)
        .where(AttendanceSession.id == session_id)
    ).one_or_none()
    if row is None:
        raise NotFound("session", session_id)
    title, activity, starts_at, ends_at = row
    rooms = session.scalars(
        select(Room.name)
        .join(SessionRoom, SessionRoom.room_id == Room.id)
        .where(SessionRoom.session_id == session_id)
        .order_by(Room.name)
    ).all()
    attendees = session.execute(
        select(
            Member.employee_no,
            Member.name,
            OrgUnit.name,
            Attendance.status,
            Attendance.checked_in_at,
            Attendance.checked_out_at,
        )
        .join(Member, Member.id == Attendance.member_id)
        .join(OrgUnit, OrgUnit.id == Member.org_unit_id)
        .where(Attendance.session_id == session_id)
        .order_by(Attendance.checked_in_at, Member.employee_no)
    )
    return SessionAttendance(
        session_id=session_id,
        title=title,
        activity_type=activity,
        starts_at=starts_at,
        ends_at=ends_at,
        rooms=list(rooms),
        attendees=[Attendee(*r) for r in attendees],
    )
