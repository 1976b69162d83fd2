"""Kiosks and live screens in the console: pair a device (its token shown once), list, revoke.

Pairing a screen is an organisation-wide act (a kiosk shows whoever taps on its
reader): super admins create and revoke; auditors and super admins see the list.
"""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.db.models import Reader, Room
from server.kiosk.devices import (
    DeviceKind,
    DeviceRequest,
    create_device,
    list_devices,
    revoke_device,
)
from server.services.auth import Forbidden
from server.web.auth import PrincipalDep, SuperAdminDep
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/devices", include_in_schema=False)


def _page(request: Request, db: Session, extra: dict[str, object] | None = None) -> HTMLResponse:
    readers = db.execute(select(Reader.reader_id, Reader.name).order_by(Reader.reader_id)).all()
    rooms = db.execute(select(Room.code, Room.name).order_by(Room.code)).all()
    context: dict[str, object] = {
        "devices": list_devices(db),
        "readers": readers,
        "rooms": rooms,
        **(extra or {}),
    }
    return render(request, "devices/index.html", context)


@router.get("", response_class=HTMLResponse)
def devices_page(
    request: Request, principal: PrincipalDep, db: SessionDep, done: str = ""
) -> HTMLResponse:
    """Every device token (never the tokens themselves) and the form to pair a new one."""
    if principal.scope_unit_ids is not None:
        raise Forbidden("kiosks and screens are managed organisation-wide")
    return _page(request, db, {"done": done})


@router.post("", response_class=HTMLResponse)
def create(
    *,
    request: Request,
    principal: SuperAdminDep,
    uow: UowDep,
    db: SessionDep,
    runtime: RuntimeDep,
    kind: Annotated[DeviceKind, Form()],
    reader_id: Annotated[str, Form()] = "",
    session_id: Annotated[str, Form()] = "",
    room_code: Annotated[str, Form()] = "",
    label: Annotated[str, Form(max_length=100)] = "",
) -> HTMLResponse:
    """Pair a device; the page shows its token and URL this once."""
    reader = reader_id.strip() or None
    session = int(session_id) if session_id.strip().isdigit() else None
    room = room_code.strip() or None
    # Each form sends the other kind's fields empty; a session number wins over a room.
    if kind is DeviceKind.KIOSK:
        session = room = None
    else:
        reader = None
        room = None if session is not None else room
    device, token = create_device(
        uow,
        DeviceRequest(kind, label, reader_id=reader, session_id=session, room_code=room),
        actor=principal.username,
        now=runtime.clock.now(),
    )
    url = f"{str(request.base_url).rstrip('/')}{device.path}?token={token}"
    return _page(request, db, {"created": device, "token": token, "url": url})


@router.post("/{device_id:int}/revoke")
def revoke(
    device_id: int, principal: SuperAdminDep, uow: UowDep, runtime: RuntimeDep
) -> RedirectResponse:
    """Revoke a device: its screen stops at once."""
    revoke_device(uow, device_id, actor=principal.username, now=runtime.clock.now())
    return redirect("/admin/devices?done=revoked")
