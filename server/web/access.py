"""A guard on every console page: objects named in the path must lie in the principal's scope.

Checked before a form is read, so a branch's session, member, card or org unit
answers 404 to another branch's org admin whatever the form held. Each page still
scopes its own queries; this is the floor under all of them.
"""

from anyio import to_thread
from fastapi import Request
from sqlalchemy import Connection, select

from server.api.auth import OptionalPrincipalDep, runtime_of
from server.db.models import Card, Member, OrgUnit
from server.errors import NotFound
from server.services.auth import Principal
from server.services.auth_scope import require_member, require_session


def _unit(connection: Connection, principal: Principal, code: str) -> None:
    unit_id = connection.scalar(select(OrgUnit.id).where(OrgUnit.code == code))
    if unit_id is None or not principal.allows_unit(unit_id):
        raise NotFound("org unit", code)


def _check(connection: Connection, principal: Principal, path: str, params: dict[str, str]) -> None:
    if "session_id" in params and params["session_id"].isdigit():
        require_session(connection, principal, int(params["session_id"]))
    if "member_id" in params and params["member_id"].isdigit():
        require_member(connection, principal, int(params["member_id"]))
    if "card_id" in params and params["card_id"].isdigit():
        holder = connection.scalar(select(Card.member_id).where(Card.id == int(params["card_id"])))
        if holder is None:
            raise NotFound("card", params["card_id"])
        try:
            require_member(connection, principal, holder)
        except NotFound as exc:
            raise NotFound("card", params["card_id"]) from exc
    if "employee_no" in params:
        member_id = connection.scalar(
            select(Member.id).where(Member.employee_no == params["employee_no"])
        )
        if member_id is None:
            raise NotFound("member with employee number", params["employee_no"])
        require_member(connection, principal, member_id)
    if "unit" in params:
        _unit(connection, principal, params["unit"])
    if "code" in params and path.startswith("/admin/org/"):
        # Elsewhere a {code} names a room or an activity type, not an org unit.
        _unit(connection, principal, params["code"])


async def page_access(request: Request, principal: OptionalPrincipalDep) -> None:
    """NotFound when a console path names an object outside the signed-in principal's scope."""
    path = request.url.path
    params = {k: str(v) for k, v in request.path_params.items()}
    if not params or principal is None or principal.scope_unit_ids is None:
        return
    if not (path == "/admin" or path.startswith("/admin/")):
        return
    database = runtime_of(request).database

    def check() -> None:
        with database.sessions() as db:
            _check(db.connection(), principal, path, params)

    await to_thread.run_sync(check)
