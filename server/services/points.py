"""Reading points: a member's balance and latest ledger entries."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.models import Attendance, AttendanceSession, LedgerEntry, Member, OrgUnit
from server.errors import NotFound


@dataclass(frozen=True)
class LedgerLine:
    """One ledger entry as shown to people."""

    id: int
    amount: int
    source: str
    rule_version: str
    reason: str | None
    created_at: datetime
    session_id: int | None
    session_title: str | None


@dataclass(frozen=True)
class MemberPoints:
    """A member's balance and most recent entries, newest first."""

    employee_no: str
    name: str
    org_unit: str
    balance: int
    entries: list[LedgerLine]


def member_points(session: Session, employee_no: str, *, limit: int = 20) -> MemberPoints:
    """Balance (the sum of the ledger) and the `limit` latest entries; NotFound if unknown."""
    row = session.execute(
        select(Member.id, Member.name, OrgUnit.name)
        .join(OrgUnit, OrgUnit.id == Member.org_unit_id)
        .where(Member.employee_no == employee_no)
    ).one_or_none()
    if row is None:
        raise NotFound("member with employee number", employee_no)
    member_id, name, unit_name = row
    balance = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.member_id == member_id
        )
    )
    rows = session.execute(
        select(
            LedgerEntry.id,
            LedgerEntry.amount,
            LedgerEntry.source,
            LedgerEntry.rule_version,
            LedgerEntry.reason,
            LedgerEntry.created_at,
            AttendanceSession.id,
            AttendanceSession.title,
        )
        .outerjoin(Attendance, Attendance.id == LedgerEntry.attendance_id)
        .outerjoin(AttendanceSession, AttendanceSession.id == Attendance.session_id)
        .where(LedgerEntry.member_id == member_id)
        .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
        .limit(limit)
    )
    return MemberPoints(
        employee_no=employee_no,
        name=name,
        org_unit=unit_name,
        balance=int(balance or 0),
        entries=[LedgerLine(*r) for r in rows],
    )
