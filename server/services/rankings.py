"""Rankings, the monthly star, branch benchmarks and quarterly publication, read from the DB.

Points count in the period of what earned them: attendance credits and their
reversals by their session's start, adjustments by when they were made.
Expected attendance comes from frozen rosters, so a member who moved branch
counts for the branch that expected them at each session.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from server.audit.chain import record_audit
from server.db import lookups
from server.db.models import (
    Attendance,
    AttendanceSession,
    Member,
    OrgUnit,
    Publication,
    SessionRosterEntry,
    table_of,
)
from server.domain import rankings
from server.domain.attendance import AttendanceStatus
from server.errors import Conflict, DomainError, NotFound
from server.services.organisation import org_unit_id
from server.services.settlement import local_midnight, quarter_end, quarter_start
from server.services.unit_of_work import UnitOfWork

ATTENDED = (AttendanceStatus.PRESENT.value, AttendanceStatus.LATE.value)


@dataclass(frozen=True)
class Period:
    """[start, end) in local dates."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise DomainError(f"a period must end after it starts ({self.start} – {self.end})")

    @classmethod
    def month(cls, year: int, month: int) -> "Period":
        """One calendar month."""
        if not 1 <= month <= 12:
            raise DomainError(f"no month {month}")
        return cls(date(year, month, 1), date(year + month // 12, month % 12 + 1, 1))

    @classmethod
    def quarter(cls, label: str) -> "Period":
        """A quarter written like 2026Q1."""
        try:
            year, q = label.upper().split("Q")
            first = date(int(year), 3 * (int(q) - 1) + 1, 1)
        except ValueError as exc:
            raise DomainError(f"a quarter is written like 2026Q1, not {label!r}") from exc
        return cls(quarter_start(first), quarter_end(first))


def _members_in(connection: Connection, units: Iterable[int]) -> dict[int, tuple[str, str, int]]:
    return {
        m: (no, name, unit)
        for m, no, name, unit in connection.execute(
            select(Member.id, Member.employee_no, Member.name, Member.org_unit_id).where(
                Member.org_unit_id.in_(units)
            )
        )
    }


def _points(
    connection: Connection, members: Iterable[int], period: Period, zone: tzinfo
) -> dict[int, int]:
    start, end = local_midnight(period.start, zone), local_midnight(period.end, zone)
    return lookups.period_points(connection, members, start, end)


@dataclass(frozen=True)
class RankedMember:
    """A member's place in an org unit's ranking."""

    rank: int
    employee_no: str
    name: str
    points: int


def member_ranking(
    connection: Connection, unit_code: str, period: Period, zone: tzinfo
) -> list[RankedMember]:
    """Members of an org unit's subtree by points in the period."""
    unit_id = org_unit_id(connection, unit_code)
    members = _members_in(connection, lookups.org_tree(connection).subtree(unit_id))
    points = _points(connection, members, period, zone)
    return [
        RankedMember(r.rank, members[r.member_id][0], members[r.member_id][1], r.points)
        for r in rankings.rank_members({m: points.get(m, 0) for m in members})
    ]


def _roster_counts(
    connection: Connection, units: Iterable[int], period: Period, zone: tzinfo
) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Per member of the roster org units: sessions expected, attended and late (leave aside)."""
    start, end = local_midnight(period.start, zone), local_midnight(period.end, zone)
    expected: dict[int, int] = {}
    attended: dict[int, int] = {}
    late: dict[int, int] = {}
    rows = connection.execute(
        select(SessionRosterEntry.member_id, Attendance.status)
        .join(AttendanceSession, AttendanceSession.id == SessionRosterEntry.session_id)
        .outerjoin(
            Attendance,
            (Attendance.session_id == SessionRosterEntry.session_id)
            & (Attendance.member_id == SessionRosterEntry.member_id),
        )
        .where(
            SessionRosterEntry.org_unit_id.in_(units),
            AttendanceSession.starts_at >= start,
            AttendanceSession.starts_at < end,
            AttendanceSession.cancelled_at.is_(None),
        )
    )
    for member_id, status in rows:
        if status == AttendanceStatus.EXCUSED.value:
            continue  # approved leave is not held against anyone
        expected[member_id] = expected.get(member_id, 0) + 1
        if status in ATTENDED:
            attended[member_id] = attended.get(member_id, 0) + 1
        if status == AttendanceStatus.LATE.value:
            late[member_id] = late.get(member_id, 0) + 1
    return expected, attended, late


@dataclass(frozen=True)
class Star:
    """A branch's star of the month, and the tie-breaks that chose them."""

    employee_no: str
    name: str
    points: int
    attendance_rate: float
    late: int


def monthly_star(
    connection: Connection, unit_code: str, period: Period, zone: tzinfo
) -> tuple[Star | None, tuple[str, ...]]:
    """The star of an org unit (a branch) for a month."""
    unit_id = org_unit_id(connection, unit_code)
    units = lookups.org_tree(connection).subtree(unit_id)
    members = _members_in(connection, units)
    points = _points(connection, members, period, zone)
    expected, attended, late = _roster_counts(connection, units, period, zone)
    records = [
        rankings.MonthRecord(
            m, no, points.get(m, 0), expected.get(m, 0), attended.get(m, 0), late.get(m, 0)
        )
        for m, (no, _, _) in members.items()
    ]
    best = rankings.monthly_star(records)
    if best is None:
        return None, rankings.STAR_TIE_BREAKS
    return (
        Star(best.employee_no, members[best.member_id][1], best.points, best.rate, best.late),
        rankings.STAR_TIE_BREAKS,
    )


@dataclass(frozen=True)
class BranchFigures:
    """One branch's benchmark, named."""

    code: str
    name: str
    benchmark: rankings.Benchmark


def benchmarks(
    connection: Connection,
    parent_code: str,
    period: Period,
    zone: tzinfo,
    *,
    prior_weight: float = 10.0,
) -> list[BranchFigures]:
    """Benchmarks of the org units directly under `parent_code`, each with its subtree."""
    parent_id = org_unit_id(connection, parent_code)
    children = connection.execute(
        select(OrgUnit.id, OrgUnit.code, OrgUnit.name).where(OrgUnit.parent_id == parent_id)
    ).all()
    tree = lookups.org_tree(connection)
    records = []
    for child_id, _, _ in children:
        units = tree.subtree(child_id)
        members = _members_in(connection, units)
        expected, attended, _ = _roster_counts(connection, units, period, zone)
        records.append(
            rankings.BranchRecord(
                child_id,
                len(members),
                sum(expected.values()),
                sum(attended.values()),
                sum(_points(connection, members, period, zone).values()),
            )
        )
    names = {child_id: (code, name) for child_id, code, name in children}
    return [
        BranchFigures(*names[b.org_unit_id], b)
        for b in rankings.benchmark_branches(records, prior_weight=prior_weight)
    ]


def _figures(
    connection: Connection, unit_code: str, period: Period, zone: tzinfo
) -> dict[str, Any]:
    return {
        "members": [asdict(r) for r in member_ranking(connection, unit_code, period, zone)],
        "branches": [
            {"code": b.code, "name": b.name, **asdict(b.benchmark)}
            for b in benchmarks(connection, unit_code, period, zone)
        ],
    }


def publish(
    uow: UnitOfWork,
    unit_code: str,
    quarter: str,
    now: datetime,
    zone: tzinfo,
    *,
    actor: str | None = None,
) -> dict[str, Any]:
    """Freeze an org unit's figures for a quarter; Conflict if already published.

    With an `actor`, the publication is written to the audit chain with it.
    """
    period = Period.quarter(quarter)
    if now < local_midnight(period.end, zone):
        raise Conflict(f"{quarter} has not ended; it can be published from {period.end}")
    with uow:
        connection = uow.session.connection()
        unit_id = org_unit_id(connection, unit_code)
        figures = _figures(connection, unit_code, period, zone)
        try:
            connection.execute(
                table_of(Publication)
                .insert()
                .values(
                    period=quarter.upper(), org_unit_id=unit_id, published_at=now, figures=figures
                )
            )
        except IntegrityError as exc:
            raise Conflict(f"{unit_code} {quarter} is already published") from exc
        if actor is not None:
            record_audit(
                uow.session,
                actor=actor,
                action="rankings.publish",
                target=f"org unit {unit_code} {quarter.upper()}",
                details={"members": len(figures["members"]), "branches": len(figures["branches"])},
                at=now,
            )
        uow.commit()
    return figures


@dataclass(frozen=True)
class Published:
    """Frozen figures and the corrections made since, as adjustments."""

    period: str
    published_at: datetime
    figures: dict[str, Any]
    adjustments: list[dict[str, Any]]


def publication(connection: Connection, unit_code: str, quarter: str, zone: tzinfo) -> Published:
    """A publication as frozen, with later corrections to members' points listed apart."""
    unit_id = org_unit_id(connection, unit_code)
    period = Period.quarter(quarter)
    row = connection.execute(
        select(Publication.published_at, Publication.figures).where(
            Publication.org_unit_id == unit_id, Publication.period == quarter.upper()
        )
    ).one_or_none()
    if row is None:
        raise NotFound("publication", f"{unit_code} {quarter}")
    published_at, figures = row
    frozen = {m["employee_no"]: int(m["points"]) for m in figures.get("members", [])}
    now = {r.employee_no: r.points for r in member_ranking(connection, unit_code, period, zone)}
    keys = sorted(frozen.keys() | now.keys())
    index = {k: i for i, k in enumerate(keys)}
    changed = rankings.adjustments_since(
        {index[k]: v for k, v in frozen.items()}, {index[k]: v for k, v in now.items()}
    )
    adjustments = [
        {
            "employee_no": keys[a.member_id],
            "published": a.published,
            "current": a.current,
            "delta": a.delta,
        }
        for a in changed
    ]
    return Published(quarter.upper(), published_at, figures, adjustments)


def unit_record(
    connection: Connection, unit_code: str, period: Period, zone: tzinfo
) -> rankings.BranchRecord:
    """One org unit's raw figures for a period, its sub-units included (for trend charts)."""
    unit_id = org_unit_id(connection, unit_code)
    units = lookups.org_tree(connection).subtree(unit_id)
    members = _members_in(connection, units)
    expected, attended, _ = _roster_counts(connection, units, period, zone)
    return rankings.BranchRecord(
        unit_id,
        len(members),
        sum(expected.values()),
        sum(attended.values()),
        sum(_points(connection, members, period, zone).values()),
    )
