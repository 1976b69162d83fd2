"""Session review: who is expected, present, late, left early, absent, excused, and corrections.

A correction (leave, a manual check-in for a forgotten card, voiding a wrong
check-in) needs a reason, is written to the audit log, and reaches the points
ledger only by appending: a reversal and, where due, a new entry. Before a
session closes the tap-time credit is added or reversed at once; after it closes
the session is settled again, so the ledger matches the corrected attendance.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from protocol import AckResult, TapMode
from server.audit.chain import record_audit
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    LeaveRequestRecord,
    LedgerEntry,
    Member,
    OrgUnit,
    Room,
    SessionRoom,
    SessionRosterEntry,
    TapRecord,
)
from server.domain.attendance import AttendanceStatus, CheckinWindow
from server.domain.closing import LeaveStatus
from server.domain.lifecycle import SessionLife, SessionStatus
from server.domain.points import LedgerSource, tap_time_points
from server.errors import Conflict, DomainError, NotFound
from server.services import settlement
from server.services.auth import Principal
from server.services.auth_scope import member_condition, require_member, require_session
from server.services.rules import rule_book
from server.services.unit_of_work import UnitOfWork

# The review's own status for someone expected who has no attendance yet.
NOT_YET: Final = "not_yet"
_CHECKED_IN: Final = (
    AttendanceStatus.PRESENT.value,
    AttendanceStatus.LATE.value,
    AttendanceStatus.LEFT_EARLY.value,
)
_COUNTED_TAPS: Final = (AckResult.ACCEPTED.value, AckResult.DUPLICATE.value)


@dataclass(frozen=True)
class ReviewRow:
    """One member on a session's review: expected or not, and how they attended."""

    member_id: int
    employee_no: str
    name: str
    org_unit: str
    expected: bool
    status: str
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    manual: bool
    leave_status: str | None
    leave_reason: str | None
    points: int


@dataclass(frozen=True)
class SessionReview:
    """A session with everyone the reviewer may see, and counts by status."""

    id: int
    title: str
    activity_type: str
    starts_at: datetime
    ends_at: datetime
    status: SessionStatus
    rooms: list[str]
    roster_frozen: bool
    rows: list[ReviewRow]
    counts: dict[str, int]


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise DomainError("a correction needs a reason")
    return text[:200]


