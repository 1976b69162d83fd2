"""Organisation administration: org units, members, member categories, activity types, rooms.

Each write runs in one unit of work and is written to the audit chain with it;
a duplicate code or employee number is a Conflict (also when two requests race
for it), an unknown reference NotFound, and a value that breaks a rule a
DomainError, with nothing changed.

Member categories (正式党员, 预备党员 …) say what a person is; an activity
type's `category` (study, meeting …) groups activities for the points caps.
They are different lists and never refer to each other.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from typing import Any, Final

from sqlalchemy import Connection, Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.audit.chain import record_audit
from server.db import lookups
from server.db.models import (
    ActivityType,
    Member,
    MemberCategory,
    MemberOrgHistory,
    OrgUnit,
    Publication,
    Room,
    SessionAudience,
    SessionRosterEntry,
    table_of,
)
from server.errors import Conflict, DomainError, NotFound
from server.services.unit_of_work import UnitOfWork

SYSTEM_ACTOR: Final = "system"


@dataclass(frozen=True)
class OrgUnitView:
    """An org unit, its parent's code, and its sub-units (only when a tree is asked for)."""

    code: str
    name: str
    parent_code: str | None
    children: list["OrgUnitView"] = field(default_factory=list)


@dataclass(frozen=True)
class MemberView:
    """A member as administrators see them."""

    employee_no: str
    name: str
    org_unit: str
    category: str
    active_from: date | None
    active_to: date | None


@dataclass(frozen=True)
class ActivityTypeView:
    """A kind of session and its tap-time points."""

    code: str
    name: str
    category: str
    default_points: int


@dataclass(frozen=True)
class RoomView:
    """A room sessions are held in."""

    code: str
    name: str


@dataclass(frozen=True)
class NewMember:
    """A member to create."""

    employee_no: str
    name: str
    org_unit_code: str
    category: str
    active_from: date | None = None
    active_to: date | None = None


@dataclass(frozen=True)
class MemberChanges:
    """Changes to a member: None leaves a field as it is; active_to only with set_active_to."""

    name: str | None = None
    category: str | None = None
    set_active_to: bool = False
    active_to: date | None = None


