"""Console page: the org tree (create, rename, move units), and the scope helpers other pages use.

An org admin sees and changes only their subtree: a unit outside it answers 404,
and only a super admin may add a unit at the top.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.api.deps import SessionDep, UowDep
from server.db.models import Member, OrgUnit
from server.errors import NotFound
from server.services import organisation
from server.services.auth import Forbidden, Principal
from server.web.auth import PrincipalDep, WriterDep
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/org", include_in_schema=False)


@dataclass(frozen=True)
class UnitRow:
    """An org unit as the pages list it."""

    id: int
    code: str
    name: str
    parent_id: int | None
    depth: int = 0
    members: int = 0


def scoped_units(db: Session, principal: Principal) -> list[UnitRow]:
    """The org units a principal may see, as a tree in display order (parents first, by code)."""
    counts = dict(
        db.execute(select(Member.org_unit_id, func.count()).group_by(Member.org_unit_id)).all()
    )
    rows = db.execute(
        select(OrgUnit.id, OrgUnit.code, OrgUnit.name, OrgUnit.parent_id).order_by(OrgUnit.code)
    ).all()
    visible = {i for i, _, _, _ in rows if principal.allows_unit(i)}
    children: dict[int | None, list[tuple[int, str, str, int | None]]] = {}
    for unit_id, code, name, parent_id in rows:
        if unit_id in visible:
            # A unit whose parent is out of sight is a root of what this principal sees.
            key = parent_id if parent_id in visible else None
            children.setdefault(key, []).append((unit_id, code, name, parent_id))
    ordered: list[UnitRow] = []

    def walk(parent: int | None, depth: int) -> None:
        for unit_id, code, name, parent_id in children.get(parent, []):
            ordered.append(UnitRow(unit_id, code, name, parent_id, depth, counts.get(unit_id, 0)))
            walk(unit_id, depth + 1)

    walk(None, 0)
    return ordered


def unit_in_scope(db: Session, principal: Principal, code: str) -> UnitRow:
    """One org unit by code; NotFound if it does not exist or lies outside the scope."""
    row = db.execute(
        select(OrgUnit.id, OrgUnit.code, OrgUnit.name, OrgUnit.parent_id).where(
            OrgUnit.code == code
        )
    ).one_or_none()
    if row is None or not principal.allows_unit(row[0]):
        raise NotFound("org unit", code)
    return UnitRow(*row)


def _unit_of_path(code: str, principal: PrincipalDep, db: SessionDep) -> UnitRow:
    """The org unit a path's {code} names, if in scope; checked before any form is read."""
    return unit_in_scope(db, principal, code)


ScopedUnitDep = Annotated[UnitRow, Depends(_unit_of_path)]


def default_unit(db: Session, principal: Principal) -> UnitRow | None:
    """The first unit at the top of what a principal sees."""
    units = scoped_units(db, principal)
    return units[0] if units else None


@router.get("", response_class=HTMLResponse)
def org_page(
    request: Request, principal: PrincipalDep, db: SessionDep, done: str | None = None
) -> HTMLResponse:
    """The org tree the principal may see, and forms to add and change units."""
    return render(request, "org/tree.html", {"units": scoped_units(db, principal), "done": done})


@router.post("")
def create_unit(
    *,
    principal: WriterDep,
    db: SessionDep,
    uow: UowDep,
    code: Annotated[str, Form()],
    name: Annotated[str, Form()],
    parent_code: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Add a unit under a parent the principal runs (at the top: super admins only)."""
    parent = parent_code.strip() or None
    if parent is None:
        if principal.scope_unit_ids is not None:
            raise Forbidden("only a super admin adds a top-level org unit")
    else:
        unit_in_scope(db, principal, parent)
    db.close()  # the write below takes its own transaction; SQLite allows one writer
    organisation.create_org_unit(uow, code, name, parent, actor=principal.username)
    return redirect("/admin/org?done=created")


@router.post("/{code}")
def change_unit(
    *,
    principal: WriterDep,
    unit: ScopedUnitDep,
    db: SessionDep,
    uow: UowDep,
    name: Annotated[str, Form()],
    parent_code: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Rename a unit and/or move it under another parent, both within the principal's scope."""
    code = unit.code
    parent = parent_code.strip() or None
    if parent is None:
        if principal.scope_unit_ids is not None:
            raise Forbidden("only a super admin moves an org unit to the top")
    else:
        unit_in_scope(db, principal, parent)
    current_parent = (
        None
        if unit.parent_id is None
        else db.scalar(select(OrgUnit.code).where(OrgUnit.id == unit.parent_id))
    )
    db.close()
    organisation.change_org_unit(
        uow,
        code,
        organisation.OrgUnitChanges(name=name, move=parent != current_parent, parent_code=parent),
        actor=principal.username,
    )
    return redirect("/admin/org?done=changed")
