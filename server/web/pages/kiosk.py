"""The kiosk page: a reader in kiosk mode, and a screen showing whoever taps it their figures.

`/kiosk?token=…` pairs the browser once: the token goes into an HttpOnly cookie
scoped to /kiosk and the browser is sent on to the token-less `/kiosk`, so the
token never stays in the address bar or the history. The page then listens on
`/kiosk/events` (server-sent events) for taps on its reader; each tap's figures
are computed for that one member when the tap arrives, and rendered here.
"""

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Final

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from protocol import AckResult
from server.api.deps import RuntimeDep
from server.errors import RollcallError
from server.kiosk import sse
from server.kiosk.devices import Device, DeviceKind, authenticate, touch
from server.kiosk.errors import DeviceRefused
from server.kiosk.events import TapEvent
from server.kiosk.views import kiosk_view
from server.runtime import ServerRuntime
from server.services.unit_of_work import UnitOfWork
from server.settings import Settings
from server.web.auth import web_settings
from server.web.rendering import environment, redirect, render

log = logging.getLogger(__name__)

router = APIRouter(tags=["kiosk"], include_in_schema=False)

KIOSK_COOKIE: Final = "rollcall_kiosk"
KIOSK_PATH: Final = "/kiosk"
# How long the pairing cookie lasts; revoking the device ends it sooner.
COOKIE_MAX_AGE: Final = 365 * 24 * 3600
SettingsDep = Annotated[Settings, Depends(web_settings)]


def pair(
    runtime: ServerRuntime,
    settings: Settings,
    token: str,
    *,
    kind: DeviceKind,
    cookie: str,
    path: str,
) -> RedirectResponse:
    """Check a device token, note its use, and keep it in an HttpOnly cookie only `path` gets.

    The answer sends the browser back to `path` without the token in its address.
    """
    with runtime.database.sessions() as db:
        device = authenticate(db, token, kind)
    touch(UnitOfWork(runtime.database.write_sessions), device.id, runtime.clock.now())
    response = redirect(path)
    response.set_cookie(
        cookie,
        token,
        max_age=COOKIE_MAX_AGE,
        path=path,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="strict",
    )
    return response


def still_paired(runtime: ServerRuntime, token: str | None, kind: DeviceKind) -> bool:
    """Whether a device token is still good: checked again while its stream stays open."""
    try:
        with runtime.database.sessions() as db:
            authenticate(db, token, kind)
    except DeviceRefused:
        return False
    return True


def _kiosk(request: Request, runtime: RuntimeDep) -> Device:
    with runtime.database.sessions() as db:
        return authenticate(db, request.cookies.get(KIOSK_COOKIE), DeviceKind.KIOSK)


KioskDep = Annotated[Device, Depends(_kiosk)]


@router.get(KIOSK_PATH, response_model=None)
def kiosk_page(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse | RedirectResponse:
    """The kiosk screen; with ?token=… pair this browser first and come back without it."""
    if token is not None:
        return pair(
            runtime, settings, token, kind=DeviceKind.KIOSK, cookie=KIOSK_COOKIE, path=KIOSK_PATH
        )
    device = _kiosk(request, runtime)
    return render(
        request,
        "kiosk/index.html",
        {
            "device": device,
            "clear_ms": int(settings.kiosk_clear_seconds * 1000),
            "register_hint": settings.kiosk_register_hint,
        },
    )


def _fragment(template: str, context: dict[str, object]) -> str:
    return environment().get_template(template).render(context)


def _tap_card(runtime: ServerRuntime, settings: Settings, event: TapEvent) -> dict[str, object]:
    """What the kiosk shows for one tap, as the JSON of an SSE `tap` event."""
    base: dict[str, object] = {"zone": settings.zone}
    if event.result is AckResult.ACCEPTED and event.member_id is not None:
        with runtime.database.sessions() as db:
            view = kiosk_view(
                db.connection(),
                event.member_id,
                now=runtime.clock.now(),
                zone=settings.zone,
                mask=settings.kiosk_name_mask,
            )
        html = _fragment("kiosk/_card.html", {**base, "view": view})
        kind = "member"
    elif event.result is AckResult.UNKNOWN_CARD:
        html = _fragment("kiosk/_unknown.html", {**base, "hint": settings.kiosk_register_hint})
        kind = "unknown"
    else:
        html = _fragment("kiosk/_refused.html", {**base, "result": event.result.value})
        kind = "refused"
    return {"event_id": str(event.event_id), "kind": kind, "html": html}


@router.get(f"{KIOSK_PATH}/events")
async def kiosk_events(
    request: Request, runtime: RuntimeDep, settings: SettingsDep, device: KioskDep
) -> StreamingResponse:
    """Server-sent events: one `tap` event per tap on this kiosk's reader."""
    reader_id = device.reader_id
    token = request.cookies.get(KIOSK_COOKIE)
    await to_thread.run_sync(
        touch, UnitOfWork(runtime.database.write_sessions), device.id, runtime.clock.now()
    )

    async def stream() -> AsyncIterator[str]:
        # Subscribed before `ready`, which the page waits for: no tap after it is missed.
        # (Inside the stream, so a client gone before the body starts leaves nothing behind.)
        with runtime.events.subscribe(
            lambda e: e.is_kiosk and e.reader_id == reader_id
        ) as subscription:
            yield sse.RETRY
            yield sse.frame("ready", {"reader_id": reader_id})
            idle = 0.0
            while not await request.is_disconnected():
                events = await subscription.next(1.0)
                if not events:
                    idle += 1.0
                    if idle >= sse.KEEPALIVE_SECONDS:
                        idle = 0.0
                        # A revoked kiosk stops here; its reconnection is refused.
                        if not await to_thread.run_sync(
                            still_paired, runtime, token, DeviceKind.KIOSK
                        ):
                            return
                        yield sse.KEEPALIVE
                    continue
                idle = 0.0
                # Only the latest tap matters to the person now standing at the kiosk.
                try:
                    card = await to_thread.run_sync(_tap_card, runtime, settings, events[-1])
                except RollcallError as exc:
                    log.warning("kiosk %s: tap not shown: %s", device.id, exc)
                    continue
                yield sse.frame("tap", card)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=sse.HEADERS)