def _text(what: str, value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise DomainError(f"{what} cannot be blank")
    return stripped


def org_unit_id(connection: Connection, code: str) -> int:
    """The id of the org unit with this code; NotFound if there is none."""
    unit_id = connection.scalar(select(OrgUnit.id).where(OrgUnit.code == code))
    if unit_id is None:
        raise NotFound("org unit", code)
    return unit_id


def _check_dates(active_from: date | None, active_to: date | None) -> None:
    if active_from is not None and active_to is not None and active_to < active_from:
        raise DomainError(
            f"active_to ({active_to.isoformat()}) is before active_from ({active_from.isoformat()})"
        )


def _flush(db: Session, conflict: str) -> None:
    """Flush, turning a unique-constraint race into a Conflict."""
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict(conflict) from exc


def _audit(db: Session, actor: str, action: str, target: str, **details: Any) -> None:
    record_audit(db, actor=actor, action=action, target=target, details=details)


# --------------------------------------------------------------------------- org units


def create_org_unit(
    uow: UnitOfWork,
    code: str,
    name: str,
    parent_code: str | None,
    *,
    actor: str = SYSTEM_ACTOR,
) -> OrgUnitView:
    """Add an org unit under `parent_code` (or at the top); Conflict if the code is taken."""
    code, name = _text("an org unit's code", code), _text("an org unit's name", name)
    with uow:
        db = uow.session
        connection = db.connection()
        parent_id = None if parent_code is None else org_unit_id(connection, parent_code)
        if connection.scalar(select(OrgUnit.id).where(OrgUnit.code == code)) is not None:
            raise Conflict(f"org unit code {code} is taken")
        db.add(OrgUnit(code=code, name=name, parent_id=parent_id))
        _flush(db, f"org unit code {code} is taken")
        _audit(db, actor, "org_unit.create", f"org unit {code}", name=name, parent=parent_code)
        uow.commit()
    return OrgUnitView(code, name, parent_code)


def rename_org_unit(
    uow: UnitOfWork, code: str, name: str, *, actor: str = SYSTEM_ACTOR
) -> OrgUnitView:
    """Give an org unit a new name; its code, place and history stay."""
    return change_org_unit(uow, code, OrgUnitChanges(name=name), actor=actor)


@dataclass(frozen=True)
class OrgUnitChanges:
    """Changes to an org unit: a new name, and/or a new parent (None: the top) if `move`."""

    name: str | None = None
    move: bool = False
    parent_code: str | None = None


def change_org_unit(
    uow: UnitOfWork, code: str, changes: OrgUnitChanges, *, actor: str = SYSTEM_ACTOR
) -> OrgUnitView:
    """Rename an org unit and/or move it under another parent; Conflict on a cycle.

    Its members, sub-units and history move with it; sessions planned for it
    (or an ancestor) keep their audience, and frozen rosters stay as they are.
    """
    name = None if changes.name is None else _text("an org unit's name", changes.name)
    with uow:
        db = uow.session
        connection = db.connection()
        row = db.scalars(select(OrgUnit).where(OrgUnit.code == code)).one_or_none()
        if row is None:
            raise NotFound("org unit", code)
        details: dict[str, Any] = {}
        if name is not None and name != row.name:
            details["name"] = {"from": row.name, "to": name}
            row.name = name
        if changes.move:
            parent_id = (
                None
                if changes.parent_code is None
                else org_unit_id(connection, changes.parent_code)
            )
            if parent_id is not None and parent_id in lookups.org_tree(connection).subtree(row.id):
                raise Conflict(
                    f"org unit {code} cannot move under {changes.parent_code}: "
                    "that is itself or one of its sub-units"
                )
            if parent_id != row.parent_id:
                old = None if row.parent_id is None else db.get(OrgUnit, row.parent_id)
                details["parent"] = {
                    "from": None if old is None else old.code,
                    "to": changes.parent_code,
                }
                row.parent_id = parent_id
        db.flush()
        if details:
            _audit(db, actor, "org_unit.change", f"org unit {code}", **details)
        parent = None if row.parent_id is None else db.get(OrgUnit, row.parent_id)
        view = OrgUnitView(code, row.name, None if parent is None else parent.code)
        uow.commit()
    return view


def delete_org_unit(uow: UnitOfWork, code: str, *, actor: str = SYSTEM_ACTOR) -> None:
    """Delete an org unit nothing refers to; Conflict names what still does.

    A unit that ever had members keeps their history, so it is never deleted:
    rename it instead.
    """
    with uow:
        db = uow.session
        connection = db.connection()
        unit_id = org_unit_id(connection, code)
        uses = (
            ("sub-units", select(OrgUnit.id).where(OrgUnit.parent_id == unit_id)),
            ("members", select(Member.id).where(Member.org_unit_id == unit_id)),
            (
                "membership history",
                select(MemberOrgHistory.id).where(MemberOrgHistory.org_unit_id == unit_id),
            ),
            (
                "sessions' audience",
                select(SessionAudience.id).where(SessionAudience.org_unit_id == unit_id),
            ),
            (
                "sessions' frozen rosters",
                select(SessionRosterEntry.session_id).where(
                    SessionRosterEntry.org_unit_id == unit_id
                ),
            ),
            ("publications", select(Publication.id).where(Publication.org_unit_id == unit_id)),
        )
        used = [what for what, query in uses if connection.scalar(query.limit(1)) is not None]
        if used:
            raise Conflict(f"org unit {code} is still referred to by {', '.join(used)}")
        _audit(db, actor, "org_unit.delete", f"org unit {code}")
        try:
            connection.execute(table_of(OrgUnit).delete().where(OrgUnit.id == unit_id))
        except IntegrityError as exc:  # a table of a later feature still refers to it
            raise Conflict(f"org unit {code} is still referred to") from exc
        uow.commit()


def _units(connection: Connection) -> list[tuple[int, int | None, str, str]]:
    rows = connection.execute(
        select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.code, OrgUnit.name).order_by(OrgUnit.code)
    )
    return [(i, p, c, n) for i, p, c, n in rows]