def session_review(
    db: Session, principal: Principal, session_id: int, now: datetime
) -> SessionReview:
    """The review of one session as the principal may see it; NotFound outside its scope."""
    connection = db.connection()
    require_session(connection, principal, session_id)
    meeting = db.get(AttendanceSession, session_id)
    assert meeting is not None
    activity = db.get(ActivityType, meeting.activity_type_id)
    rooms = list(
        db.scalars(
            select(Room.name)
            .join(SessionRoom, SessionRoom.room_id == Room.id)
            .where(SessionRoom.session_id == session_id)
            .order_by(Room.name)
        )
    )
    in_scope = member_condition(principal)
    expected = set(
        connection.scalars(
            select(SessionRosterEntry.member_id)
            .join(Member, Member.id == SessionRosterEntry.member_id)
            .where(SessionRosterEntry.session_id == session_id, in_scope)
        )
    )
    attendance = {
        row.member_id: row
        for row in connection.execute(
            select(
                Attendance.id,
                Attendance.member_id,
                Attendance.status,
                Attendance.checked_in_at,
                Attendance.checked_out_at,
                Attendance.first_tap_id,
            )
            .join(Member, Member.id == Attendance.member_id)
            .where(Attendance.session_id == session_id, in_scope)
        )
    }
    leaves = {
        row.member_id: row
        for row in connection.execute(
            select(
                LeaveRequestRecord.member_id, LeaveRequestRecord.status, LeaveRequestRecord.reason
            )
            .join(Member, Member.id == LeaveRequestRecord.member_id)
            .where(LeaveRequestRecord.session_id == session_id, in_scope)
        )
    }
    manual = set(
        connection.scalars(
            select(TapRecord.member_id).where(
                TapRecord.session_id == session_id,
                TapRecord.reader_id.is_(None),
                TapRecord.result == AckResult.ACCEPTED.value,
            )
        )
    )
    points = dict(
        connection.execute(
            select(LedgerEntry.attendance_id, func.sum(LedgerEntry.amount))
            .join(Attendance, Attendance.id == LedgerEntry.attendance_id)
            .where(Attendance.session_id == session_id)
            .group_by(LedgerEntry.attendance_id)
        ).all()
    )
    member_ids = expected | set(attendance) | set(leaves)
    people = {
        row.id: row
        for row in connection.execute(
            select(Member.id, Member.employee_no, Member.name, OrgUnit.name.label("unit"))
            .join(OrgUnit, OrgUnit.id == Member.org_unit_id)
            .where(Member.id.in_(sorted(member_ids)))
        )
    }
    rows: list[ReviewRow] = []
    for member_id in member_ids:
        person, att, leave = people[member_id], attendance.get(member_id), leaves.get(member_id)
        if att is not None:
            status = att.status
        elif leave is not None and leave.status == LeaveStatus.APPROVED.value:
            status = AttendanceStatus.EXCUSED.value
        else:
            status = NOT_YET
        rows.append(
            ReviewRow(
                member_id=member_id,
                employee_no=person.employee_no,
                name=person.name,
                org_unit=person.unit,
                expected=member_id in expected,
                status=status,
                checked_in_at=att.checked_in_at if att else None,
                checked_out_at=att.checked_out_at if att else None,
                manual=member_id in manual,
                leave_status=leave.status if leave else None,
                leave_reason=leave.reason if leave else None,
                points=int(points.get(att.id, 0) or 0) if att else 0,
            )
        )
    order = {s: i for i, s in enumerate([*_CHECKED_IN, NOT_YET, "absent", "excused"])}
    rows.sort(key=lambda r: (order.get(r.status, 9), r.checked_in_at or now, r.employee_no))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    life = SessionLife(
        meeting.starts_at,
        meeting.ends_at,
        meeting.checkin_open_minutes,
        meeting.cancelled_at,
        meeting.closed_at,
    )
    return SessionReview(
        id=meeting.id,
        title=meeting.title,
        activity_type=activity.name if activity else "",
        starts_at=meeting.starts_at,
        ends_at=meeting.ends_at,
        status=life.status(now),
        rooms=rooms,
        roster_frozen=meeting.roster_frozen_at is not None,
        rows=rows,
        counts=counts,
    )


def _open_session(db: Session, principal: Principal, session_id: int) -> AttendanceSession:
    require_session(db.connection(), principal, session_id)
    meeting = db.get(AttendanceSession, session_id)
    assert meeting is not None
    if meeting.cancelled_at is not None:
        raise Conflict(f"session {session_id} was cancelled")
    return meeting


def _member(db: Session, principal: Principal, employee_no: str) -> Member:
    member = db.scalar(select(Member).where(Member.employee_no == employee_no.strip()))
    if member is None:
        raise NotFound("member with employee number", employee_no)
    require_member(db.connection(), principal, member.id)
    return member


def _attendance(db: Session, session_id: int, member_id: int) -> Attendance | None:
    return db.scalar(
        select(Attendance).where(
            Attendance.session_id == session_id, Attendance.member_id == member_id
        )
    )


def _resettle(
    connection: Connection, session_id: int, reason: str, now: datetime, zone: tzinfo
) -> int:
    """Bring a closed session's ledger in line with its attendance; entries appended."""
    settled = settlement.settlement(connection, [session_id], zone)
    return len(settlement.apply(connection, settled, reason, now))


