"""Today: sessions running and coming up with live check-in counts, reader trouble, the inbox."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from server.api.deps import RuntimeDep, SessionDep
from server.services.today import sessions_now, today
from server.web.auth import PrincipalDep
from server.web.rendering import render

router = APIRouter(prefix="/admin", include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def today_page(
    request: Request, principal: PrincipalDep, db: SessionDep, runtime: RuntimeDep
) -> HTMLResponse:
    """The console's home page."""
    now = runtime.clock.now()
    return render(request, "today.html", {"today": today(db, principal, now), "now": now})


@router.get("/today/sessions", response_class=HTMLResponse)
def today_sessions(
    request: Request, principal: PrincipalDep, db: SessionDep, runtime: RuntimeDep
) -> HTMLResponse:
    """The sessions table alone, polled by HTMX for live counts."""
    now = runtime.clock.now()
    return render(
        request, "today/_sessions.html", {"sessions": sessions_now(db, principal, now), "now": now}
    )
