"""Organisation administration: org units, members, activity types and rooms.

Each write runs in one unit of work; a duplicate code or employee number is a
Conflict (also when two requests race for it), an unknown reference NotFound,
and a value that breaks a rule a DomainError, with nothing changed.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo

from sqlalchemy import Connection, Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db import lookups
from server.db.models import ActivityType, Member, MemberOrgHistory, OrgUnit, Room
from server.errors import Conflict, DomainError, NotFound
from server.services.unit_of_work import UnitOfWork


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


# --------------------------------------------------------------------------- org units


def create_org_unit(uow: UnitOfWork, code: str, name: str, parent_code: str | None) -> OrgUnitView:
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
        uow.commit()
    return OrgUnitView(code, name, parent_code)


def rename_org_unit(uow: UnitOfWork, code: str, name: str) -> OrgUnitView:
    """Give an org unit a new name; its code, place and history stay."""
    name = _text("an org unit's name", name)
    with uow:
        db = uow.session
        row = db.scalars(select(OrgUnit).where(OrgUnit.code == code)).one_or_none()
        if row is None:
            raise NotFound("org unit", code)
        row.name = name
        parent = None if row.parent_id is None else db.get(OrgUnit, row.parent_id)
        uow.commit()
    return OrgUnitView(code, name, None if parent is None else parent.code)


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


def create_member(uow: UnitOfWork, new: NewMember, now: datetime, zone: tzinfo) -> MemberView:
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
        uow.commit()
    return view


def member(db: Session, employee_no: str) -> MemberView:
    """One member by employee number."""
    return _member_view(db, employee_no)


def update_member(uow: UnitOfWork, employee_no: str, changes: MemberChanges) -> MemberView:
    """Change a member's name, category or last active day; moves go through move_member."""
    with uow:
        db = uow.session
        row = db.scalars(select(Member).where(Member.employee_no == employee_no)).one_or_none()
        if row is None:
            raise NotFound("member with employee number", employee_no)
        if changes.name is not None:
            row.name = _text("a member's name", changes.name)
        if changes.category is not None:
            row.category = _text("a member's category", changes.category)
        if changes.set_active_to:
            _check_dates(row.active_from, changes.active_to)
            row.active_to = changes.active_to
        db.flush()
        view = _member_view(db, employee_no)
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


# --------------------------------------------------------------------------- activity types, rooms


def activity_types(db: Session) -> list[ActivityTypeView]:
    """Every activity type, built-in and user-defined, by code."""
    rows = db.execute(
        select(
            ActivityType.code, ActivityType.name, ActivityType.category, ActivityType.default_points
        ).order_by(ActivityType.code)
    )
    return [ActivityTypeView(*row) for row in rows]


def create_activity_type(uow: UnitOfWork, new: ActivityTypeView) -> ActivityTypeView:
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
        uow.commit()
    return ActivityTypeView(code, name, category, new.default_points)


def rooms(db: Session) -> list[RoomView]:
    """Every room, by code."""
    return [RoomView(*row) for row in db.execute(select(Room.code, Room.name).order_by(Room.code))]


def create_room(uow: UnitOfWork, code: str, name: str) -> RoomView:
    """Add a room; Conflict if the code is taken."""
    code, name = _text("a room's code", code), _text("a room's name", name)
    with uow:
        db = uow.session
        if db.scalar(select(Room.id).where(Room.code == code)) is not None:
            raise Conflict(f"room code {code} is taken")
        db.add(Room(code=code, name=name))
        _flush(db, f"room code {code} is taken")
        uow.commit()
    return RoomView(code, name)