def org_tree(db: Session) -> list[OrgUnitView]:
    """Every org unit as a forest: top units first, sub-units nested, each level by code."""
    units = _units(db.connection())
    codes = {i: c for i, _, c, _ in units}
    children: dict[int | None, list[tuple[int, str, str]]] = {}
    for unit_id, parent_id, code, name in units:
        children.setdefault(parent_id, []).append((unit_id, code, name))

    def build(unit_id: int, code: str, name: str, parent_id: int | None) -> OrgUnitView:
        return OrgUnitView(
            code,
            name,
            None if parent_id is None else codes[parent_id],
            [build(c, cc, cn, unit_id) for c, cc, cn in children.get(unit_id, [])],
        )

    return [build(i, c, n, None) for i, c, n in children.get(None, [])]


def org_unit(db: Session, code: str) -> OrgUnitView:
    """One org unit with its sub-units nested below it."""
    connection = db.connection()
    unit_id = org_unit_id(connection, code)

    def find(nodes: Sequence[OrgUnitView]) -> OrgUnitView | None:
        for node in nodes:
            if node.code == code:
                return node
            found = find(node.children)
            if found is not None:
                return found
        return None

    found = find(org_tree(db))
    if found is None:  # a unit on a parent cycle is not reachable from the top
        raise NotFound("org unit in the tree", f"{code} (id {unit_id})")
    return found


# --------------------------------------------------------------------------- members


def _members() -> Select[str, str, str, str, date | None, date | None]:
    """Members as MemberView's fields, their unit by code."""
    return select(
        Member.employee_no,
        Member.name,
        OrgUnit.code,
        Member.category,
        Member.active_from,
        Member.active_to,
    ).join(OrgUnit, OrgUnit.id == Member.org_unit_id)


def _member_view(db: Session, employee_no: str) -> MemberView:
    row = db.execute(_members().where(Member.employee_no == employee_no)).one_or_none()
    if row is None:
        raise NotFound("member with employee number", employee_no)
    return MemberView(*row)


def create_member(
    uow: UnitOfWork,
    new: NewMember,
    now: datetime,
    zone: tzinfo,
    *,
    actor: str = SYSTEM_ACTOR,
) -> MemberView:
    """Add a member to an org unit; their membership history starts on active_from (or now)."""
    employee_no = _text("an employee number", new.employee_no)
    name = _text("a member's name", new.name)
    category = _text("a member's category", new.category)
    _check_dates(new.active_from, new.active_to)
    joined = (
        now if new.active_from is None else datetime.combine(new.active_from, time.min, tzinfo=zone)
    )
    with uow:
        db = uow.session
        connection = db.connection()
        unit_id = org_unit_id(connection, new.org_unit_code)
        _check_category(connection, category)
        taken = connection.scalar(select(Member.id).where(Member.employee_no == employee_no))
        if taken is not None:
            raise Conflict(f"employee number {employee_no} is taken")
        member = Member(
            employee_no=employee_no,
            name=name,
            org_unit_id=unit_id,
            category=category,
            active_from=new.active_from,
            active_to=new.active_to,
        )
        db.add(member)
        _flush(db, f"employee number {employee_no} is taken")
        db.add(MemberOrgHistory(member_id=member.id, org_unit_id=unit_id, valid_from=joined))
        db.flush()
        view = _member_view(db, employee_no)
        _audit(
            db,
            actor,
            "member.create",
            f"member {employee_no}",
            org_unit=view.org_unit,
            category=category,
        )
        uow.commit()
    return view


def member(db: Session, employee_no: str) -> MemberView:
    """One member by employee number."""
    return _member_view(db, employee_no)


def update_member(
    uow: UnitOfWork, employee_no: str, changes: MemberChanges, *, actor: str = SYSTEM_ACTOR
) -> MemberView:
    """Change a member's name, category or last active day; moves go through move_member."""
    with uow:
        db = uow.session
        row = db.scalars(select(Member).where(Member.employee_no == employee_no)).one_or_none()
        if row is None:
            raise NotFound("member with employee number", employee_no)
        details: dict[str, Any] = {}
        if changes.name is not None:
            row.name = _text("a member's name", changes.name)
            details["name"] = True  # which fields changed; names stay out of the log
        if changes.category is not None:
            category = _text("a member's category", changes.category)
            _check_category(db.connection(), category)
            details["category"] = {"from": row.category, "to": category}
            row.category = category
        if changes.set_active_to:
            _check_dates(row.active_from, changes.active_to)
            row.active_to = changes.active_to
            details["active_to"] = None if row.active_to is None else row.active_to.isoformat()
        db.flush()
        view = _member_view(db, employee_no)
        _audit(db, actor, "member.change", f"member {employee_no}", **details)
        uow.commit()
    return view


