"""What a kiosk and a live screen show, read from the database for one member or one session.

Read-only: nothing here writes, so a screen can never change the record. Times
come back aware UTC; the pages format them in the configured zone.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from sqlalchemy import Connection, or_, select

from server.db import lookups
from server.db.models import (
    Attendance,
    AttendanceSession,
    Member,
    MemberOrgHistory,
    OrgUnit,
    Room,
    SeriesSession,
    SessionRoom,
    SessionRosterEntry,
    SessionSeries,
)
from server.domain.attendance import AttendanceStatus, Audience, OrgTree
from server.domain.roster import ActiveDates, Membership, freeze_roster
from server.errors import NotFound
from server.kiosk.names import OTHER_BAND, NameMask, branch_of, mask_name, rank_band
from server.services.rankings import Period, member_ranking

ATTENDED = frozenset({AttendanceStatus.PRESENT.value, AttendanceStatus.LATE.value})
ARRIVED = ATTENDED | {AttendanceStatus.LEFT_EARLY.value}
STATUS_LABELS = {
    AttendanceStatus.PRESENT.value: "出席",
    AttendanceStatus.LATE.value: "迟到",
    AttendanceStatus.LEFT_EARLY.value: "早退",
    AttendanceStatus.ABSENT.value: "缺席",
    AttendanceStatus.EXCUSED.value: "请假",
}
RECENT = 5
UPCOMING = 5
UPCOMING_DAYS = 14
LATEST_ARRIVALS = 10


@dataclass(frozen=True)
class Attended:
    """One of a member's recent sessions and how they attended it."""

    title: str
    starts_at: datetime
    status: str

    @property
    def status_label(self) -> str:
        """The status in Chinese."""
        return STATUS_LABELS.get(self.status, self.status)


@dataclass(frozen=True)
class Upcoming:
    """A session ahead that expects the member."""

    title: str
    starts_at: datetime
    rooms: tuple[str, ...]


@dataclass(frozen=True)
class MakeUp:
    """A series the member still owes an attendance of, and its next occurrence if any."""

    title: str
    next_at: datetime | None


@dataclass(frozen=True)
class KioskView:
    """Everything a kiosk shows the member who tapped."""

    member_id: int
    name: str  # masked as configured
    branch: str
    points_month: int
    points_quarter: int
    points_year: int
    rank_band: str
    branch_members: int
    recent: tuple[Attended, ...]
    upcoming: tuple[Upcoming, ...]
    missing: tuple[MakeUp, ...]


def _periods(today: date) -> tuple[Period, Period, Period]:
    month = Period.month(today.year, today.month)
    quarter = Period.quarter(f"{today.year}Q{(today.month - 1) // 3 + 1}")
    year = Period(date(today.year, 1, 1), date(today.year + 1, 1, 1))
    return month, quarter, year


def _branch(connection: Connection, tree: OrgTree, unit_id: int) -> tuple[int, str, str]:
    branch_id = branch_of(tree.path_to_root(unit_id))
    code, name = connection.execute(
        select(OrgUnit.code, OrgUnit.name).where(OrgUnit.id == branch_id)
    ).one()
    return branch_id, code, name


def kiosk_view(
    connection: Connection, member_id: int, *, now: datetime, zone: tzinfo, mask: NameMask
) -> KioskView:
    """The kiosk's figures for one member; NotFound if there is no such member."""
    found = connection.execute(
        select(Member.employee_no, Member.name, Member.org_unit_id).where(Member.id == member_id)
    ).one_or_none()
    if found is None:
        raise NotFound("member", member_id)
    employee_no, name, unit_id = found
    tree = lookups.org_tree(connection)
    _, branch_code, branch_name = _branch(connection, tree, unit_id)
    month, quarter, year = _periods(now.astimezone(zone).date())
    points: list[int] = []
    band, members = OTHER_BAND, 0
    for period in (month, quarter, year):
        ranking = member_ranking(connection, branch_code, period, zone)
        mine = next((r for r in ranking if r.employee_no == employee_no), None)
        points.append(mine.points if mine else 0)
        if period is quarter and mine is not None:
            members = len(ranking)
            # Without points a shared first place would read "前10%" for everyone.
            band = rank_band(mine.rank, members) if mine.points > 0 else OTHER_BAND
    return KioskView(
        member_id=member_id,
        name=mask_name(name, mask),
        branch=branch_name,
        points_month=points[0],
        points_quarter=points[1],
        points_year=points[2],
        rank_band=band,
        branch_members=members,
        recent=_recent(connection, member_id),
        upcoming=_upcoming(connection, tree, member_id, unit_id, now),
        missing=_missing(connection, member_id, now),
    )


