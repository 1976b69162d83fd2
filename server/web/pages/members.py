"""Members and cards: search (name, pinyin initials, employee number), a member's record, cards."""

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.domain.cards import CardStatus
from server.services import cards, members_search
from server.services.unit_of_work import UnitOfWork
from server.web.auth import PrincipalDep, WriterDep
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/members", include_in_schema=False)

PAGE: Final = 50


@router.get("", response_class=HTMLResponse)
def members_page(
    *,
    request: Request,
    principal: PrincipalDep,
    db: SessionDep,
    runtime: RuntimeDep,
    q: str = "",
    page: int = 1,
) -> HTMLResponse:
    """Search members; HTMX asks for the results table alone as one types."""
    members_search.refresh_pinyin(
        UnitOfWork(runtime.database.write_sessions), runtime.database.sessions
    )
    page = max(1, page)
    total, hits = members_search.search(db, principal, q, limit=PAGE, offset=(page - 1) * PAGE)
    context = {"q": q, "hits": hits, "total": total, "page": page, "pages": -(-total // PAGE)}
    if request.headers.get("hx-request") and request.headers.get("hx-target") == "member-results":
        return render(request, "members/_results.html", context)
    return render(request, "members/list.html", context)


@router.get("/{member_id:int}", response_class=HTMLResponse)
def member_page(
    request: Request, member_id: int, principal: PrincipalDep, db: SessionDep, done: str = ""
) -> HTMLResponse:
    """A member: cards, attendance history and points ledger."""
    record = members_search.member_record(db, principal, member_id)
    return render(
        request,
        "members/detail.html",
        {"member": record, "done": done, "techs": ["iso14443a", "iso14443b", "felica", "iso7816"]},
    )


@router.post("/{member_id:int}/cards")
def issue(
    *,
    member_id: int,
    principal: WriterDep,
    uow: UowDep,
    runtime: RuntimeDep,
    uid: Annotated[str, Form()],
    tech: Annotated[str, Form()] = "iso14443a",
) -> RedirectResponse:
    """Issue a new card."""
    cards.issue_card(
        uow, principal, member_id=member_id, tech=tech, uid=uid, now=runtime.clock.now()
    )
    return redirect(f"/admin/members/{member_id}?done=issued")


@router.post("/{member_id:int}/cards/{card_id:int}/replace")
def replace(
    *,
    member_id: int,
    card_id: int,
    principal: WriterDep,
    uow: UowDep,
    runtime: RuntimeDep,
    uid: Annotated[str, Form()],
    tech: Annotated[str, Form()] = "iso14443a",
) -> RedirectResponse:
    """Replace a card with a new one."""
    cards.replace_card(uow, principal, card_id=card_id, tech=tech, uid=uid, now=runtime.clock.now())
    return redirect(f"/admin/members/{member_id}?done=replaced")


@router.post("/{member_id:int}/cards/{card_id:int}/lost")
def lost(
    *, member_id: int, card_id: int, principal: WriterDep, uow: UowDep, runtime: RuntimeDep
) -> RedirectResponse:
    """Report a card lost."""
    cards.set_card_status(
        uow, principal, card_id=card_id, status=CardStatus.LOST, now=runtime.clock.now()
    )
    return redirect(f"/admin/members/{member_id}?done=lost")


@router.post("/{member_id:int}/cards/{card_id:int}/revoke")
def revoke(
    *, member_id: int, card_id: int, principal: WriterDep, uow: UowDep, runtime: RuntimeDep
) -> RedirectResponse:
    """Revoke a card."""
    cards.set_card_status(
        uow, principal, card_id=card_id, status=CardStatus.REVOKED, now=runtime.clock.now()
    )
    return redirect(f"/admin/members/{member_id}?done=revoked")
