"""GET /api/v1/sessions/{session_id}/attendance."""

from typing import Annotated

from fastapi import APIRouter, Path

from server.api.deps import SessionDep
from server.api.errors import NOT_FOUND
from server.api.schemas import SessionAttendanceOut
from server.services.attendance import session_attendance

router = APIRouter(prefix="/sessions", tags=["sessions"])


@router.get("/{session_id}/attendance", response_model=SessionAttendanceOut, responses=NOT_FOUND)
def get_session_attendance(
    db: SessionDep, session_id: Annotated[int, Path(ge=1)]
) -> SessionAttendanceOut:
    """Who attended a session, with status and check-in time."""
    return SessionAttendanceOut.model_validate(session_attendance(db, session_id))
