"""Report queries on both backends: the attendance matrix and points in a period."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.db import lookups
from server.db.engine import Database
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    LedgerEntry,
    Member,
    OrgUnit,
    SessionRosterEntry,
)
from server.services.rankings import Period
from server.services.reports import EXPECTED, attendance_matrix

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
JULY = datetime(2026, 7, 10, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai


def seed(database: Database) -> dict[str, int]:
    """A branch with a group under it and a sibling branch; three sessions; a mover."""
    with database.write_sessions.begin() as db:
        root = OrgUnit(code="ROOT", name="党委")
        db.add(root)
        db.flush()
        branch = OrgUnit(code="B1", name="第一支部", parent_id=root.id)
        other = OrgUnit(code="B2", name="第二支部", parent_id=root.id)
        db.add_all([branch, other])
        db.flush()
        group = OrgUnit(code="B1G1", name="第一党小组", parent_id=branch.id)
        kind = ActivityType(code="meeting", name="支部党员大会", default_points=2)
        db.add_all([group, kind])
        db.flush()
        ids = {}
        for key, unit in (("stays", group.id), ("moved", other.id), ("walkin", branch.id)):
            member = Member(
                employee_no=key.upper(), name=key, org_unit_id=unit, category="正式党员"
            )
            db.add(member)
            db.flush()
            ids[key] = member.id
        sessions = []
        for k, start in enumerate((JULY, JULY + timedelta(days=7), JULY + timedelta(days=100))):
            meeting = AttendanceSession(
                title=f"会议{k}",
                activity_type_id=kind.id,
                starts_at=start,
                ends_at=start + timedelta(hours=2),
            )
            db.add(meeting)
            db.flush()
            sessions.append(meeting.id)
        ids["s0"], ids["s1"], ids["later"] = sessions
        # "moved" was in the group when s0 and s1 were held; has moved to B2 since.
        for session_id in sessions[:2]:
            for key in ("stays", "moved"):
                db.add(
                    SessionRosterEntry(
                        session_id=session_id, member_id=ids[key], org_unit_id=group.id
                    )
                )
        attended = [
            ("stays", "s0", "present"),
            ("moved", "s0", "late"),
            ("walkin", "s1", "present"),
        ]
        for key, session_key, status in attended:
            row = Attendance(
                member_id=ids[key],
                session_id=ids[session_key],
                status=status,
                checked_in_at=JULY,
                created_at=JULY,
            )
            db.add(row)
            db.flush()
            # Credited a month after the session: it still counts in the session's month.
            db.add(
                LedgerEntry(
                    member_id=ids[key],
                    amount=2,
                    source="attendance",
                    rule_version="v1",
                    attendance_id=row.id,
                    created_at=JULY + timedelta(days=40),
                )
            )
        db.add(
            LedgerEntry(
                member_id=ids["stays"],
                amount=5,
                source="adjustment",
                rule_version="v1",
                reason="补录",
                created_at=JULY + timedelta(days=2),
            )
        )
    return ids


def test_the_matrix_shows_who_was_expected_and_how_they_attended(database: Database) -> None:
    ids = seed(database)

    with database.engine.connect() as connection:
        matrix = attendance_matrix(connection, "B1", Period.quarter("2026Q3"), ZONE)

    assert [s.session_id for s in matrix.sessions] == [ids["s0"], ids["s1"]]
    assert {m.employee_no for m in matrix.members} == {"STAYS", "MOVED", "WALKIN"}
    assert matrix.status(ids["stays"], ids["s0"]) == "present"
    assert matrix.status(ids["stays"], ids["s1"]) == EXPECTED
    # Expected by the branch before moving away: still in its matrix.
    assert matrix.status(ids["moved"], ids["s0"]) == "late"
    assert matrix.status(ids["moved"], ids["s1"]) == EXPECTED
    # Not on the roster but a member of the branch: the walk-in shows.
    assert matrix.status(ids["walkin"], ids["s1"]) == "present"
    assert matrix.status(ids["walkin"], ids["s0"]) is None
    assert len(matrix.cells) == 5


def test_points_count_in_the_month_of_the_session_or_of_the_adjustment(
    database: Database,
) -> None:
    ids = seed(database)
    july = Period.month(2026, 7)
    start = datetime(july.start.year, july.start.month, 1, tzinfo=ZONE)
    end = datetime(july.end.year, july.end.month, 1, tzinfo=ZONE)
    members = [ids["stays"], ids["moved"], ids["walkin"]]

    with database.engine.connect() as connection:
        july_points = lookups.period_points(connection, members, start, end)
        # Past the broad threshold, the same figures from the unfiltered query.
        everyone = list(range(1, lookups.BROAD_MEMBER_SET + 2)) + members
        broad = lookups.period_points(connection, everyone, start, end)
        august = lookups.period_points(connection, members, end, datetime(2026, 9, 1, tzinfo=ZONE))

    assert july_points == {ids["stays"]: 2 + 5, ids["moved"]: 2, ids["walkin"]: 2}
    assert broad == july_points
    assert august == {}
