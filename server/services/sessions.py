"""Session administration: plan (with recurrence), list, edit, series, freeze, cancel, close.

Closing is where absences are decided: the marks come from the taps table
(earliest check-in, latest check-out after it), so taps an offline reader
delivers late count exactly as if they had come on time; the readers of the
session's rooms must have drained their outboxes or the grace period passed;
then every expected member gets a final status and the ledger is settled.

Every change is written to the audit chain in the same transaction, naming
the actor ("system" when the scheduler or a command does it).
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Final, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from protocol import AckResult, TapMode
from server.audit.chain import record_audit
from server.db import lookups
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    LeaveRequestRecord,
    Member,
    MemberOrgHistory,
    OrgUnit,
    Reader,
    Room,
    SeriesSession,
    SessionAudience,
    SessionRoom,
    SessionRosterEntry,
    SessionSeries,
    TapRecord,
    table_of,
)
from server.domain.attendance import (
    AttendanceStatus,
    Audience,
    CheckinWindow,
    Marks,
    StayRule,
    TapFact,
    TapKind,
    fold_taps,
)
from server.domain.closing import (
    DEFAULT_READER_GRACE,
    LeaveRequest,
    LeaveStatus,
    ReaderReport,
    decide_session,
)
from server.domain.lifecycle import SessionLife, SessionStatus
from server.domain.recurrence import expand
from server.domain.roster import ActiveDates, Membership, freeze_roster
from server.errors import Conflict, DomainError, NotFound
from server.services import settlement
from server.services.unit_of_work import UnitOfWork

SYSTEM_ACTOR: Final = "system"
_T = TypeVar("_T")


@dataclass(frozen=True)
class SessionPlan:
    """A session to create; with a recurrence rule, one per occurrence."""

    title: str
    activity_type_code: str
    starts_at: datetime
    ends_at: datetime
    room_codes: Sequence[str] = ()
    org_unit_codes: Sequence[str] = ()
    employee_nos: Sequence[str] = ()
    checkin_open_minutes: int = 30
    late_grace_minutes: int = 5
    allow_walk_in: bool = True
    requires_checkout: bool = False
    min_stay_minutes: int = 0
    recurrence_rule: str | None = None
    recurrence_until: datetime | None = None
    series_title: str | None = None


@dataclass(frozen=True)
class Closed:
    """A session's closing: how many of each status, and the ledger entries it added."""

    session_id: int
    closed_at: datetime
    statuses: dict[str, int]
    ledger_entries: int


def _ids_by(
    connection: Connection,
    key: InstrumentedAttribute[str],
    id_: InstrumentedAttribute[int],
    values: Sequence[str],
    kind: str,
) -> list[int]:
    """Ids of rows by code (or employee number), in the order given; NotFound names the missing."""
    wanted = list(dict.fromkeys(values))
    if not wanted:
        return []
    found: dict[str, int] = {}
    for k, v in connection.execute(select(key, id_).where(key.in_(wanted))):
        found[k] = v
    missing = [v for v in wanted if v not in found]
    if missing:
        raise NotFound(kind, ", ".join(missing))
    return [found[v] for v in wanted]


def _stay(requires_checkout: bool, min_stay_minutes: int, length: timedelta) -> StayRule:
    """The check-out rule; a minimum stay longer than the session could never be met."""
    rule = StayRule(requires_checkout, timedelta(minutes=min_stay_minutes))
    if rule.minimum_stay > length:
        raise DomainError(
            f"a minimum stay of {min_stay_minutes} minutes is longer than the session "
            f"({int(length.total_seconds() // 60)} minutes)"
        )
    return rule