def _recent(connection: Connection, member_id: int) -> tuple[Attended, ...]:
    rows = connection.execute(
        select(AttendanceSession.title, AttendanceSession.starts_at, Attendance.status)
        .join(AttendanceSession, AttendanceSession.id == Attendance.session_id)
        .where(Attendance.member_id == member_id)
        .order_by(AttendanceSession.starts_at.desc())
        .limit(RECENT)
    )
    return tuple(Attended(*row) for row in rows)


def _rooms(connection: Connection, session_ids: set[int]) -> dict[int, tuple[str, ...]]:
    rooms: dict[int, list[str]] = {}
    for session_id, room in connection.execute(
        select(SessionRoom.session_id, Room.name)
        .join(Room, Room.id == SessionRoom.room_id)
        .where(SessionRoom.session_id.in_(session_ids))
        .order_by(Room.name)
    ):
        rooms.setdefault(session_id, []).append(room)
    return {s: tuple(r) for s, r in rooms.items()}


def _upcoming(
    connection: Connection, tree: OrgTree, member_id: int, unit_id: int, now: datetime
) -> tuple[Upcoming, ...]:
    """Sessions starting in the next UPCOMING_DAYS whose audience names the member."""
    ahead = connection.execute(
        select(AttendanceSession.id, AttendanceSession.title, AttendanceSession.starts_at)
        .where(
            AttendanceSession.starts_at >= now,
            AttendanceSession.starts_at < now + timedelta(days=UPCOMING_DAYS),
            AttendanceSession.cancelled_at.is_(None),
        )
        .order_by(AttendanceSession.starts_at, AttendanceSession.id)
    ).all()
    if not ahead:
        return ()
    audiences = lookups.audiences_of(connection, {s for s, _, _ in ahead})
    path = tree.path_to_root(unit_id)
    # An open audience expects nobody (it takes walk-ins): not listed as expected.
    wanted = [
        (s, title, at)
        for s, title, at in ahead
        if (audience := audiences.get(s)) is not None and audience.includes(member_id, path)
    ][:UPCOMING]
    rooms = _rooms(connection, {s for s, _, _ in wanted})
    return tuple(Upcoming(title, at, rooms.get(s, ())) for s, title, at in wanted)


def _missing(connection: Connection, member_id: int, now: datetime) -> tuple[MakeUp, ...]:
    """Series the member was expected at (an occurrence has ended) but attended no occurrence of."""
    owed = connection.execute(
        select(SessionSeries.id, SessionSeries.title)
        .join(SeriesSession, SeriesSession.series_id == SessionSeries.id)
        .join(AttendanceSession, AttendanceSession.id == SeriesSession.session_id)
        .join(
            SessionRosterEntry,
            (SessionRosterEntry.session_id == SeriesSession.session_id)
            & (SessionRosterEntry.member_id == member_id),
        )
        .where(AttendanceSession.ends_at < now, AttendanceSession.cancelled_at.is_(None))
        .distinct()
        .order_by(SessionSeries.id)
    ).all()
    if not owed:
        return ()
    series_ids = [s for s, _ in owed]
    done = set(
        connection.scalars(
            select(SeriesSession.series_id)
            .join(Attendance, Attendance.session_id == SeriesSession.session_id)
            .where(
                SeriesSession.series_id.in_(series_ids),
                Attendance.member_id == member_id,
                Attendance.status.in_(ATTENDED),
            )
        )
    )
    next_at: dict[int, datetime] = {}
    for series_id, starts_at in connection.execute(
        select(SeriesSession.series_id, AttendanceSession.starts_at)
        .join(AttendanceSession, AttendanceSession.id == SeriesSession.session_id)
        .where(
            SeriesSession.series_id.in_(series_ids),
            AttendanceSession.starts_at >= now,
            AttendanceSession.cancelled_at.is_(None),
        )
        .order_by(AttendanceSession.starts_at)
    ):
        next_at.setdefault(series_id, starts_at)
    return tuple(MakeUp(title, next_at.get(s)) for s, title in owed if s not in done)


