"""The unknown-card inbox: bind a card to a member in one step, or enrol one by tapping it."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.db.models import Member
from server.errors import NotFound
from server.services import cards
from server.services.auth_scope import member_condition
from server.web.auth import PrincipalDep, WriterDep
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/unknown-cards", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def inbox_page(
    request: Request, principal: PrincipalDep, db: SessionDep, done: str = ""
) -> HTMLResponse:
    """Cards waiting for a holder, and enroll-mode readers to enrol by tap."""
    return render(
        request,
        "unknown_cards/inbox.html",
        {"cards": cards.inbox(db), "readers": cards.enrol_readers(db), "done": done},
    )


@router.post("/{unknown_id:int}/bind")
def bind(
    *,
    unknown_id: int,
    principal: WriterDep,
    uow: UowDep,
    runtime: RuntimeDep,
    employee_no: Annotated[str, Form()],
) -> RedirectResponse:
    """Issue the card to the member with this employee number."""
    cards.bind_unknown(
        uow, principal, unknown_id=unknown_id, employee_no=employee_no, now=runtime.clock.now()
    )
    return redirect("/admin/unknown-cards?done=bound")


@router.post("/enrol")
def start(
    *,
    principal: WriterDep,
    uow: UowDep,
    db: SessionDep,
    runtime: RuntimeDep,
    employee_no: Annotated[str, Form()],
    reader_id: Annotated[str, Form()],
) -> RedirectResponse:
    """Pick a member; the next card tapped on the reader becomes theirs."""
    member_id = db.scalar(
        select(Member.id).where(
            Member.employee_no == employee_no.strip(), member_condition(principal)
        )
    )
    if member_id is None:
        raise NotFound("member with employee number", employee_no)
    request_id = cards.start_enrolment(
        uow, principal, reader_id=reader_id, member_id=member_id, now=runtime.clock.now()
    )
    return redirect(f"/admin/unknown-cards/enrol/{request_id}")


@router.get("/enrol/{request_id:int}", response_class=HTMLResponse)
def enrolment(
    request: Request, request_id: int, principal: WriterDep, uow: UowDep, runtime: RuntimeDep
) -> HTMLResponse:
    """Wait for the tap; HTMX polls the status fragment until the card is bound."""
    state = cards.poll_enrolment(uow, principal, request_id, runtime.clock.now())
    template = (
        "unknown_cards/_enrolment.html"
        if request.headers.get("hx-request")
        else "unknown_cards/enrolment.html"
    )
    return render(request, template, {"enrolment": state})
