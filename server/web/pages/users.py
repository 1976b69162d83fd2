"""Console users and their roles (super admins only)."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from server.api.deps import RuntimeDep, SessionDep, UowDep
from server.db.models import OrgUnit
from server.services import users as user_service
from server.services.auth import Role
from server.web.auth import SuperAdminDep
from server.web.rendering import redirect, render

router = APIRouter(prefix="/admin/users", include_in_schema=False)


def _units(db: SessionDep) -> list[tuple[int, str, str]]:
    return [
        (row.id, row.code, row.name)
        for row in db.execute(select(OrgUnit.id, OrgUnit.code, OrgUnit.name).order_by(OrgUnit.code))
    ]


def _unit_id(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None


@router.get("", response_class=HTMLResponse)
def users_page(
    request: Request, principal: SuperAdminDep, db: SessionDep, done: str | None = None
) -> HTMLResponse:
    """Every console user, and a form to add one."""
    return render(
        request,
        "users/list.html",
        {
            "users": user_service.list_users(db),
            "units": _units(db),
            "roles": list(Role),
            "done": done,
        },
    )


@router.post("")
def create(
    *,
    principal: SuperAdminDep,
    uow: UowDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    role: Annotated[Role, Form()],
    org_unit_id: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Add a user."""
    user_service.create_user(
        uow,
        username=username,
        password=password,
        role=role,
        org_unit_id=_unit_id(org_unit_id),
        actor=principal.username,
    )
    return redirect("/admin/users?done=created")


@router.get("/{user_id}", response_class=HTMLResponse)
def user_page(
    request: Request, user_id: int, principal: SuperAdminDep, db: SessionDep
) -> HTMLResponse:
    """One user: role, unit, status, password."""
    return render(
        request,
        "users/edit.html",
        {"user": user_service.get_user(db, user_id), "units": _units(db), "roles": list(Role)},
    )


@router.post("/{user_id}")
def update(
    *,
    user_id: int,
    principal: SuperAdminDep,
    uow: UowDep,
    runtime: RuntimeDep,
    role: Annotated[Role, Form()],
    org_unit_id: Annotated[str, Form()] = "",
    disabled: Annotated[bool, Form()] = False,
) -> RedirectResponse:
    """Change a user's role, unit or status."""
    user_service.update_user(
        uow,
        user_id,
        role=role,
        org_unit_id=_unit_id(org_unit_id),
        disabled=disabled,
        now=runtime.clock.now(),
        actor=principal.username,
    )
    return redirect("/admin/users?done=updated")


@router.post("/{user_id}/password")
def reset_password(
    *,
    user_id: int,
    principal: SuperAdminDep,
    uow: UowDep,
    runtime: RuntimeDep,
    password: Annotated[str, Form()],
) -> RedirectResponse:
    """Give a user a new password."""
    user_service.set_password(
        uow, user_id, password, now=runtime.clock.now(), actor=principal.username
    )
    return redirect("/admin/users?done=password")