def plan_sessions(
    uow: UnitOfWork, plan: SessionPlan, zone: tzinfo, *, actor: str = SYSTEM_ACTOR
) -> list[int]:
    """Create a session, or one per occurrence of its recurrence rule; returns their ids."""
    duration = plan.ends_at - plan.starts_at
    # Validates the times and check-in settings before anything is written.
    CheckinWindow.for_session(
        plan.starts_at,
        plan.ends_at,
        open_minutes=plan.checkin_open_minutes,
        late_grace_minutes=plan.late_grace_minutes,
    )
    _stay(plan.requires_checkout, plan.min_stay_minutes, duration)
    if plan.recurrence_rule:
        times = [
            (o.starts_at, o.ends_at)
            for o in expand(
                plan.recurrence_rule, plan.starts_at, duration, zone, until=plan.recurrence_until
            )
        ]
        if not times:
            raise DomainError(f"rule {plan.recurrence_rule!r} gives no occurrence")
    else:
        times = [(plan.starts_at, plan.ends_at)]
    with uow:
        connection = uow.session.connection()
        (activity_id,) = _ids_by(
            connection,
            ActivityType.code,
            ActivityType.id,
            [plan.activity_type_code],
            "activity type",
        )
        rooms = _ids_by(connection, Room.code, Room.id, plan.room_codes, "room")
        units = _ids_by(connection, OrgUnit.code, OrgUnit.id, plan.org_unit_codes, "org unit")
        members = _ids_by(
            connection,
            Member.employee_no,
            Member.id,
            plan.employee_nos,
            "member with employee number",
        )
        created: list[int] = []
        for starts_at, ends_at in times:
            row = AttendanceSession(
                title=plan.title,
                activity_type_id=activity_id,
                starts_at=starts_at,
                ends_at=ends_at,
                checkin_open_minutes=plan.checkin_open_minutes,
                late_grace_minutes=plan.late_grace_minutes,
                allow_walk_in=plan.allow_walk_in,
                requires_checkout=plan.requires_checkout,
                min_stay_minutes=plan.min_stay_minutes,
                recurrence_rule=plan.recurrence_rule,
            )
            uow.session.add(row)
            uow.session.flush()
            created.append(row.id)
            uow.session.add_all([SessionRoom(session_id=row.id, room_id=r) for r in rooms])
            uow.session.add_all(
                [SessionAudience(session_id=row.id, org_unit_id=u) for u in units]
                + [SessionAudience(session_id=row.id, member_id=m) for m in members]
            )
        if plan.series_title:
            series = SessionSeries(title=plan.series_title, activity_type_id=activity_id)
            uow.session.add(series)
            uow.session.flush()
            uow.session.add_all([SeriesSession(session_id=s, series_id=series.id) for s in created])
        record_audit(
            uow.session,
            actor=actor,
            action="session.plan",
            target=f"sessions {', '.join(map(str, created))}",
            details=_jsonable({**asdict(plan), "session_ids": created}),
        )
        uow.commit()
    return created


def group_series(
    uow: UnitOfWork, title: str, session_ids: Sequence[int], *, actor: str = SYSTEM_ACTOR
) -> int:
    """Make sessions of one activity type into a series; returns the series id."""
    wanted = sorted(set(session_ids))
    if len(wanted) < 2:
        raise DomainError("a series needs at least two sessions")
    with uow:
        rows = uow.session.execute(
            select(AttendanceSession.id, AttendanceSession.activity_type_id).where(
                AttendanceSession.id.in_(wanted)
            )
        ).all()
        missing = set(wanted) - {r[0] for r in rows}
        if missing:
            raise NotFound("session", ", ".join(map(str, sorted(missing))))
        types = {r[1] for r in rows}
        if len(types) != 1:
            raise DomainError("the sessions of a series must share one activity type")
        taken = uow.session.scalars(
            select(SeriesSession.session_id).where(SeriesSession.session_id.in_(wanted))
        ).all()
        if taken:
            raise Conflict(f"sessions {sorted(taken)} already belong to a series")
        series = SessionSeries(title=title, activity_type_id=types.pop())
        uow.session.add(series)
        uow.session.flush()
        uow.session.add_all([SeriesSession(session_id=s, series_id=series.id) for s in wanted])
        series_id = series.id
        record_audit(
            uow.session,
            actor=actor,
            action="series.create",
            target=f"series {series_id}",
            details={"title": title, "session_ids": wanted},
        )
        uow.commit()
    return series_id