@dataclass(frozen=True)
class _Correction:
    """What every correction works on: the open unit of work, the session and the member."""

    uow: UnitOfWork
    principal: Principal
    db: Session
    meeting: AttendanceSession
    member: Member
    attendance: Attendance | None

    def resettle(self, reason: str, now: datetime, zone: tzinfo) -> int:
        """Re-settle the (closed) session after this correction; entries appended."""
        return _resettle(self.db.connection(), self.meeting.id, reason, now, zone)

    def record_and_commit(self, action: str, details: dict[str, Any], now: datetime) -> None:
        """Write the correction to the audit log and commit the unit of work."""
        record_audit(
            self.db,
            actor=self.principal.username,
            action=action,
            target=f"session {self.meeting.id} member {self.member.employee_no}",
            details=details,
            at=now,
        )
        self.uow.commit()


@contextmanager
def _correction(
    uow: UnitOfWork, principal: Principal, session_id: int, employee_no: str
) -> Iterator[_Correction]:
    """Open the unit of work and look up the session, member and attendance in scope."""
    with uow:
        db = uow.session
        meeting = _open_session(db, principal, session_id)
        member = _member(db, principal, employee_no)
        attendance = _attendance(db, session_id, member.id)
        yield _Correction(uow, principal, db, meeting, member, attendance)


def mark_leave(
    uow: UnitOfWork,
    principal: Principal,
    *,
    session_id: int,
    employee_no: str,
    reason: str,
    now: datetime,
    zone: tzinfo,
) -> None:
    """Excuse a member from a session (approved leave, 请假); after closing, re-settle."""
    reason = _reason(reason)
    with _correction(uow, principal, session_id, employee_no) as c:
        db, meeting, member, att = c.db, c.meeting, c.member, c.attendance
        if att is not None and att.status in _CHECKED_IN:
            raise Conflict(f"{member.name} checked in to this session; void the check-in first")
        leave = db.scalar(
            select(LeaveRequestRecord).where(
                LeaveRequestRecord.session_id == session_id,
                LeaveRequestRecord.member_id == member.id,
            )
        )
        if leave is None:
            leave = LeaveRequestRecord(member_id=member.id, session_id=session_id, reason=reason)
            db.add(leave)
        leave.status = LeaveStatus.APPROVED.value
        leave.approver = principal.username[:100]
        leave.decided_at = now
        entries = 0
        if meeting.closed_at is not None:
            if att is None:
                db.add(
                    Attendance(
                        member_id=member.id,
                        session_id=session_id,
                        status=AttendanceStatus.EXCUSED.value,
                        created_at=now,
                    )
                )
            else:
                att.status = AttendanceStatus.EXCUSED.value
            db.flush()
            entries = c.resettle(f"leave: {reason}", now, zone)
        c.record_and_commit("attendance.leave", {"reason": reason, "ledger_entries": entries}, now)


def _next_credit_seq(db: Session, attendance_id: int) -> int:
    last = db.scalar(
        select(func.max(LedgerEntry.credit_seq)).where(
            LedgerEntry.attendance_id == attendance_id,
            LedgerEntry.source == LedgerSource.ATTENDANCE.value,
        )
    )
    return 0 if last is None else last + 1


