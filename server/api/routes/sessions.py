"""Sessions: plan (with recurrence), series, rosters, leave, cancellation, closing, attendance."""

from typing import Annotated

from fastapi import APIRouter, Path, status

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.api.errors import NOT_FOUND, WRITE
from server.api.schemas import (
    ClosedOut,
    LeaveDecisionIn,
    LeaveIn,
    LeaveOut,
    ReasonIn,
    RosterOut,
    SeriesIn,
    SeriesOut,
    SessionAttendanceOut,
    SessionPlanIn,
    SessionsOut,
)
from server.domain.closing import LeaveStatus
from server.services import leave, sessions
from server.services.attendance import session_attendance

router = APIRouter(tags=["sessions"])
SessionId = Annotated[int, Path(ge=1)]


@router.post(
    "/sessions",
    response_model=SessionsOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
)
def plan_sessions(body: SessionPlanIn, uow: UowDep, runtime: RuntimeDep) -> SessionsOut:
    """Plan a session, or every occurrence of a recurring one (RFC 5545 RRULE)."""
    plan = sessions.SessionPlan(**body.model_dump())
    return SessionsOut(session_ids=sessions.plan_sessions(uow, plan, runtime.settings.zone))


@router.post(
    "/series", response_model=SeriesOut, status_code=status.HTTP_201_CREATED, responses=WRITE
)
def group_series(body: SeriesIn, uow: UowDep) -> SeriesOut:
    """Group sessions into a series: attending any one occurrence fulfils it (make-up path)."""
    return SeriesOut(series_id=sessions.group_series(uow, body.title, body.session_ids))


@router.post("/sessions/{session_id}/roster", response_model=RosterOut, responses=WRITE)
def freeze_roster(session_id: SessionId, uow: UowDep, runtime: RuntimeDep) -> RosterOut:
    """Freeze (or read) the expected roster: the audience's membership at the session's start."""
    members = sessions.freeze(uow, session_id, runtime.settings.zone)
    return RosterOut(session_id=session_id, member_ids=members)


@router.post(
    "/sessions/{session_id}/cancel", status_code=status.HTTP_204_NO_CONTENT, responses=WRITE
)
def cancel_session(session_id: SessionId, body: ReasonIn, uow: UowDep, runtime: RuntimeDep) -> None:
    """Cancel a session: it takes no more taps and is never scored."""
    sessions.cancel(uow, session_id, body.reason, runtime.clock.now())


@router.post("/sessions/{session_id}/close", response_model=ClosedOut, responses=WRITE)
def close_session(session_id: SessionId, uow: UowDep, runtime: RuntimeDep) -> ClosedOut:
    """Decide absences and settle points; 409 `not_ready` while readers may still hold taps."""
    settings = runtime.settings
    closed = sessions.close(
        uow, session_id, runtime.clock.now(), settings.zone, grace=settings.absence_grace
    )
    return ClosedOut.model_validate(closed)


@router.post(
    "/sessions/{session_id}/leave-requests",
    response_model=LeaveOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
)
def request_leave(session_id: SessionId, body: LeaveIn, uow: UowDep) -> LeaveOut:
    """File a leave request (请假); it excuses an absence once approved."""
    request_id = leave.request(uow, session_id, body.employee_no, body.reason)
    return LeaveOut(id=request_id, status=LeaveStatus.PENDING)


@router.post("/leave-requests/{request_id}/decision", response_model=LeaveOut, responses=WRITE)
def decide_leave(
    request_id: Annotated[int, Path(ge=1)], body: LeaveDecisionIn, uow: UowDep, runtime: RuntimeDep
) -> LeaveOut:
    """Approve or reject a pending leave request, naming the approver."""
    decided = leave.decide(
        uow, request_id, approve=body.approve, approver=body.approver, now=runtime.clock.now()
    )
    return LeaveOut(id=request_id, status=decided)


@router.get(
    "/sessions/{session_id}/attendance", response_model=SessionAttendanceOut, responses=NOT_FOUND
)
def get_session_attendance(db: SessionDep, session_id: SessionId) -> SessionAttendanceOut:
    """Who attended a session, with status and check-in time."""
    return SessionAttendanceOut.model_validate(session_attendance(db, session_id))
