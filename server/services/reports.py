"""Report queries: a branch's attendance matrix (members × sessions) over a period.

The rankings and export pages show who was expected at which session and how
they attended. Expected attendance is the frozen roster (session_roster), so a
member who changed branch shows in the branch that expected them; a member who
attended a session they were not expected at (a walk-in) shows too. A fixed
number of queries whatever the size of the branch, each driven by an index.
"""

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlalchemy import Connection, select

from server.db import lookups
from server.db.models import (
    Attendance,
    AttendanceSession,
    Member,
    SessionRosterEntry,
)
from server.services.organisation import org_unit_id
from server.services.rankings import Period
from server.services.settlement import local_midnight

# A cell of someone on the roster with no attendance row: the session has not
# been closed yet (closing writes the absences).
EXPECTED = "expected"


@dataclass(frozen=True)
class MatrixSession:
    """A column of the matrix."""

    session_id: int
    title: str
    starts_at: datetime


@dataclass(frozen=True)
class MatrixMember:
    """A row of the matrix."""

    member_id: int
    employee_no: str
    name: str


@dataclass(frozen=True)
class AttendanceMatrix:
    """Members × sessions of an org unit's subtree in a period; cells hold a status."""

    sessions: list[MatrixSession]
    members: list[MatrixMember]
    # (member_id, session_id) → attendance status, or EXPECTED; absent key: not expected.
    cells: dict[tuple[int, int], str]

    def status(self, member_id: int, session_id: int) -> str | None:
        """The cell's status; None where the member was neither expected nor there."""
        return self.cells.get((member_id, session_id))


def attendance_matrix(
    connection: Connection, unit_code: str, period: Period, zone: tzinfo
) -> AttendanceMatrix:
    """The attendance matrix of an org unit's subtree (a branch) for a period."""
    unit_id = org_unit_id(connection, unit_code)
    units = sorted(lookups.org_tree(connection).subtree(unit_id))
    start, end = local_midnight(period.start, zone), local_midnight(period.end, zone)
    in_period = (
        AttendanceSession.starts_at >= start,
        AttendanceSession.starts_at < end,
        AttendanceSession.cancelled_at.is_(None),
    )
    # Each query walks an index from the branch or its members inward; joining the
    # roster to attendance in one statement made PostgreSQL hash all attendance.
    roster = (
        select(SessionRosterEntry.member_id, SessionRosterEntry.session_id)
        .join(AttendanceSession, AttendanceSession.id == SessionRosterEntry.session_id)
        .where(SessionRosterEntry.org_unit_id.in_(units), *in_period)
    )
    cells: dict[tuple[int, int], str] = dict.fromkeys(
        ((member_id, session_id) for member_id, session_id in connection.execute(roster)),
        EXPECTED,
    )
    current = set(connection.scalars(select(Member.id).where(Member.org_unit_id.in_(units))).all())
    people = current | {member_id for member_id, _ in cells}
    for part in lookups.chunks(sorted(people)):
        for member_id, session_id, status in connection.execute(
            select(Attendance.member_id, Attendance.session_id, Attendance.status)
            .join(AttendanceSession, AttendanceSession.id == Attendance.session_id)
            .where(Attendance.member_id.in_(part), *in_period)
        ):
            # Attendance elsewhere by someone the branch expected there only if it did.
            if member_id in current or (member_id, session_id) in cells:
                cells[(member_id, session_id)] = status
    members: list[MatrixMember] = []
    shown = {member_id for member_id, _ in cells} | current
    for part in lookups.chunks(sorted(shown)):
        members.extend(
            MatrixMember(*row)
            for row in connection.execute(
                select(Member.id, Member.employee_no, Member.name).where(Member.id.in_(part))
            )
        )
    sessions: list[MatrixSession] = []
    for part in lookups.chunks(sorted({session_id for _, session_id in cells})):
        sessions.extend(
            MatrixSession(*row)
            for row in connection.execute(
                select(
                    AttendanceSession.id, AttendanceSession.title, AttendanceSession.starts_at
                ).where(AttendanceSession.id.in_(part))
            )
        )
    return AttendanceMatrix(
        sessions=sorted(sessions, key=lambda s: (s.starts_at, s.session_id)),
        members=sorted(members, key=lambda m: m.employee_no),
        cells=cells,
    )
