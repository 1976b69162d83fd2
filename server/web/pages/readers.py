"""Console page: card readers with their online state, outbox depth, clock skew and last report.

Readers and rooms are shared by the whole organisation: every console user may
look, only a super admin changes a reader's name, room or mode.
"""

from datetime import datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from protocol import ReaderState, TapMode
from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.db.models import Reader, Room
from server.services.readers import ReaderChanges, change_reader
from server.web.auth import PrincipalDep, SuperAdminDep
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/readers", include_in_schema=False)

# A reader that has sent nothing for this long is shown as silent even if it said online.
SILENT_AFTER: Final = timedelta(minutes=10)


def reader_state(state: str | None, last_status_at: datetime | None, now: datetime) -> str:
    """online, offline, silent (online but not heard from lately) or unknown."""
    if state is None:
        return "unknown"
    if state == ReaderState.ONLINE.value and (
        last_status_at is None or now - last_status_at > SILENT_AFTER
    ):
        return "silent"
    return state


@router.get("", response_class=HTMLResponse)
def readers_page(
    request: Request, principal: PrincipalDep, db: SessionDep, runtime: RuntimeDep
) -> HTMLResponse:
    """Every reader and how it is doing; refreshes itself every 15 seconds."""
    now = runtime.clock.now()
    rows = db.execute(
        select(Reader, Room.code, Room.name)
        .outerjoin(Room, Room.id == Reader.room_id)
        .order_by(Reader.reader_id)
    ).all()
    readers = [
        {
            "reader": reader,
            "room_code": room_code,
            "room_name": room_name,
            "state": reader_state(reader.state, reader.last_status_at, now),
        }
        for reader, room_code, room_name in rows
    ]
    rooms = db.execute(select(Room.code, Room.name).order_by(Room.code)).all()
    template = "readers/_table.html" if request.headers.get("hx-request") else "readers/list.html"
    return render(
        request,
        template,
        {"readers": readers, "rooms": rooms, "modes": list(TapMode), "now": now},
    )


@router.post("/{reader_id}")
def change(
    *,
    reader_id: str,
    principal: SuperAdminDep,
    uow: UowDep,
    mode: Annotated[TapMode, Form()],
    room_code: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Change a reader's name, room or mode."""
    change_reader(
        uow,
        reader_id,
        ReaderChanges(name.strip()[:100] or None, room_code.strip() or None, mode),
        actor=principal.username,
    )
    return redirect("/admin/readers?done=1")
