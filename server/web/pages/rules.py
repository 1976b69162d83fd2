"""Console page: versioned points rules, a new version with its effective date, and re-scoring.

Rules hold for the whole organisation, so only a super admin adds a version or
re-scores; everyone may read them. Re-scoring always shows its preview (who
gains or loses what) before it is applied, and applying is audited.
"""

import json
from dataclasses import asdict
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.db.models import AttendanceSession, Member
from server.domain.ledger import Change
from server.errors import DomainError
from server.services import rules, settlement
from server.services.unit_of_work import UnitOfWork
from server.web.auth import PrincipalDep, SuperAdminDep, web_settings
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/rules", include_in_schema=False)


def _page(
    request: Request,
    db: Session,
    *,
    body: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    connection = db.connection()
    stored = rules.stored_versions(connection)
    base = rules.base_rules(connection)
    latest = stored[-1].body if stored else rules.rule_set_to_json(base)
    return render(
        request,
        "rules/index.html",
        {
            "base": {"version": base.version, "activities": base.activities},
            "versions": stored,
            "body": body if body is not None else json.dumps(latest, ensure_ascii=False, indent=2),
            "error": error,
        },
    )


@router.get("", response_class=HTMLResponse)
def rules_page(request: Request, principal: PrincipalDep, db: SessionDep) -> HTMLResponse:
    """Every rule version by effective date, and the forms to add one and re-score."""
    return _page(request, db)


@router.post("", response_model=None)
def add_version(
    request: Request,
    *,
    principal: SuperAdminDep,
    db: SessionDep,
    uow: UowDep,
    version: Annotated[str, Form()],
    effective_from: Annotated[date, Form()],
    body: Annotated[str, Form()],
) -> HTMLResponse | RedirectResponse:
    """Store a new rule version from its JSON body; a bad body is shown again with the reason."""
    try:
        parsed: Any = json.loads(body)
        if not isinstance(parsed, dict):
            raise DomainError("the rules must be a JSON object")
        rule_set = rules.rule_set_from_json(version.strip(), effective_from, parsed)
        rules.store_rule_version(uow, rule_set, actor=principal.username)
    except json.JSONDecodeError as exc:
        # Shown on the form with the body as typed, so nothing is lost.
        return _page(request, db, body=body, error=f"JSON: {exc}")
    except DomainError as exc:
        return _page(request, db, body=body, error=str(exc))
    return redirect("/admin/rules?done=1")


def _described(db: Session, changes: list[Change]) -> list[dict[str, object]]:
    """Changes with the member's number and name and the session's title."""
    members = {
        m: (no, name)
        for m, no, name in db.execute(
            select(Member.id, Member.employee_no, Member.name).where(
                Member.id.in_({c.member_id for c in changes})
            )
        )
    }
    titles = dict(
        db.execute(
            select(AttendanceSession.id, AttendanceSession.title).where(
                AttendanceSession.id.in_({c.session_id for c in changes})
            )
        ).all()
    )
    return [
        {
            **asdict(c),
            "delta": c.delta,
            "employee_no": members.get(c.member_id, ("", ""))[0],
            "name": members.get(c.member_id, ("", ""))[1],
            "title": titles.get(c.session_id, ""),
        }
        for c in changes
    ]


def _rescore(
    request: Request,
    uow: UnitOfWork,
    runtime: RuntimeDep,
    start: date,
    end: date,
    *,
    actor: str | None,
) -> list[Change]:
    return settlement.rescore(
        uow,
        start,
        end,
        apply_changes=actor is not None,
        now=runtime.clock.now(),
        zone=web_settings(request).zone,
        actor=actor,
    )


@router.post("/preview", response_class=HTMLResponse)
def preview(
    request: Request,
    *,
    principal: SuperAdminDep,
    db: SessionDep,
    uow: UowDep,
    runtime: RuntimeDep,
    start: Annotated[date, Form()],
    end: Annotated[date, Form()],
) -> HTMLResponse:
    """What re-scoring closed sessions starting in [start, end) would change; nothing is written."""
    changes = _rescore(request, uow, runtime, start, end, actor=None)
    return render(
        request,
        "rules/preview.html",
        {"changes": _described(db, changes), "start": start, "end": end},
    )


@router.post("/rescore")
def apply_rescore(
    request: Request,
    *,
    principal: SuperAdminDep,
    uow: UowDep,
    runtime: RuntimeDep,
    start: Annotated[date, Form()],
    end: Annotated[date, Form()],
) -> RedirectResponse:
    """Apply a re-score after its preview: reversals and new credits, never edits."""
    changes = _rescore(request, uow, runtime, start, end, actor=principal.username)
    return redirect(f"/admin/rules?rescored={len(changes)}")
