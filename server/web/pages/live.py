"""The live check-in screen (签到大屏) of a session, for a projector in the hall.

A screen token pairs the browser as a kiosk token does (cookie scoped to /live).
A screen paired with a session shows that session; one paired with a room shows
the session in progress there (else today's next). Signed-in console users of
the whole organisation may open any session's screen too. Figures are recomputed
from the database when check-ins of the session commit, so they always equal
what the database says, however many events a burst brings.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Final

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from server.api.deps import RuntimeDep
from server.errors import NotFound, RollcallError
from server.kiosk import sse
from server.kiosk.devices import Device, DeviceKind, authenticate
from server.kiosk.errors import DeviceRefused
from server.kiosk.views import LiveFigures, live_figures, room_session, session_rooms
from server.runtime import ServerRuntime
from server.settings import Settings
from server.web.auth import OptionalPrincipalDep, Principal, web_settings
from server.web.pages.kiosk import pair, still_paired
from server.web.rendering import environment, redirect, render

log = logging.getLogger(__name__)

router = APIRouter(tags=["live"], include_in_schema=False)

SCREEN_COOKIE: Final = "rollcall_screen"
LIVE_PATH: Final = "/live"
# A burst of check-ins is shown once it has landed, not once per batch.
COALESCE_SECONDS: Final = 0.2
SettingsDep = Annotated[Settings, Depends(web_settings)]


def _screen(request: Request, runtime: RuntimeDep) -> Device:
    with runtime.database.sessions() as db:
        return authenticate(db, request.cookies.get(SCREEN_COOKIE), DeviceKind.SCREEN)


@router.get(LIVE_PATH, response_model=None)
def live_entry(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse | RedirectResponse:
    """Pair this browser (with ?token=…), then go to the screen's session."""
    if token is not None:
        return pair(
            runtime, settings, token, kind=DeviceKind.SCREEN, cookie=SCREEN_COOKIE, path=LIVE_PATH
        )
    device = _screen(request, runtime)
    session_id = device.session_id
    if session_id is None and device.room_id is not None:
        with runtime.database.sessions() as db:
            session_id = room_session(
                db.connection(), device.room_id, runtime.clock.now(), settings.zone
            )
    if session_id is None:
        return render(request, "live/none.html", {"device": device})
    return redirect(f"{LIVE_PATH}/sessions/{session_id}")


def _allowed(
    request: Request, runtime: ServerRuntime, principal: Principal | None, session_id: int
) -> None:
    """Let in a screen paired with this session (or its room), or an organisation-wide user."""
    if principal is not None and principal.scope_unit_ids is None:
        return
    device = _screen(request, runtime)
    if device.session_id == session_id:
        return
    if device.room_id is not None:
        with runtime.database.sessions() as db:
            if device.room_id in session_rooms(db.connection(), session_id):
                return
    raise DeviceRefused(f"this screen is not paired with session {session_id}")


def _figures(runtime: ServerRuntime, settings: Settings, session_id: int) -> LiveFigures:
    with runtime.database.sessions() as db:
        return live_figures(
            db.connection(), session_id, zone=settings.zone, mask=settings.kiosk_name_mask
        )


def _payload(settings: Settings, figures: LiveFigures) -> dict[str, object]:
    html = (
        environment()
        .get_template("live/_figures.html")
        .render({"figures": figures, "zone": settings.zone})
    )
    return {
        "expected": figures.expected,
        "arrived": figures.arrived,
        "late": figures.late,
        "html": html,
    }


@router.get(f"{LIVE_PATH}/sessions/{{session_id}}", response_class=HTMLResponse)
def live_page(
    session_id: int,
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    principal: OptionalPrincipalDep,
) -> HTMLResponse:
    """The big screen of one session."""
    _allowed(request, runtime, principal, session_id)
    figures = _figures(runtime, settings, session_id)
    return render(request, "live/session.html", {"figures": figures})


@router.get(f"{LIVE_PATH}/sessions/{{session_id}}/events")
async def live_events(
    session_id: int,
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    principal: OptionalPrincipalDep,
) -> StreamingResponse:
    """Server-sent events: `figures` whenever check-ins of the session commit."""
    await to_thread.run_sync(_allowed, request, runtime, principal, session_id)
    # A screen (not a signed-in user) is checked again now and then, so revoking it stops it.
    token = request.cookies.get(SCREEN_COOKIE) if principal is None else None

    async def stream() -> AsyncIterator[str]:
        # Inside the stream, so a client gone before the body starts leaves nothing behind.
        with runtime.events.subscribe(
            lambda e: e.is_arrival and e.session_id == session_id
        ) as subscription:
            yield sse.RETRY
            # Whatever landed between the page's render and this subscription.
            figures = await to_thread.run_sync(_figures, runtime, settings, session_id)
            yield sse.frame("figures", _payload(settings, figures))
            idle = 0.0
            while not await request.is_disconnected():
                events = await subscription.next(1.0)
                if not events:
                    idle += 1.0
                    if idle >= sse.KEEPALIVE_SECONDS:
                        idle = 0.0
                        if token is not None and not await to_thread.run_sync(
                            still_paired, runtime, token, DeviceKind.SCREEN
                        ):
                            return
                        yield sse.KEEPALIVE
                    continue
                idle = 0.0
                await asyncio.sleep(COALESCE_SECONDS)
                await subscription.next(0)  # what came meanwhile is in the figures anyway
                try:
                    figures = await to_thread.run_sync(_figures, runtime, settings, session_id)
                except NotFound:
                    return
                except RollcallError as exc:
                    log.warning("live screen of session %d not updated: %s", session_id, exc)
                    continue
                yield sse.frame("figures", _payload(settings, figures))

    return StreamingResponse(stream(), media_type="text/event-stream", headers=sse.HEADERS)
