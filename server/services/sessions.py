"""Session administration: plan (with recurrence), group into series, freeze rosters, cancel, close.

Closing is where absences are decided: the marks come from the taps table
(earliest check-in, latest check-out after it), so taps an offline reader
delivers late count exactly as if they had come on time; the readers of the
session's rooms must have drained their outboxes or the grace period passed;
then every expected member gets a final status and the ledger is settled.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Connection, bindparam, insert, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from protocol import AckResult, TapMode
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
from server.domain.recurrence import expand
from server.domain.roster import ActiveDates, Membership, freeze_roster
from server.errors import Conflict, DomainError, NotFound
from server.services import settlement
from server.services.unit_of_work import UnitOfWork


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


def plan_sessions(uow: UnitOfWork, plan: SessionPlan, zone: tzinfo) -> list[int]:
    """Create a session, or one per occurrence of its recurrence rule; returns their ids."""
    duration = plan.ends_at - plan.starts_at
    # Validates the times and check-in settings before anything is written.
    CheckinWindow.for_session(
        plan.starts_at,
        plan.ends_at,
        open_minutes=plan.checkin_open_minutes,
        late_grace_minutes=plan.late_grace_minutes,
    )
    StayRule(plan.requires_checkout, timedelta(minutes=plan.min_stay_minutes))
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
        uow.commit()
    return created


def group_series(uow: UnitOfWork, title: str, session_ids: Sequence[int]) -> int:
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


def cancel(uow: UnitOfWork, session_id: int, reason: str, now: datetime) -> None:
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
