"""Leave requests (请假): filed for a session, approved or rejected by a named approver."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.db.models import AttendanceSession, LeaveRequestRecord, Member
from server.domain.closing import LeaveStatus
from server.errors import Conflict, DomainError, NotFound
from server.services.unit_of_work import UnitOfWork


def request(uow: UnitOfWork, session_id: int, employee_no: str, reason: str) -> int:
    """File a pending leave request; its id. Conflict if one exists or the session closed."""
    if not reason.strip():
        raise DomainError("a leave request needs a reason")
    with uow:
        db = uow.session
        closed = db.execute(
            select(AttendanceSession.closed_at).where(AttendanceSession.id == session_id)
        ).one_or_none()
        if closed is None:
            raise NotFound("session", session_id)
        if closed[0] is not None:
            raise Conflict(f"session {session_id} is closed; correct its attendance instead")
        member_id = db.scalar(select(Member.id).where(Member.employee_no == employee_no))
        if member_id is None:
            raise NotFound("member with employee number", employee_no)
        row = LeaveRequestRecord(
            member_id=member_id,
            session_id=session_id,
            reason=reason.strip()[:200],
            status=LeaveStatus.PENDING.value,
        )
        db.add(row)
        try:
            db.flush()
        except IntegrityError as exc:
            raise Conflict(
                f"{employee_no} already asked for leave from session {session_id}"
            ) from exc
        request_id = row.id
        uow.commit()
    return request_id


def decide(uow: UnitOfWork, request_id: int, *, approve: bool, approver: str, now: datetime) -> str:
    """Approve or reject a pending request; returns the new status."""
    if not approver.strip():
        raise DomainError("a decision on leave names its approver")
    with uow:
        row = uow.session.get(LeaveRequestRecord, request_id)
        if row is None:
            raise NotFound("leave request", request_id)
        if row.status != LeaveStatus.PENDING.value:
            raise Conflict(f"leave request {request_id} was already {row.status}")
        row.status = (LeaveStatus.APPROVED if approve else LeaveStatus.REJECTED).value
        row.approver = approver.strip()[:100]
        row.decided_at = now
        status = row.status
        uow.commit()
    return status
