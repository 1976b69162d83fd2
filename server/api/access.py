"""Who may call what under /api/v1: one dependency on every API router.

- Every request needs a principal: a bearer API token or the console's session
  (whose state-changing requests also carry the CSRF token, see server.web.csrf).
- Auditors read only: any other method is refused (Forbidden, 403).
- Org admins stay inside their subtree. Objects named in the path (a member by
  employee number, a session, an org unit by code, a leave request, a ledger
  entry, a series) outside it answer NotFound (404), as if they did not exist;
  an org unit, member or session named in a request body outside it likewise.
  Sessions an org admin sees but does not own (an audience reaching beyond its
  subtree) may be read, not changed (403). Organisation-wide settings (rooms,
  activity types, categories, rules, re-scoring) are for super admins (403).
  Unknown routes are refused to org admins for writes, so a new route is closed
  until someone decides its scope.
- List endpoints narrow their own queries with `server.services.auth_scope`.
"""

import json
import re
from typing import Any, Final

from anyio import to_thread
from fastapi import Depends, Request
from sqlalchemy import Connection, select

from server.api.auth import PrincipalDep, runtime_of
from server.db.models import (
    LeaveRequestRecord,
    LedgerEntry,
    Member,
    OrgUnit,
    SeriesSession,
)
from server.errors import NotFound
from server.services.auth import Forbidden, Principal, Role
from server.services.auth_scope import owned_sessions, require_member, require_session

_READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# Writes an org admin may make, once the objects they name are checked (method, path pattern).
_SCOPED_WRITES: Final = (
    ("POST", re.compile(r"^/api/v1/members$")),
    ("PATCH", re.compile(r"^/api/v1/members/[^/]+$")),
    ("POST", re.compile(r"^/api/v1/members/[^/]+/(moves|adjustments)$")),
    ("POST", re.compile(r"^/api/v1/sessions$")),
    ("PATCH", re.compile(r"^/api/v1/sessions/\d+$")),
    ("POST", re.compile(r"^/api/v1/sessions/\d+/(roster|cancel|close|leave-requests)$")),
    ("POST", re.compile(r"^/api/v1/leave-requests/\d+/decision$")),
    ("POST", re.compile(r"^/api/v1/ledger/\d+/reversal$")),
    ("POST", re.compile(r"^/api/v1/series$")),
    ("POST", re.compile(r"^/api/v1/org-units$")),
    ("PATCH", re.compile(r"^/api/v1/org-units/[^/]+$")),
    ("POST", re.compile(r"^/api/v1/org-units/[^/]+/publications/[^/]+$")),
)
# Reads of records that span the organisation: not for org admins.
_WIDE_READS: Final = (re.compile(r"^/api/v1/cards/suspected-clones$"),)
_ORG_UNIT_PATH: Final = re.compile(r"^/api/v1/org-units/(?P<code>[^/]+)")


def _unit_id(connection: Connection, code: object) -> int | None:
    if not isinstance(code, str):
        return None
    return connection.scalar(select(OrgUnit.id).where(OrgUnit.code == code))


def _require_unit_code(connection: Connection, principal: Principal, code: object) -> None:
    unit_id = _unit_id(connection, code)
    if unit_id is None or not principal.allows_unit(unit_id):
        raise NotFound("org unit", code)


def _require_employee(connection: Connection, principal: Principal, employee_no: object) -> None:
    member_id = connection.scalar(select(Member.id).where(Member.employee_no == str(employee_no)))
    if member_id is None:
        raise NotFound("member with employee number", employee_no)
    require_member(connection, principal, member_id)


def require_owned_session(connection: Connection, principal: Principal, session_id: int) -> None:
    """NotFound outside the scope; Forbidden unless its whole audience lies inside the subtree."""
    require_session(connection, principal, session_id)
    owned = owned_sessions(connection, principal, [session_id])
    if owned is not None and session_id not in owned:
        raise Forbidden("the session's audience reaches beyond your org units")


def _check_path(
    connection: Connection, principal: Principal, request: Request, writing: bool
) -> None:
    params = request.path_params
    path = request.url.path
    if "employee_no" in params:
        _require_employee(connection, principal, params["employee_no"])
    if "session_id" in params:
        session_id = int(params["session_id"])
        if writing:
            require_owned_session(connection, principal, session_id)
        else:
            require_session(connection, principal, session_id)
    if (match := _ORG_UNIT_PATH.match(path)) is not None:
        _require_unit_code(connection, principal, match["code"])
    if "request_id" in params:
        row = connection.execute(
            select(LeaveRequestRecord.member_id, LeaveRequestRecord.session_id).where(
                LeaveRequestRecord.id == int(params["request_id"])
            )
        ).first()
        if row is None:
            raise NotFound("leave request", params["request_id"])
        require_member(connection, principal, row.member_id)
        require_session(connection, principal, row.session_id)
    if "entry_id" in params:
        member_id = connection.scalar(
            select(LedgerEntry.member_id).where(LedgerEntry.id == int(params["entry_id"]))
        )
        if member_id is None:
            raise NotFound("ledger entry", params["entry_id"])
        require_member(connection, principal, member_id)
    if "series_id" in params:
        sessions = connection.scalars(
            select(SeriesSession.session_id).where(
                SeriesSession.series_id == int(params["series_id"])
            )
        ).all()
        try:
            for session_id in sessions:
                require_session(connection, principal, session_id)
        except NotFound as exc:
            raise NotFound("series", params["series_id"]) from exc


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}  # the endpoint's own validation answers it
    return parsed if isinstance(parsed, dict) else {}


def _check_body(connection: Connection, principal: Principal, body: dict[str, Any]) -> None:
    for key in ("org_unit_code", "parent_code"):
        if body.get(key) is not None:
            _require_unit_code(connection, principal, body[key])
    for code in body.get("org_unit_codes") or ():
        _require_unit_code(connection, principal, code)
    for employee_no in [body.get("employee_no"), *(body.get("employee_nos") or ())]:
        if employee_no is not None:
            _require_employee(connection, principal, employee_no)
    for session_id in body.get("session_ids") or ():
        if isinstance(session_id, int):
            require_owned_session(connection, principal, session_id)


async def api_access(request: Request, principal: PrincipalDep) -> Principal:
    """Refuse what the principal may not do here; the principal otherwise."""
    writing = request.method not in _READS
    if writing and not principal.can_write:
        raise Forbidden("read-only role")
    if principal.role is not Role.ORG_ADMIN:
        return principal
    path = request.url.path
    if writing and not any(m == request.method and p.match(path) for m, p in _SCOPED_WRITES):
        raise Forbidden("organisation-wide settings are for super admins")
    if not writing and any(p.match(path) for p in _WIDE_READS):
        raise Forbidden("this list spans the whole organisation")
    if writing and request.method == "POST" and path == "/api/v1/sessions":
        body = await _body(request)
        if not body.get("org_unit_codes") and not body.get("employee_nos"):
            raise Forbidden("an org admin's session needs an audience inside its org units")
    body = await _body(request) if writing else {}
    database = runtime_of(request).database

    def check() -> None:
        with database.sessions() as db:
            connection = db.connection()
            _check_path(connection, principal, request, writing)
            _check_body(connection, principal, body)

    await to_thread.run_sync(check)
    return principal


# The dependencies every /api/v1 router is included with.
API_ACCESS: Final = [Depends(api_access)]