def _session(db: Session, session_id: int) -> AttendanceSession:
    row = db.get(AttendanceSession, session_id)
    if row is None:
        raise NotFound("session", session_id)
    return row


def _frozen_roster(
    connection: Connection, meeting: AttendanceSession, zone: tzinfo
) -> frozenset[int]:
    """The stored roster, freezing it first if the session has none yet."""
    if meeting.roster_frozen_at is not None:
        return frozenset(
            connection.scalars(
                select(SessionRosterEntry.member_id).where(
                    SessionRosterEntry.session_id == meeting.id
                )
            ).all()
        )
    audience = lookups.audiences_of(connection, {meeting.id}).get(meeting.id, Audience())
    # Only the memberships in force at the start: the rest of the history is never read.
    memberships = [
        Membership(m, u, f, t)
        for m, u, f, t in connection.execute(
            select(
                MemberOrgHistory.member_id,
                MemberOrgHistory.org_unit_id,
                MemberOrgHistory.valid_from,
                MemberOrgHistory.valid_to,
            ).where(
                MemberOrgHistory.valid_from <= meeting.starts_at,
                or_(
                    MemberOrgHistory.valid_to.is_(None),
                    MemberOrgHistory.valid_to > meeting.starts_at,
                ),
            )
        )
    ]
    active: dict[int, ActiveDates] = {}
    current: dict[int, int] = {}
    for m, unit_id, f, t in connection.execute(
        select(Member.id, Member.org_unit_id, Member.active_from, Member.active_to)
    ):
        active[m] = ActiveDates(f, t)
        current[m] = unit_id
    roster = freeze_roster(
        audience,
        memberships,
        lookups.org_tree(connection),
        meeting.starts_at,
        active=active,
        local_day=meeting.starts_at.astimezone(zone).date(),
    )
    # A listed member with no membership at the start counts for their unit now.
    units = current | {m.member_id: m.org_unit_id for m in memberships}
    if roster:
        connection.execute(
            insert(table_of(SessionRosterEntry)),
            [
                {"session_id": meeting.id, "member_id": m, "org_unit_id": units[m]}
                for m in sorted(roster)
            ],
        )
    connection.execute(
        update(table_of(AttendanceSession))
        .where(AttendanceSession.id == meeting.id)
        .values(roster_frozen_at=meeting.starts_at)
    )
    return roster


def freeze(uow: UnitOfWork, session_id: int, zone: tzinfo) -> list[int]:
    """Freeze (or read) a session's expected roster; returns the member ids."""
    with uow:
        connection = uow.session.connection()
        roster = _frozen_roster(connection, _session(uow.session, session_id), zone)
        uow.commit()
    return sorted(roster)


def cancel(
    uow: UnitOfWork, session_id: int, reason: str, now: datetime, *, actor: str = SYSTEM_ACTOR
) -> None:
    """Cancel a session: it takes no more taps and is never closed or scored."""
    if not reason.strip():
        raise DomainError("a cancellation needs a reason")
    with uow:
        connection = uow.session.connection()
        meeting = _session(uow.session, session_id)
        if meeting.closed_at is not None:
            raise Conflict(f"session {session_id} is closed; correct its attendance instead")
        if meeting.cancelled_at is not None:
            raise Conflict(f"session {session_id} is already cancelled")
        connection.execute(
            update(table_of(AttendanceSession))
            .where(AttendanceSession.id == session_id)
            .values(cancelled_at=now, cancel_reason=reason.strip()[:200])
        )
        record_audit(
            uow.session,
            actor=actor,
            action="session.cancel",
            target=f"session {session_id}",
            details={"reason": reason.strip()[:200]},
            at=now,
        )
        uow.commit()


