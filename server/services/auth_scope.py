"""What a principal may see: SQL conditions and checks that keep org admins inside their subtree.

An org admin sees members of the units in its subtree, and sessions that expect
some of them: sessions open to everyone, sessions whose audience names a unit in
the subtree or above it (its members are then expected too), and sessions that
list one of its members. Anything else answers NotFound, as if it did not exist.
"""

from collections.abc import Iterable

from sqlalchemy import ColumnElement, Connection, and_, exists, func, not_, or_, select, true

from server.db import lookups
from server.db.models import AttendanceSession, Member, OrgUnit, SessionAudience
from server.errors import NotFound
from server.services.auth import Principal


def units_reaching(connection: Connection, principal: Principal) -> frozenset[int] | None:
    """The scope's units and their ancestors: an audience naming one expects scope members."""
    scope = principal.scope_unit_ids
    if scope is None:
        return None
    tree = lookups.org_tree(connection)
    reached: set[int] = set()
    for unit_id in scope:
        reached.update(tree.path_to_root(unit_id))
    return frozenset(reached)


def member_condition(principal: Principal) -> ColumnElement[bool]:
    """SQL: the member (table `members`) is within the principal's scope."""
    scope = principal.scope_unit_ids
    if scope is None:
        return true()
    return Member.org_unit_id.in_(sorted(scope))


def unit_condition(principal: Principal, column: ColumnElement[int | None]) -> ColumnElement[bool]:
    """SQL: an org-unit column lies within the principal's scope."""
    scope = principal.scope_unit_ids
    if scope is None:
        return true()
    return column.in_(sorted(scope))


def session_condition(connection: Connection, principal: Principal) -> ColumnElement[bool]:
    """SQL: the session (table `sessions`) expects someone within the principal's scope."""
    reached = units_reaching(connection, principal)
    scope = principal.scope_unit_ids
    if reached is None or scope is None:
        return true()
    audience = SessionAudience.session_id == AttendanceSession.id
    open_to_all = not_(exists().where(audience))
    by_unit = exists().where(audience, SessionAudience.org_unit_id.in_(sorted(reached)))
    by_member = exists().where(
        audience,
        SessionAudience.member_id.in_(
            select(Member.id).where(Member.org_unit_id.in_(sorted(scope)))
        ),
    )
    return or_(open_to_all, by_unit, by_member)


def require_session(connection: Connection, principal: Principal, session_id: int) -> None:
    """NotFound unless the session exists and is within the principal's scope."""
    found = connection.scalar(
        select(AttendanceSession.id).where(
            and_(AttendanceSession.id == session_id, session_condition(connection, principal))
        )
    )
    if found is None:
        raise NotFound("session", session_id)


def owned_sessions(
    connection: Connection, principal: Principal, session_ids: Iterable[int]
) -> set[int] | None:
    """Of these sessions, those whose whole audience lies in the principal's scope; None: all.

    What an org admin may change (edit, cancel, series operations): a session shared
    with another branch is one it may see (`session_condition`) but not change. An
    audience of nobody is open to all: the organisation's, not a branch's.
    """
    scope = principal.scope_unit_ids
    if scope is None:
        return None
    units: dict[int, set[int]] = {session_id: set() for session_id in session_ids}
    if not units:
        return set()
    for session_id, unit_id in connection.execute(
        select(
            SessionAudience.session_id,
            # A row names a unit or a member (a check constraint): the member's current unit.
            func.coalesce(SessionAudience.org_unit_id, Member.org_unit_id),
        )
        .outerjoin(Member, Member.id == SessionAudience.member_id)
        .where(SessionAudience.session_id.in_(sorted(units)))
    ):
        units[session_id].add(unit_id)
    return {session_id for session_id, found in units.items() if found and found <= scope}


def require_member(connection: Connection, principal: Principal, member_id: int) -> None:
    """NotFound unless the member exists and is within the principal's scope."""
    found = connection.scalar(
        select(Member.id).where(Member.id == member_id, member_condition(principal))
    )
    if found is None:
        raise NotFound("member", member_id)


def require_unit(principal: Principal, unit_id: int | None, kind: str, key: object) -> None:
    """NotFound (named as `kind` `key`) unless the org unit is within the principal's scope."""
    if not principal.allows_unit(unit_id):
        raise NotFound(kind, key)


def narrowed_unit_code(
    connection: Connection, principal: Principal, code: str | None
) -> str | None:
    """The org-unit filter a list may use: an org admin's own root if none, NotFound outside."""
    scope = principal.scope_unit_ids
    if scope is None:
        return code
    if code is not None:
        unit_id = connection.scalar(select(OrgUnit.id).where(OrgUnit.code == code))
        if unit_id is None or unit_id not in scope:
            raise NotFound("org unit", code)
        return code
    parents = dict(connection.execute(select(OrgUnit.id, OrgUnit.parent_id)).all())
    roots = sorted(u for u in scope if parents.get(u) not in scope)
    if not roots:
        raise NotFound("org unit", "of this principal")
    return connection.scalar(select(OrgUnit.code).where(OrgUnit.id == roots[0]))


def visible_sessions(
    connection: Connection, principal: Principal, session_ids: Iterable[int]
) -> set[int]:
    """The sessions among these the principal may see."""
    wanted = sorted(set(session_ids))
    if principal.scope_unit_ids is None or not wanted:
        return set(wanted)
    return set(
        connection.scalars(
            select(AttendanceSession.id).where(
                AttendanceSession.id.in_(wanted), session_condition(connection, principal)
            )
        )
    )


def visible_employee_nos(
    connection: Connection, principal: Principal, employee_nos: Iterable[str]
) -> set[str]:
    """The employee numbers among these whose members the principal may see."""
    wanted = sorted(set(employee_nos))
    if principal.scope_unit_ids is None or not wanted:
        return set(wanted)
    return set(
        connection.scalars(
            select(Member.employee_no).where(
                Member.employee_no.in_(wanted), member_condition(principal)
            )
        )
    )
