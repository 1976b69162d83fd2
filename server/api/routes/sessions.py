"""Sessions: plan, list, edit, series, rosters, leave, cancellation, closing, attendance."""

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from server.api.auth import PrincipalDep
from server.api.deps import ActorDep, RuntimeDep, SessionDep, UowDep
from server.api.errors import BAD_INPUT, NOT_FOUND, WRITE
from server.api.schemas import (
    ID_MAX,
    ClosedOut,
    Day,
    LeaveDecisionIn,
    LeaveIn,
    LeaveOut,
    ReasonIn,
    RosterOut,
    SeriesDetailOut,
    SeriesIn,
    SeriesOut,
    SessionAttendanceOut,
    SessionOut,
    SessionPageOut,
    SessionPlanIn,
    SessionsOut,
    SessionUpdateIn,
)
from server.domain.closing import LeaveStatus
from server.domain.lifecycle import SessionStatus
from server.services import leave, sessions
from server.services.attendance import session_attendance
from server.services.auth_scope import narrowed_unit_code, visible_employee_nos, visible_sessions

router = APIRouter(tags=["sessions"])
SessionId = Annotated[int, Path(ge=1, le=ID_MAX)]


@router.post(
    "/sessions",
    response_model=SessionsOut,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE,
)
def plan_sessions(
    body: SessionPlanIn, uow: UowDep, runtime: RuntimeDep, actor: ActorDep
) -> SessionsOut:
    """Plan a session, or every occurrence of a recurring one (RFC 5545 RRULE)."""
    plan = sessions.SessionPlan(**body.model_dump())
    created = sessions.plan_sessions(uow, plan, runtime.settings.zone, actor=actor)
    return SessionsOut(session_ids=created)


@router.get("/sessions", response_model=SessionPageOut, responses={**NOT_FOUND, **BAD_INPUT})
def list_sessions(
    db: SessionDep,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    *,
    start: Annotated[Day | None, Query(description="first local day the session starts on")] = None,
    end: Annotated[Day | None, Query(description="day after the last")] = None,
    org_unit: Annotated[
        str | None,
        Query(min_length=1, max_length=32, description="audience names this unit or a sub-unit"),
    ] = None,
    activity_type: Annotated[
        str | None, Query(min_length=1, max_length=32, description="activity type code")
    ] = None,
    status: Annotated[SessionStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> SessionPageOut:
    """Sessions by start day, audience org unit, activity type and status, earliest first."""
    # An org admin lists sessions for its own subtree at most.
    unit = narrowed_unit_code(db.connection(), principal, org_unit)
    wanted = sessions.SessionFilter(start, end, unit, activity_type, status)
    page = sessions.list_sessions(
        db, wanted, runtime.clock.now(), runtime.settings.zone, limit=limit, offset=offset
    )
    return SessionPageOut.model_validate(page)


@router.get("/sessions/{session_id}", response_model=SessionOut, responses=NOT_FOUND)
def get_session(session_id: SessionId, db: SessionDep, runtime: RuntimeDep) -> SessionOut:
    """One session with its settings, rooms, audience and series."""
    return SessionOut.model_validate(sessions.session_detail(db, session_id, runtime.clock.now()))


@router.patch("/sessions/{session_id}", response_model=SessionOut, responses=WRITE)
def edit_session(
    session_id: SessionId,
    body: SessionUpdateIn,
    *,
    uow: UowDep,
    db: SessionDep,
    runtime: RuntimeDep,
    actor: ActorDep,
) -> SessionOut:
    """Change a session before its check-in opens; 409 once it has opened, closed or cancelled."""
    now = runtime.clock.now()
    sessions.edit_session(
        uow, session_id, sessions.SessionChanges(**body.model_dump()), now, actor=actor
    )
    return SessionOut.model_validate(sessions.session_detail(db, session_id, now))


@router.post(
    "/series", response_model=SeriesOut, status_code=status.HTTP_201_CREATED, responses=WRITE
)
def group_series(body: SeriesIn, uow: UowDep, actor: ActorDep) -> SeriesOut:
    """Group sessions into a series: attending any one occurrence fulfils it (make-up path)."""
    return SeriesOut(
        series_id=sessions.group_series(uow, body.title, body.session_ids, actor=actor)
    )


@router.get("/series", response_model=list[SeriesDetailOut])
def list_series(
    db: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[SeriesDetailOut]:
    """Series, newest first, each with its sessions."""
    found = sessions.series_list(db, limit=limit, offset=offset)
    ids = {i for s in found for i in s.session_ids}
    seen = visible_sessions(db.connection(), principal, ids)
    return [SeriesDetailOut.model_validate(s) for s in found if set(s.session_ids) <= seen]


@router.get("/series/{series_id}", response_model=SeriesDetailOut, responses=NOT_FOUND)
def get_series(series_id: Annotated[int, Path(ge=1, le=ID_MAX)], db: SessionDep) -> SeriesDetailOut:
    """One series and its sessions, earliest first."""
    return SeriesDetailOut.model_validate(sessions.series(db, series_id))


@router.post("/sessions/{session_id}/roster", response_model=RosterOut, responses=WRITE)
def freeze_roster(session_id: SessionId, uow: UowDep, runtime: RuntimeDep) -> RosterOut:
    """Freeze (or read) the expected roster: the audience's membership at the session's start."""
    members = sessions.freeze(uow, session_id, runtime.settings.zone)
    return RosterOut(session_id=session_id, member_ids=members)


@router.post(
    "/sessions/{session_id}/cancel", status_code=status.HTTP_204_NO_CONTENT, responses=WRITE
)
def cancel_session(
    session_id: SessionId, body: ReasonIn, uow: UowDep, runtime: RuntimeDep, actor: ActorDep
) -> None:
    """Cancel a session: it takes no more taps and is never scored."""
    sessions.cancel(uow, session_id, body.reason, runtime.clock.now(), actor=actor)


@router.post("/sessions/{session_id}/close", response_model=ClosedOut, responses=WRITE)
def close_session(
    session_id: SessionId, uow: UowDep, runtime: RuntimeDep, actor: ActorDep
) -> ClosedOut:
    """Decide absences and settle points; 409 `not_ready` while readers may still hold taps."""
    settings = runtime.settings
    closed = sessions.close(
        uow,
        session_id,
        runtime.clock.now(),
        settings.zone,
        grace=settings.absence_grace,
        actor=actor,
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
    request_id: Annotated[int, Path(ge=1, le=ID_MAX)],
    body: LeaveDecisionIn,
    uow: UowDep,
    runtime: RuntimeDep,
) -> LeaveOut:
    """Approve or reject a pending leave request, naming the approver."""
    decided = leave.decide(
        uow, request_id, approve=body.approve, approver=body.approver, now=runtime.clock.now()
    )
    return LeaveOut(id=request_id, status=decided)


@router.get(
    "/sessions/{session_id}/attendance", response_model=SessionAttendanceOut, responses=NOT_FOUND
)
def get_session_attendance(
    db: SessionDep, session_id: SessionId, principal: PrincipalDep
) -> SessionAttendanceOut:
    """Who attended a session, with status and check-in time (an org admin: its members)."""
    found = session_attendance(db, session_id)
    seen = visible_employee_nos(
        db.connection(), principal, (a.employee_no for a in found.attendees)
    )
    found = replace(found, attendees=[a for a in found.attendees if a.employee_no in seen])
    return SessionAttendanceOut.model_validate(found)
