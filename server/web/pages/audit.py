"""The audit log with filters (super admins and auditors; it spans every branch)."""

from datetime import date
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from server.api.deps import SessionDep
from server.audit.chain import verify_chain
from server.errors import DomainError
from server.services.audit_view import AuditFilter, actions, audit_page
from server.services.auth import Forbidden, Role
from server.web.auth import PrincipalDep, web_settings
from server.web.rendering import render

router = APIRouter(prefix="/admin/audit", include_in_schema=False)

PAGE: Final = 50


def _day(value: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError as exc:
        raise DomainError(f"not a date: {value!r}") from exc


@router.get("", response_class=HTMLResponse)
def audit_log(
    *,
    request: Request,
    principal: PrincipalDep,
    db: SessionDep,
    actor: str = "",
    action: str = "",
    target: str = "",
    start: str = "",
    end: str = "",
    page: int = 1,
    verify: bool = False,
) -> HTMLResponse:
    """Audit rows, newest first, filtered by actor, action, target and local dates."""
    if principal.role is Role.ORG_ADMIN:
        raise Forbidden("the audit log spans every branch")
    wanted = AuditFilter(actor, action, target, _day(start), _day(end))
    page = max(1, page)
    total, lines = audit_page(
        db, wanted, web_settings(request).zone, limit=PAGE, offset=(page - 1) * PAGE
    )
    return render(
        request,
        "audit/list.html",
        {
            "lines": lines,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE)),
            "filters": {
                "actor": actor,
                "action": action,
                "target": target,
                "start": start,
                "end": end,
            },
            "actions": actions(db),
            "verified": (verify_chain(db) if verify else "skipped"),
        },
    )