def search_members(
    db: Session,
    *,
    org_unit_code: str | None = None,
    include_sub_units: bool = True,
    text: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[MemberView]:
    """Members by org unit (with its sub-units unless told not to) and name or number text."""
    connection = db.connection()
    query = _members().order_by(Member.employee_no)
    if org_unit_code is not None:
        unit_id = org_unit_id(connection, org_unit_code)
        wanted = lookups.org_tree(connection).subtree(unit_id) if include_sub_units else {unit_id}
        query = query.where(Member.org_unit_id.in_(wanted))
    if text:
        pattern = f"%{text.strip()}%"
        query = query.where(or_(Member.name.like(pattern), Member.employee_no.like(pattern)))
    rows = connection.execute(query.limit(limit).offset(offset))
    return [MemberView(*row) for row in rows]


# --------------------------------------------------------------------------- member categories


@dataclass(frozen=True)
class MemberCategoryView:
    """A member category, its place in lists, and how many members hold it."""

    name: str
    position: int
    members: int


def _check_category(connection: Connection, name: str) -> None:
    """DomainError naming the allowed categories unless `name` is one of them."""
    if connection.scalar(select(MemberCategory.id).where(MemberCategory.name == name)) is None:
        known = connection.scalars(
            select(MemberCategory.name).order_by(MemberCategory.position, MemberCategory.id)
        ).all()
        raise DomainError(f"unknown member category {name!r}; known: {', '.join(known)}")


def _category_view(connection: Connection, name: str) -> MemberCategoryView:
    row = connection.execute(
        select(MemberCategory.name, MemberCategory.position).where(MemberCategory.name == name)
    ).one_or_none()
    if row is None:
        raise NotFound("member category", name)
    count = connection.scalar(select(func.count()).where(Member.category == name)) or 0
    return MemberCategoryView(row[0], row[1], count)


def member_categories(db: Session) -> list[MemberCategoryView]:
    """Every member category in display order, with how many members hold each."""
    connection = db.connection()
    counts = dict(
        connection.execute(select(Member.category, func.count()).group_by(Member.category)).all()
    )
    rows = connection.execute(
        select(MemberCategory.name, MemberCategory.position).order_by(
            MemberCategory.position, MemberCategory.id
        )
    )
    return [MemberCategoryView(n, p, counts.get(n, 0)) for n, p in rows]


def member_category(db: Session, name: str) -> MemberCategoryView:
    """One member category by name."""
    return _category_view(db.connection(), name)


def create_member_category(
    uow: UnitOfWork, name: str, position: int | None = None, *, actor: str = SYSTEM_ACTOR
) -> MemberCategoryView:
    """Add a member category, last in the list unless a position is given; Conflict if taken."""
    name = _text("a member category's name", name)
    with uow:
        db = uow.session
        connection = db.connection()
        if connection.scalar(select(MemberCategory.id).where(MemberCategory.name == name)):
            raise Conflict(f"member category {name} exists")
        if position is None:
            position = (connection.scalar(select(func.max(MemberCategory.position))) or 0) + 1
        db.add(MemberCategory(name=name, position=position))
        _flush(db, f"member category {name} exists")
        _audit(db, actor, "member_category.create", f"member category {name}", position=position)
        view = _category_view(connection, name)
        uow.commit()
    return view


def change_member_category(
    uow: UnitOfWork,
    name: str,
    *,
    new_name: str | None = None,
    position: int | None = None,
    actor: str = SYSTEM_ACTOR,
) -> MemberCategoryView:
    """Rename a category (its members follow) and/or move it in the list."""
    new_name = None if new_name is None else _text("a member category's name", new_name)
    with uow:
        db = uow.session
        connection = db.connection()
        row = db.scalars(select(MemberCategory).where(MemberCategory.name == name)).one_or_none()
        if row is None:
            raise NotFound("member category", name)
        details: dict[str, Any] = {}
        if new_name is not None and new_name != name:
            if connection.scalar(select(MemberCategory.id).where(MemberCategory.name == new_name)):
                raise Conflict(f"member category {new_name} exists")
            row.name = new_name
            _flush(db, f"member category {new_name} exists")
            connection.execute(
                update(table_of(Member)).where(Member.category == name).values(category=new_name)
            )
            details["name"] = {"from": name, "to": new_name}
        if position is not None and position != row.position:
            details["position"] = {"from": row.position, "to": position}
            row.position = position
        db.flush()
        if details:
            _audit(db, actor, "member_category.change", f"member category {name}", **details)
        view = _category_view(connection, row.name)
        uow.commit()
    return view


def delete_member_category(uow: UnitOfWork, name: str, *, actor: str = SYSTEM_ACTOR) -> None:
    """Delete a category no member holds; Conflict says how many still do."""
    with uow:
        db = uow.session
        connection = db.connection()
        view = _category_view(connection, name)
        if view.members:
            raise Conflict(f"member category {name} is held by {view.members} member(s)")
        connection.execute(table_of(MemberCategory).delete().where(MemberCategory.name == name))
        _audit(db, actor, "member_category.delete", f"member category {name}")
        uow.commit()


# --------------------------------------------------------------------------- activity types, rooms


def activity_types(db: Session) -> list[ActivityTypeView]:
    """Every activity type, built-in and user-defined, by code."""
    rows = db.execute(
        select(
            ActivityType.code, ActivityType.name, ActivityType.category, ActivityType.default_points
        ).order_by(ActivityType.code)
    )
    return [ActivityTypeView(*row) for row in rows]


def create_activity_type(
    uow: UnitOfWork, new: ActivityTypeView, *, actor: str = SYSTEM_ACTOR
) -> ActivityTypeView:
    """Add a user-defined activity type; Conflict if the code is taken."""
    code = _text("an activity type's code", new.code)
    name = _text("an activity type's name", new.name)
    category = _text("an activity type's category", new.category)
    if new.default_points < 0:
        raise DomainError(f"default points cannot be negative ({new.default_points})")
    with uow:
        db = uow.session
        if db.scalar(select(ActivityType.id).where(ActivityType.code == code)) is not None:
            raise Conflict(f"activity type code {code} is taken")
        db.add(
            ActivityType(code=code, name=name, category=category, default_points=new.default_points)
        )
        _flush(db, f"activity type code {code} is taken")
        _audit(
            db,
            actor,
            "activity_type.create",
            f"activity type {code}",
            name=name,
            category=category,
            default_points=new.default_points,
        )
        uow.commit()
    return ActivityTypeView(code, name, category, new.default_points)


def rooms(db: Session) -> list[RoomView]:
    """Every room, by code."""
    return [RoomView(*row) for row in db.execute(select(Room.code, Room.name).order_by(Room.code))]


def create_room(uow: UnitOfWork, code: str, name: str, *, actor: str = SYSTEM_ACTOR) -> RoomView:
    """Add a room; Conflict if the code is taken."""
    code, name = _text("a room's code", code), _text("a room's name", name)
    with uow:
        db = uow.session
        if db.scalar(select(Room.id).where(Room.code == code)) is not None:
            raise Conflict(f"room code {code} is taken")
        db.add(Room(code=code, name=name))
        _flush(db, f"room code {code} is taken")
        _audit(db, actor, "room.create", f"room {code}", name=name)
        uow.commit()
    return RoomView(code, name)


def rename_room(uow: UnitOfWork, code: str, name: str, *, actor: str = SYSTEM_ACTOR) -> RoomView:
    """Give a room a new name; its code, readers and sessions stay."""
    name = _text("a room's name", name)
    with uow:
        db = uow.session
        row = db.scalars(select(Room).where(Room.code == code)).one_or_none()
        if row is None:
            raise NotFound("room", code)
        if row.name != name:
            _audit(db, actor, "room.rename", f"room {code}", name={"from": row.name, "to": name})
            row.name = name
            uow.commit()
    return RoomView(code, name)