def manual_checkin(
    uow: UnitOfWork,
    principal: Principal,
    *,
    session_id: int,
    employee_no: str,
    at: datetime,
    reason: str,
    now: datetime,
    zone: tzinfo,
) -> None:
    """Record a check-in for a member who forgot the card, as a tap without a reader."""
    reason = _reason(reason)
    with _correction(uow, principal, session_id, employee_no) as c:
        db, meeting, member, att = c.db, c.meeting, c.member, c.attendance
        window = CheckinWindow.for_session(
            meeting.starts_at,
            meeting.ends_at,
            open_minutes=meeting.checkin_open_minutes,
            late_grace_minutes=meeting.late_grace_minutes,
            closes_at=meeting.closes_at,
        )
        if not window.opens_at <= at <= window.closes_at:
            raise DomainError("the check-in time lies outside the session's check-in window")
        if att is not None and att.checked_in_at is not None:
            raise Conflict(f"{member.name} is already checked in")
        status = window.status_at(at)
        activity = db.get(ActivityType, meeting.activity_type_id)
        assert activity is not None
        points, version = tap_time_points(
            rule_book(db.connection()),
            activity.code,
            status,
            meeting.starts_at.astimezone(zone).date(),
        )
        tap = TapRecord(
            event_id=uuid.uuid4(),
            reader_id=None,
            occurred_at=at,
            received_at=now,
            clock_synced=True,
            mode=TapMode.CHECKIN.value,
            result=AckResult.ACCEPTED.value,
            points=points,
            session_id=session_id,
            member_id=member.id,
            detail=f"manual check-in by {principal.username}: {reason}"[:500],
            display={"title": "", "lines": []},
        )
        db.add(tap)
        db.flush()
        if att is None:
            att = Attendance(member_id=member.id, session_id=session_id, created_at=now)
            db.add(att)
        att.status, att.checked_in_at, att.first_tap_id = status.value, at, tap.id
        db.flush()
        entries = 0
        if meeting.closed_at is not None:
            entries = c.resettle(f"manual check-in: {reason}", now, zone)
        elif points:
            db.add(
                LedgerEntry(
                    member_id=member.id,
                    amount=points,
                    source=LedgerSource.ATTENDANCE.value,
                    rule_version=version,
                    attendance_id=att.id,
                    credit_seq=_next_credit_seq(db, att.id),
                    created_at=now,
                )
            )
            entries = 1
        c.record_and_commit(
            "attendance.manual_checkin",
            {
                "reason": reason,
                "at": at.isoformat(),
                "status": status.value,
                "tap_id": tap.id,
                "ledger_entries": entries,
            },
            now,
        )


def void_checkin(
    uow: UnitOfWork,
    principal: Principal,
    *,
    session_id: int,
    employee_no: str,
    reason: str,
    now: datetime,
    zone: tzinfo,
) -> None:
    """Void a wrong check-in: its taps stop counting, its credit is reversed."""
    reason = _reason(reason)
    with _correction(uow, principal, session_id, employee_no) as c:
        db, meeting, member, att = c.db, c.meeting, c.member, c.attendance
        if att is None or att.checked_in_at is None:
            raise Conflict(f"{member.name} has no check-in to void")
        taps = db.execute(
            select(TapRecord.id, TapRecord.result).where(
                TapRecord.session_id == session_id,
                TapRecord.member_id == member.id,
                TapRecord.mode.in_([TapMode.CHECKIN.value, TapMode.CHECKOUT.value]),
                TapRecord.result.in_(_COUNTED_TAPS),
            )
        ).all()
        # The taps stay, marked: closing reads check-ins from them, and must not count these.
        db.execute(
            update(TapRecord)
            .where(TapRecord.id.in_([t.id for t in taps]))
            .values(
                result=AckResult.REJECTED.value,
                flagged=True,
                detail=f"voided by {principal.username}: {reason}"[:500],
            )
        )
        att.status = AttendanceStatus.ABSENT.value
        att.checked_in_at = att.checked_out_at = None
        att.first_tap_id = att.checkout_tap_id = None
        db.flush()
        entries = 0
        if meeting.closed_at is not None:
            entries = c.resettle(f"void: {reason}", now, zone)
        else:
            reversed_ids = select(LedgerEntry.reverses_id).where(
                LedgerEntry.reverses_id.is_not(None)
            )
            live = db.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.attendance_id == att.id,
                    LedgerEntry.source == LedgerSource.ATTENDANCE.value,
                    LedgerEntry.id.not_in(reversed_ids),
                )
            ).all()
            for credit in live:
                db.add(
                    LedgerEntry(
                        member_id=credit.member_id,
                        amount=-credit.amount,
                        source=LedgerSource.REVERSAL.value,
                        rule_version=credit.rule_version,
                        attendance_id=att.id,
                        reverses_id=credit.id,
                        reason=f"void: {reason}",
                        created_at=now,
                    )
                )
            entries = len(live)
        c.record_and_commit(
            "attendance.void",
            {
                "reason": reason,
                "taps": {str(t.id): t.result for t in taps},
                "ledger_entries": entries,
            },
            now,
        )