# --------------------------------------------------------------------------- live screen


@dataclass(frozen=True)
class BranchArrivals:
    """One branch's arrivals at a session."""

    name: str
    expected: int
    arrived: int  # of those expected
    walk_ins: int

    @property
    def rate(self) -> float | None:
        """Share of the expected who have arrived; None when nobody is expected."""
        return self.arrived / self.expected if self.expected else None


@dataclass(frozen=True)
class Arrival:
    """One arrival, for the latest-arrivals list."""

    name: str  # masked as configured
    branch: str
    at: datetime
    late: bool


@dataclass(frozen=True)
class LiveFigures:
    """A session's check-in figures for the big screen."""

    session_id: int
    title: str
    starts_at: datetime
    ends_at: datetime
    rooms: tuple[str, ...]
    expected: int
    arrived: int
    late: int
    branches: tuple[BranchArrivals, ...]
    latest: tuple[Arrival, ...]

    @property
    def rate(self) -> float | None:
        """Share of the expected who have arrived; None when nobody is expected."""
        if not self.expected:
            return None
        return sum(b.arrived for b in self.branches) / self.expected


def _expected(
    connection: Connection,
    *,
    session_id: int,
    starts_at: datetime,
    frozen: bool,
    tree: OrgTree,
    zone: tzinfo,
) -> dict[int, int]:
    """Expected member → their org unit: the frozen roster, or what freezing would give now."""
    if frozen:
        return dict(
            connection.execute(
                select(SessionRosterEntry.member_id, SessionRosterEntry.org_unit_id).where(
                    SessionRosterEntry.session_id == session_id
                )
            )
            .tuples()
            .all()
        )
    audience = lookups.audiences_of(connection, {session_id}).get(session_id, Audience())
    if audience.is_open:
        return {}
    memberships = [
        Membership(m, u, f, t)
        for m, u, f, t in connection.execute(
            select(
                MemberOrgHistory.member_id,
                MemberOrgHistory.org_unit_id,
                MemberOrgHistory.valid_from,
                MemberOrgHistory.valid_to,
            ).where(
                MemberOrgHistory.valid_from <= starts_at,
                or_(
                    MemberOrgHistory.valid_to.is_(None),
                    MemberOrgHistory.valid_to > starts_at,
                ),
            )
        )
    ]
    current: dict[int, int] = {}
    active: dict[int, ActiveDates] = {}
    for m, unit_id, f, t in connection.execute(
        select(Member.id, Member.org_unit_id, Member.active_from, Member.active_to)
    ):
        current[m] = unit_id
        active[m] = ActiveDates(f, t)
    roster = freeze_roster(
        audience,
        memberships,
        tree,
        starts_at,
        active=active,
        local_day=starts_at.astimezone(zone).date(),
    )
    units = current | {m.member_id: m.org_unit_id for m in memberships}
    return {m: units[m] for m in roster}