def _marks(connection: Connection, session_id: int) -> dict[int, Marks]:
    taps = []
    for event_id, member_id, mode, occurred_at, result in connection.execute(
        select(
            TapRecord.event_id,
            TapRecord.member_id,
            TapRecord.mode,
            TapRecord.occurred_at,
            TapRecord.result,
        ).where(
            TapRecord.session_id == session_id,
            TapRecord.member_id.is_not(None),
            TapRecord.occurred_at.is_not(None),
        )
    ):
        if mode == TapMode.CHECKIN.value and result in (
            AckResult.ACCEPTED.value,
            AckResult.DUPLICATE.value,
        ):
            kind = TapKind.CHECKIN
        elif mode == TapMode.CHECKOUT.value and result in (
            AckResult.ACCEPTED.value,
            AckResult.DUPLICATE.value,
            AckResult.NOT_EXPECTED.value,
        ):
            # A check-out that came before its (late-delivered) check-in still counts.
            kind = TapKind.CHECKOUT
        else:
            continue
        assert member_id is not None
        assert occurred_at is not None
        taps.append(TapFact(str(event_id), member_id, session_id, kind, occurred_at))
    return {member: marks for (member, _), marks in fold_taps(taps).items()}


def close(
    uow: UnitOfWork,
    session_id: int,
    now: datetime,
    zone: tzinfo,
    *,
    grace: timedelta = DEFAULT_READER_GRACE,
    actor: str = SYSTEM_ACTOR,
) -> Closed:
    """Decide every expected member's status, settle the ledger, and mark the session closed.

    NotReady while the window is open or a reader may still hold taps;
    Conflict if the session is cancelled or already closed.
    """
    with uow:
        connection = uow.session.connection()
        meeting = _session(uow.session, session_id)
        if meeting.cancelled_at is not None:
            raise Conflict(f"session {session_id} was cancelled")
        if meeting.closed_at is not None:
            raise Conflict(f"session {session_id} was closed at {meeting.closed_at.isoformat()}")
        window = CheckinWindow.for_session(
            meeting.starts_at,
            meeting.ends_at,
            open_minutes=meeting.checkin_open_minutes,
            late_grace_minutes=meeting.late_grace_minutes,
            closes_at=meeting.closes_at,
        )
        readers = [
            ReaderReport(r, at, depth)
            for r, at, depth in connection.execute(
                select(Reader.reader_id, Reader.last_status_at, Reader.outbox_depth)
                .join(SessionRoom, SessionRoom.room_id == Reader.room_id)
                .where(SessionRoom.session_id == session_id)
            )
        ]
        leaves = [
            LeaveRequest(m, session_id, LeaveStatus(s), a)
            for m, s, a in connection.execute(
                select(
                    LeaveRequestRecord.member_id,
                    LeaveRequestRecord.status,
                    LeaveRequestRecord.approver,
                ).where(LeaveRequestRecord.session_id == session_id)
            )
        ]
        marks = _marks(connection, session_id)
        statuses = decide_session(
            window=window,
            stay=StayRule(meeting.requires_checkout, timedelta(minutes=meeting.min_stay_minutes)),
            roster=_frozen_roster(connection, meeting, zone),
            marks=marks,
            leaves=leaves,
            readers=readers,
            now=now,
            grace=grace,
        )
        _write_attendance(connection, session_id, statuses, marks, now)
        connection.execute(
            update(table_of(AttendanceSession))
            .where(AttendanceSession.id == session_id)
            .values(closed_at=now)
        )
        settled = settlement.settlement(connection, [], zone, closing=session_id)
        added = settlement.apply(connection, settled, f"session {session_id} closed", now)
        record_audit(
            uow.session,
            actor=actor,
            action="session.close",
            target=f"session {session_id}",
            details={"ledger_entries": len(added)},
            at=now,
        )
        uow.commit()
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status.value] = counts.get(status.value, 0) + 1
    return Closed(session_id, now, counts, len(added))


