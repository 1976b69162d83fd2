"""Console page: rooms, their readers and sessions; shared by the whole organisation.

Every console user may look; only a super admin adds a room.
"""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.db.models import AttendanceSession, Reader, Room, SessionRoom
from server.services import organisation
from server.web.auth import PrincipalDep, SuperAdminDep
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/rooms", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def rooms_page(
    request: Request, principal: PrincipalDep, db: SessionDep, runtime: RuntimeDep
) -> HTMLResponse:
    """Every room with how many readers it has and how many sessions are still to come."""
    readers = dict(
        db.execute(
            select(Reader.room_id, func.count())
            .where(Reader.room_id.is_not(None))
            .group_by(Reader.room_id)
        ).all()
    )
    upcoming = dict(
        db.execute(
            select(SessionRoom.room_id, func.count())
            .join(AttendanceSession, AttendanceSession.id == SessionRoom.session_id)
            .where(
                AttendanceSession.ends_at > runtime.clock.now(),
                AttendanceSession.cancelled_at.is_(None),
            )
            .group_by(SessionRoom.room_id)
        ).all()
    )
    rooms = [
        {"code": code, "name": name, "readers": readers.get(i, 0), "upcoming": upcoming.get(i, 0)}
        for i, code, name in db.execute(select(Room.id, Room.code, Room.name).order_by(Room.code))
    ]
    return render(request, "rooms/list.html", {"rooms": rooms})


@router.post("")
def create_room(
    *,
    principal: SuperAdminDep,
    uow: UowDep,
    code: Annotated[str, Form()],
    name: Annotated[str, Form()],
) -> RedirectResponse:
    """Add a room."""
    organisation.create_room(uow, code, name, actor=principal.username)
    return redirect("/admin/rooms?done=1")


@router.post("/{code}")
def rename_room(
    *,
    code: str,
    principal: SuperAdminDep,
    uow: UowDep,
    name: Annotated[str, Form()],
) -> RedirectResponse:
    """Give a room a new name."""
    organisation.rename_room(uow, code, name, actor=principal.username)
    return redirect("/admin/rooms?done=1")
