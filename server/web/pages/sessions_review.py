"""Session review (/admin/sessions/{id}): attendance by status, leave, manual check-in, void."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.errors import DomainError
from server.services import review
from server.web.auth import PrincipalDep, WriterDep, web_settings
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/sessions", include_in_schema=False)


@router.get("/{session_id:int}", response_class=HTMLResponse)
def review_page(
    *,
    request: Request,
    session_id: int,
    principal: PrincipalDep,
    db: SessionDep,
    runtime: RuntimeDep,
    done: str | None = None,
) -> HTMLResponse:
    """Who is expected and how each attended, with the corrections a writer may make."""
    now = runtime.clock.now()
    return render(
        request,
        "sessions_review/review.html",
        {
            "review": review.session_review(db, principal, session_id, now),
            "now": now,
            "done": done,
        },
    )


def _local_time(request: Request, value: str) -> datetime:
    """A datetime-local form value (the configured zone) as aware UTC."""
    try:
        naive = datetime.fromisoformat(value)
    except ValueError as exc:
        raise DomainError(f"not a date and time: {value!r}") from exc
    return naive.replace(tzinfo=web_settings(request).zone)


@router.post("/{session_id:int}/leave")
def leave(
    *,
    request: Request,
    session_id: int,
    principal: WriterDep,
    uow: UowDep,
    runtime: RuntimeDep,
    employee_no: Annotated[str, Form()],
    reason: Annotated[str, Form()],
) -> RedirectResponse:
    """Excuse a member (approved leave)."""
    review.mark_leave(
        uow,
        principal,
        session_id=session_id,
        employee_no=employee_no,
        reason=reason,
        now=runtime.clock.now(),
        zone=web_settings(request).zone,
    )
    return redirect(f"/admin/sessions/{session_id}?done=leave")


@router.post("/{session_id:int}/manual-checkin")
def manual_checkin(
    *,
    request: Request,
    session_id: int,
    principal: WriterDep,
    uow: UowDep,
    runtime: RuntimeDep,
    employee_no: Annotated[str, Form()],
    reason: Annotated[str, Form()],
    at: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Check in a member who forgot the card (at the given time, or now)."""
    now = runtime.clock.now()
    review.manual_checkin(
        uow,
        principal,
        session_id=session_id,
        employee_no=employee_no,
        at=_local_time(request, at) if at.strip() else now,
        reason=reason,
        now=now,
        zone=web_settings(request).zone,
    )
    return redirect(f"/admin/sessions/{session_id}?done=checkin")


@router.post("/{session_id:int}/void")
def void(
    *,
    request: Request,
    session_id: int,
    principal: WriterDep,
    uow: UowDep,
    runtime: RuntimeDep,
    employee_no: Annotated[str, Form()],
    reason: Annotated[str, Form()],
) -> RedirectResponse:
    """Void a wrong check-in."""
    review.void_checkin(
        uow,
        principal,
        session_id=session_id,
        employee_no=employee_no,
        reason=reason,
        now=runtime.clock.now(),
        zone=web_settings(request).zone,
    )
    return redirect(f"/admin/sessions/{session_id}?done=void")