def _write_attendance(
    connection: Connection,
    session_id: int,
    statuses: dict[int, AttendanceStatus],
    marks: dict[int, Marks],
    now: datetime,
) -> None:
    existing = set(
        connection.scalars(select(Attendance.member_id).where(Attendance.session_id == session_id))
    )
    changes: list[dict[str, Any]] = []
    fresh: list[dict[str, Any]] = []
    for member_id, status in sorted(statuses.items()):
        m = marks.get(member_id, Marks())
        checked_in, checked_out = m.checked_in_at, m.checked_out_at
        row = {
            "m": member_id,
            "s": session_id,
            "new_status": status.value,
            "new_in": checked_in,
            "new_out": checked_out,
        }
        (changes if member_id in existing else fresh).append(row)
    table = table_of(Attendance)
    if changes:
        connection.execute(
            update(table)
            .where(table.c.member_id == bindparam("m"), table.c.session_id == bindparam("s"))
            .values(
                status=bindparam("new_status"),
                checked_in_at=bindparam("new_in", type_=table.c.checked_in_at.type),
                checked_out_at=bindparam("new_out", type_=table.c.checked_out_at.type),
            ),
            changes,
        )
    if fresh:
        connection.execute(
            insert(table),
            [
                {
                    "member_id": r["m"],
                    "session_id": session_id,
                    "status": r["new_status"],
                    "checked_in_at": r["new_in"],
                    "checked_out_at": r["new_out"],
                    "created_at": now,
                }
                for r in fresh
            ],
        )