def live_figures(
    connection: Connection, session_id: int, *, zone: tzinfo, mask: NameMask
) -> LiveFigures:
    """Expected, arrived and late counts, arrivals by branch and the latest arrivals."""
    meeting = connection.execute(
        select(
            AttendanceSession.title,
            AttendanceSession.starts_at,
            AttendanceSession.ends_at,
            AttendanceSession.roster_frozen_at,
        ).where(AttendanceSession.id == session_id)
    ).one_or_none()
    if meeting is None:
        raise NotFound("session", session_id)
    title, starts_at, ends_at, frozen_at = meeting
    tree = lookups.org_tree(connection)
    expected = _expected(
        connection,
        session_id=session_id,
        starts_at=starts_at,
        frozen=frozen_at is not None,
        tree=tree,
        zone=zone,
    )
    rows = connection.execute(
        select(
            Attendance.member_id,
            Attendance.status,
            Attendance.checked_in_at,
            Member.name,
            Member.org_unit_id,
        )
        .join(Member, Member.id == Attendance.member_id)
        .where(Attendance.session_id == session_id, Attendance.status.in_(ARRIVED))
    ).all()
    branch_of_unit: dict[int, int] = {}

    def branch(unit_id: int) -> int:
        if unit_id not in branch_of_unit:
            branch_of_unit[unit_id] = branch_of(tree.path_to_root(unit_id))
        return branch_of_unit[unit_id]

    counts: dict[int, list[int]] = {}  # branch → [expected, arrived, walk-ins]
    for unit_id in expected.values():
        counts.setdefault(branch(unit_id), [0, 0, 0])[0] += 1
    for member_id, _, _, _, unit_id in rows:
        if member_id in expected:
            counts.setdefault(branch(expected[member_id]), [0, 0, 0])[1] += 1
        else:
            counts.setdefault(branch(unit_id), [0, 0, 0])[2] += 1
    names = dict(
        connection.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(counts))).all()
    )
    branches = sorted(
        (BranchArrivals(names.get(b, "?"), e, a, w) for b, (e, a, w) in counts.items()),
        key=lambda b: (-(b.rate or 0.0), -b.arrived - b.walk_ins, b.name),
    )
    arrivals = sorted(
        ((at, m, status, name, unit_id) for m, status, at, name, unit_id in rows if at is not None),
        reverse=True,
    )[:LATEST_ARRIVALS]
    latest = tuple(
        Arrival(
            mask_name(name, mask),
            names.get(branch(expected.get(m, unit_id)), ""),
            at,
            status == AttendanceStatus.LATE.value,
        )
        for at, m, status, name, unit_id in arrivals
    )
    return LiveFigures(
        session_id=session_id,
        title=title,
        starts_at=starts_at,
        ends_at=ends_at,
        rooms=_rooms(connection, {session_id}).get(session_id, ()),
        expected=len(expected),
        arrived=len(rows),
        late=sum(1 for r in rows if r[1] == AttendanceStatus.LATE.value),
        branches=tuple(branches),
        latest=latest,
    )


def room_session(connection: Connection, room_id: int, now: datetime, zone: tzinfo) -> int | None:
    """The session a room's screen shows now: the one in progress, else today's next, else last."""
    today = now.astimezone(zone).date()
    start = datetime.combine(today, datetime.min.time(), tzinfo=zone)
    rows = connection.execute(
        select(AttendanceSession.id, AttendanceSession.starts_at, AttendanceSession.ends_at)
        .join(SessionRoom, SessionRoom.session_id == AttendanceSession.id)
        .where(
            SessionRoom.room_id == room_id,
            AttendanceSession.cancelled_at.is_(None),
            AttendanceSession.starts_at < start + timedelta(days=1),
            AttendanceSession.ends_at > start,
        )
        .order_by(AttendanceSession.starts_at, AttendanceSession.id)
    ).all()
    for session_id, starts_at, ends_at in rows:
        if starts_at <= now < ends_at:
            return int(session_id)
    for session_id, starts_at, _ in rows:
        if starts_at > now:
            return int(session_id)
    return int(rows[-1][0]) if rows else None


def session_rooms(connection: Connection, session_id: int) -> frozenset[int]:
    """The rooms a session is held in."""
    return frozenset(
        connection.scalars(select(SessionRoom.room_id).where(SessionRoom.session_id == session_id))
    )