# --------------------------------------------------------------------------- reading and editing


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Audit details: datetimes as ISO text, sequences as lists."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, datetime | date):
            out[key] = value.isoformat()
        elif isinstance(value, list | tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class SessionFilter:
    """Which sessions to list: starting on local days [start, end), audience, type, status."""

    start: date | None = None
    end: date | None = None
    org_unit_code: str | None = None
    activity_type_code: str | None = None
    status: SessionStatus | None = None


@dataclass(frozen=True)
class SessionSummary:
    """A session in a list."""

    id: int
    title: str
    activity_type: str
    starts_at: datetime
    ends_at: datetime
    status: SessionStatus
    rooms: list[str]
    series_id: int | None


@dataclass(frozen=True)
class SessionPage:
    """One page of sessions and how many match in all."""

    total: int
    items: list[SessionSummary]


@dataclass(frozen=True)
class SeriesView:
    """A series and its sessions, earliest first."""

    id: int
    title: str
    activity_type: str
    session_ids: list[int]


@dataclass(frozen=True)
class SessionAudienceView:
    """A session's audience: org units (with sub-units) and listed members; empty is open."""

    org_units: list[str]
    members: list[str]


@dataclass(frozen=True)
class SessionDetail:
    """A session with its settings, rooms, audience and series."""

    id: int
    title: str
    activity_type: str
    starts_at: datetime
    ends_at: datetime
    status: SessionStatus
    checkin_open_minutes: int
    late_grace_minutes: int
    closes_at: datetime | None
    allow_walk_in: bool
    requires_checkout: bool
    min_stay_minutes: int
    recurrence_rule: str | None
    roster_frozen_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    closed_at: datetime | None
    rooms: list[str]
    audience: SessionAudienceView
    series: SeriesView | None


@dataclass(frozen=True)
class SessionChanges:
    """Changes to a planned session: None leaves a field as it is; a list replaces the old one."""

    title: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    checkin_open_minutes: int | None = None
    late_grace_minutes: int | None = None
    allow_walk_in: bool | None = None
    requires_checkout: bool | None = None
    min_stay_minutes: int | None = None
    room_codes: Sequence[str] | None = None
    org_unit_codes: Sequence[str] | None = None
    employee_nos: Sequence[str] | None = None


def _status_condition(status: SessionStatus, now: datetime) -> ColumnElement[bool]:
    """SQL for SessionLife.status(now) == status."""
    live = and_(AttendanceSession.cancelled_at.is_(None), AttendanceSession.closed_at.is_(None))
    match status:
        case SessionStatus.CANCELLED:
            return AttendanceSession.cancelled_at.is_not(None)
        case SessionStatus.CLOSED:
            return and_(
                AttendanceSession.cancelled_at.is_(None), AttendanceSession.closed_at.is_not(None)
            )
        case SessionStatus.PLANNED:
            return and_(live, AttendanceSession.starts_at > now)
        case SessionStatus.RUNNING:
            return and_(live, AttendanceSession.starts_at <= now, AttendanceSession.ends_at > now)
        case SessionStatus.ENDED:
            return and_(live, AttendanceSession.ends_at <= now)


def _life(row: AttendanceSession) -> SessionLife:
    return SessionLife(
        row.starts_at,
        row.ends_at,
        row.checkin_open_minutes,
        row.cancelled_at,
        row.closed_at,
        row.roster_frozen_at,
    )


def _rooms_of(connection: Connection, session_ids: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for batch in lookups.chunks(session_ids):
        for session_id, code in connection.execute(
            select(SessionRoom.session_id, Room.code)
            .join(Room, Room.id == SessionRoom.room_id)
            .where(SessionRoom.session_id.in_(batch))
            .order_by(Room.code)
        ):
            found.setdefault(session_id, []).append(code)
    return found


def _series_ids(connection: Connection, session_ids: Sequence[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    for batch in lookups.chunks(session_ids):
        found.update(
            connection.execute(
                select(SeriesSession.session_id, SeriesSession.series_id).where(
                    SeriesSession.session_id.in_(batch)
                )
            ).all()
        )
    return found


def list_sessions(
    db: Session,
    wanted: SessionFilter,
    now: datetime,
    zone: tzinfo,
    *,
    limit: int = 50,
    offset: int = 0,
) -> SessionPage:
    """Sessions by start day, audience unit (or a sub-unit), activity type and status; paged."""
    if wanted.start is not None and wanted.end is not None and wanted.end <= wanted.start:
        raise DomainError(
            f"end ({wanted.end.isoformat()}) must be after start ({wanted.start.isoformat()})"
        )
    connection = db.connection()
    conditions: list[ColumnElement[bool]] = []
    if wanted.start is not None:
        conditions.append(
            AttendanceSession.starts_at >= datetime.combine(wanted.start, time.min, tzinfo=zone)
        )
    if wanted.end is not None:
        conditions.append(
            AttendanceSession.starts_at < datetime.combine(wanted.end, time.min, tzinfo=zone)
        )
    if wanted.activity_type_code is not None:
        (activity_id,) = _ids_by(
            connection,
            ActivityType.code,
            ActivityType.id,
            [wanted.activity_type_code],
            "activity type",
        )
        conditions.append(AttendanceSession.activity_type_id == activity_id)
    if wanted.org_unit_code is not None:
        (unit_id,) = _ids_by(
            connection, OrgUnit.code, OrgUnit.id, [wanted.org_unit_code], "org unit"
        )
        units = sorted(lookups.org_tree(connection).subtree(unit_id))
        conditions.append(
            exists().where(
                SessionAudience.session_id == AttendanceSession.id,
                SessionAudience.org_unit_id.in_(units),
            )
        )
    if wanted.status is not None:
        conditions.append(_status_condition(wanted.status, now))
    total = connection.scalar(
        select(func.count()).select_from(AttendanceSession).where(*conditions)
    )
    rows = connection.execute(
        select(
            AttendanceSession.id,
            AttendanceSession.title,
            ActivityType.code,
            AttendanceSession.starts_at,
            AttendanceSession.ends_at,
            AttendanceSession.checkin_open_minutes,
            AttendanceSession.cancelled_at,
            AttendanceSession.closed_at,
        )
        .join(ActivityType, ActivityType.id == AttendanceSession.activity_type_id)
        .where(*conditions)
        .order_by(AttendanceSession.starts_at, AttendanceSession.id)
        .limit(limit)
        .offset(offset)
    ).all()
    ids = [r[0] for r in rows]
    rooms = _rooms_of(connection, ids)
    series = _series_ids(connection, ids)
    items = [
        SessionSummary(
            id=i,
            title=title,
            activity_type=code,
            starts_at=starts_at,
            ends_at=ends_at,
            status=SessionLife(starts_at, ends_at, open_minutes, cancelled, closed).status(now),
            rooms=rooms.get(i, []),
            series_id=series.get(i),
        )
        for i, title, code, starts_at, ends_at, open_minutes, cancelled, closed in rows
    ]
    return SessionPage(total or 0, items)


def _series_view(connection: Connection, series_id: int) -> SeriesView:
    row = connection.execute(
        select(SessionSeries.id, SessionSeries.title, ActivityType.code)
        .join(ActivityType, ActivityType.id == SessionSeries.activity_type_id)
        .where(SessionSeries.id == series_id)
    ).one_or_none()
    if row is None:
        raise NotFound("series", series_id)
    members = connection.scalars(
        select(SeriesSession.session_id)
        .join(AttendanceSession, AttendanceSession.id == SeriesSession.session_id)
        .where(SeriesSession.series_id == series_id)
        .order_by(AttendanceSession.starts_at, AttendanceSession.id)
    ).all()
    return SeriesView(row[0], row[1], row[2], list(members))


def session_detail(db: Session, session_id: int, now: datetime) -> SessionDetail:
    """One session with its rooms, audience and series."""
    connection = db.connection()
    meeting = _session(db, session_id)
    activity = db.get(ActivityType, meeting.activity_type_id)
    assert activity is not None  # a foreign key
    units = connection.scalars(
        select(OrgUnit.code)
        .join(SessionAudience, SessionAudience.org_unit_id == OrgUnit.id)
        .where(SessionAudience.session_id == session_id)
        .order_by(OrgUnit.code)
    ).all()
    members = connection.scalars(
        select(Member.employee_no)
        .join(SessionAudience, SessionAudience.member_id == Member.id)
        .where(SessionAudience.session_id == session_id)
        .order_by(Member.employee_no)
    ).all()
    series_id = _series_ids(connection, [session_id]).get(session_id)
    return SessionDetail(
        id=meeting.id,
        title=meeting.title,
        activity_type=activity.code,
        starts_at=meeting.starts_at,
        ends_at=meeting.ends_at,
        status=_life(meeting).status(now),
        checkin_open_minutes=meeting.checkin_open_minutes,
        late_grace_minutes=meeting.late_grace_minutes,
        closes_at=meeting.closes_at,
        allow_walk_in=meeting.allow_walk_in,
        requires_checkout=meeting.requires_checkout,
        min_stay_minutes=meeting.min_stay_minutes,
        recurrence_rule=meeting.recurrence_rule,
        roster_frozen_at=meeting.roster_frozen_at,
        cancelled_at=meeting.cancelled_at,
        cancel_reason=meeting.cancel_reason,
        closed_at=meeting.closed_at,
        rooms=_rooms_of(connection, [session_id]).get(session_id, []),
        audience=SessionAudienceView(list(units), list(members)),
        series=None if series_id is None else _series_view(connection, series_id),
    )


def edit_session(
    uow: UnitOfWork,
    session_id: int,
    changes: SessionChanges,
    now: datetime,
    *,
    actor: str = SYSTEM_ACTOR,
) -> None:
    """Change a planned session whose check-in has not opened; Conflict once it has.

    The new times must still lie ahead (check-in opening after `now`), and rooms,
    org units and members must exist; otherwise nothing changes.
    """
    if changes.title is not None and not changes.title.strip():
        raise DomainError("a session's title cannot be blank")
    with uow:
        db = uow.session
        connection = db.connection()
        meeting = _session(db, session_id)
        _life(meeting).check_editable(session_id, now)
        starts_at = changes.starts_at or meeting.starts_at
        ends_at = changes.ends_at or meeting.ends_at
        open_minutes = _pick(changes.checkin_open_minutes, meeting.checkin_open_minutes)
        grace = _pick(changes.late_grace_minutes, meeting.late_grace_minutes)
        requires_checkout = _pick(changes.requires_checkout, meeting.requires_checkout)
        min_stay = _pick(changes.min_stay_minutes, meeting.min_stay_minutes)
        CheckinWindow.for_session(
            starts_at,
            ends_at,
            open_minutes=open_minutes,
            late_grace_minutes=grace,
            closes_at=meeting.closes_at,
        )
        _stay(requires_checkout, min_stay, ends_at - starts_at)
        opens_at = starts_at - timedelta(minutes=open_minutes)
        if opens_at <= now:
            raise DomainError(
                f"check-in would open at {opens_at.isoformat()}, which is not in the future"
            )
        rooms = (
            None
            if changes.room_codes is None
            else _ids_by(connection, Room.code, Room.id, changes.room_codes, "room")
        )
        units = (
            None
            if changes.org_unit_codes is None
            else _ids_by(connection, OrgUnit.code, OrgUnit.id, changes.org_unit_codes, "org unit")
        )
        members = (
            None
            if changes.employee_nos is None
            else _ids_by(
                connection,
                Member.employee_no,
                Member.id,
                changes.employee_nos,
                "member with employee number",
            )
        )
        connection.execute(
            update(table_of(AttendanceSession))
            .where(AttendanceSession.id == session_id)
            .values(
                title=meeting.title if changes.title is None else changes.title.strip(),
                starts_at=starts_at,
                ends_at=ends_at,
                checkin_open_minutes=open_minutes,
                late_grace_minutes=grace,
                allow_walk_in=_pick(changes.allow_walk_in, meeting.allow_walk_in),
                requires_checkout=requires_checkout,
                min_stay_minutes=min_stay,
            )
        )
        if rooms is not None:
            connection.execute(
                delete(table_of(SessionRoom)).where(SessionRoom.session_id == session_id)
            )
            if rooms:
                connection.execute(
                    insert(table_of(SessionRoom)),
                    [{"session_id": session_id, "room_id": r} for r in rooms],
                )
        _replace_audience(connection, session_id, SessionAudience.org_unit_id, units)
        _replace_audience(connection, session_id, SessionAudience.member_id, members)
        record_audit(
            db,
            actor=actor,
            action="session.edit",
            target=f"session {session_id}",
            details=_jsonable({k: v for k, v in asdict(changes).items() if v is not None}),
            at=now,
        )
        uow.commit()


def _pick(new: _T | None, old: _T) -> _T:
    return old if new is None else new


def _replace_audience(
    connection: Connection,
    session_id: int,
    column: InstrumentedAttribute[int | None],
    ids: list[int] | None,
) -> None:
    """Replace one kind of audience entry (units or members); None leaves it as it is."""
    if ids is None:
        return
    connection.execute(
        delete(table_of(SessionAudience)).where(
            SessionAudience.session_id == session_id, column.is_not(None)
        )
    )
    if ids:
        connection.execute(
            insert(table_of(SessionAudience)),
            [{"session_id": session_id, column.key: i} for i in ids],
        )


def series_list(db: Session, *, limit: int = 50, offset: int = 0) -> list[SeriesView]:
    """Series, newest first, each with its sessions."""
    connection = db.connection()
    ids = connection.scalars(
        select(SessionSeries.id).order_by(SessionSeries.id.desc()).limit(limit).offset(offset)
    ).all()
    return [_series_view(connection, i) for i in ids]


def series(db: Session, series_id: int) -> SeriesView:
    """One series and its sessions, earliest first."""
    return _series_view(db.connection(), series_id)
