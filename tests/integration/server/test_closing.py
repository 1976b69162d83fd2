"""Closing sessions on both databases: absences, late-delivered taps, leave, re-scoring."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from protocol import AckResult
from server.db.engine import Database
from server.db.models import (
    Attendance,
    AttendanceSession,
    LedgerEntry,
    Reader,
    SessionAudience,
    table_of,
)
from server.domain.points import ActivityRule, RuleSet, RuleVersion
from server.errors import Conflict, NotReady
from server.sample import MinimalSeed, TapBuilder
from server.services import sessions, settlement
from server.services.rules import add_rule_version
from server.services.taps import record_taps
from server.services.unit_of_work import UnitOfWork

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Shanghai")
AFTER_GRACE = NOW + timedelta(hours=4)


@pytest.fixture
def uow(database: Database) -> UnitOfWork:
    return UnitOfWork(database.write_sessions)


@pytest.fixture
def expected(database: Database, seeded: MinimalSeed) -> MinimalSeed:
    """The seeded session expects the seeded member's org unit."""
    with database.write_sessions.begin() as db:
        db.add(SessionAudience(session_id=seeded.session_id, org_unit_id=seeded.org_unit_id))
    return seeded


def _rules(database: Database, **values: int) -> None:
    rules = RuleSet(
        RuleVersion("strict/1"),
        date(2025, 1, 1),
        {"test_study": ActivityRule("study", **values)},  # type: ignore[arg-type]
    )
    with database.write_sessions.begin() as db:
        add_rule_version(db.connection(), rules)


def _status(database: Database, seed: MinimalSeed) -> str | None:
    with database.sessions() as db:
        return db.scalar(
            select(Attendance.status).where(
                Attendance.session_id == seed.session_id, Attendance.member_id == seed.member_id
            )
        )


def _balance(database: Database, seed: MinimalSeed) -> int:
    with database.sessions() as db:
        return int(
            db.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.member_id == seed.member_id
                )
            )
            or 0
        )


def test_absence_is_decided_at_close_and_penalised_by_the_rules(
    database: Database, expected: MinimalSeed, uow: UnitOfWork
) -> None:
    _rules(database, present=3, late=1, absent=-2)

    closed = sessions.close(uow, expected.session_id, AFTER_GRACE, ZONE)

    assert closed.statuses == {"absent": 1}
    assert _status(database, expected) == "absent"
    assert _balance(database, expected) == -2
    with pytest.raises(Conflict, match="closed"):
        sessions.close(uow, expected.session_id, AFTER_GRACE, ZONE)


def test_close_waits_for_readers_until_the_grace_period(
    database: Database, expected: MinimalSeed, uow: UnitOfWork
) -> None:
    with database.write_sessions.begin() as db:
        db.execute(
            update(table_of(Reader)).values(
                last_status_at=NOW - timedelta(minutes=5), outbox_depth=4
            )
        )
    with pytest.raises(NotReady, match=expected.reader_id):
        sessions.close(uow, expected.session_id, NOW + timedelta(hours=1, minutes=30), ZONE)
    with database.write_sessions.begin() as db:
        db.execute(
            update(table_of(Reader)).values(
                last_status_at=NOW + timedelta(hours=1, minutes=40), outbox_depth=0
            )
        )

    closed = sessions.close(uow, expected.session_id, NOW + timedelta(hours=1, minutes=45), ZONE)

    assert closed.statuses == {"absent": 1}


def test_taps_delivered_an_hour_late_resolve_as_if_on_time(
    database: Database, expected: MinimalSeed, taps: TapBuilder, uow: UnitOfWork
) -> None:
    """A second reader was offline: its on-time tap arrives after the member's late one."""
    _rules(database, present=3, late=1)
    late = taps.received(at=NOW + timedelta(minutes=20))
    on_time = taps.received(at=NOW - timedelta(minutes=2), received_at=NOW + timedelta(minutes=62))
    first = record_taps(uow, [late])
    second = record_taps(uow, [on_time])
    assert first[0].result is AckResult.ACCEPTED
    assert second[0].result is AckResult.DUPLICATE

    sessions.close(uow, expected.session_id, AFTER_GRACE, ZONE)

    assert _status(database, expected) == "present"
    assert _balance(database, expected) == 3
    with database.sessions() as db:
        sources = db.scalars(select(LedgerEntry.source).order_by(LedgerEntry.id)).all()
    assert sources == ["attendance", "reversal", "attendance"]  # the tap-time credit stays


def test_approved_leave_excuses_and_cancelled_sessions_are_not_closed(
    database: Database, expected: MinimalSeed, uow: UnitOfWork
) -> None:
    from server.services import leave

    request = leave.request(uow, expected.session_id, expected.employee_no, "出差")
    leave.decide(uow, request, approve=True, approver="书记", now=NOW)

    closed = sessions.close(uow, expected.session_id, AFTER_GRACE, ZONE)

    assert closed.statuses == {"excused": 1}
    other = sessions.plan_sessions(
        uow,
        sessions.SessionPlan(
            "补课", "test_study", NOW + timedelta(days=1), NOW + timedelta(days=1, hours=1)
        ),
        ZONE,
    )[0]
    sessions.cancel(uow, other, "room unavailable", NOW)
    with pytest.raises(Conflict, match="cancelled"):
        sessions.close(uow, other, AFTER_GRACE + timedelta(days=1), ZONE)


def test_recurring_plan_makes_one_session_per_occurrence(
    database: Database, seeded: MinimalSeed, uow: UnitOfWork
) -> None:
    first_friday = datetime(2025, 3, 7, 14, 30, tzinfo=ZONE)
    created = sessions.plan_sessions(
        uow,
        sessions.SessionPlan(
            "主题党日",
            "test_study",
            first_friday,
            first_friday + timedelta(hours=2),
            room_codes=["T101"],
            recurrence_rule="FREQ=MONTHLY;BYDAY=1FR;COUNT=3",
            series_title=None,
        ),
        ZONE,
    )

    with database.sessions() as db:
        starts = db.scalars(
            select(AttendanceSession.starts_at)
            .where(AttendanceSession.id.in_(created))
            .order_by(AttendanceSession.starts_at)
        ).all()
    assert [s.astimezone(ZONE).date() for s in starts] == [
        date(2025, 3, 7),
        date(2025, 4, 4),
        date(2025, 5, 2),
    ]


def test_rescoring_previews_then_applies(
    database: Database, expected: MinimalSeed, taps: TapBuilder, uow: UnitOfWork
) -> None:
    record_taps(uow, [taps.received(at=NOW)])
    sessions.close(uow, expected.session_id, AFTER_GRACE, ZONE)
    assert _balance(database, expected) == expected.points
    _rules(database, present=5, late=1)

    with database.write_sessions.begin() as db:
        preview = settlement.settlement(db.connection(), [expected.session_id], ZONE).preview()
    assert [(c.old_amount, c.new_amount) for c in preview] == [(expected.points, 5)]
    assert _balance(database, expected) == expected.points  # a preview changes nothing

    with database.write_sessions.begin() as db:
        connection = db.connection()
        found = settlement.settlement(connection, [expected.session_id], ZONE)
        settlement.apply(connection, found, "rules strict/1", AFTER_GRACE)
    assert _balance(database, expected) == 5


def test_shift_worker_fulfils_a_series_at_the_make_up_session(
    database: Database, expected: MinimalSeed, taps: TapBuilder, uow: UnitOfWork
) -> None:
    """Absent from the central session, present at the make-up: credited once, no penalty."""
    _rules(database, present=3, late=1, absent=-2)
    make_up_start = NOW + timedelta(days=2)
    (make_up,) = sessions.plan_sessions(
        uow,
        sessions.SessionPlan(
            "党课 补课",
            "test_study",
            make_up_start,
            make_up_start + timedelta(hours=1),
            room_codes=["T101"],
            org_unit_codes=["T01"],
        ),
        ZONE,
    )
    sessions.group_series(uow, "三月党课", [expected.session_id, make_up])

    sessions.close(uow, expected.session_id, AFTER_GRACE, ZONE)
    assert _status(database, expected) == "absent"
    assert _balance(database, expected) == 0  # the series is still open: no penalty yet

    record_taps(uow, [taps.received(at=make_up_start)])
    sessions.close(uow, make_up, make_up_start + timedelta(hours=4), ZONE)

    assert _balance(database, expected) == 3
    with database.sessions() as db:
        credited = db.scalars(
            select(Attendance.session_id)
            .join(LedgerEntry, LedgerEntry.attendance_id == Attendance.id)
            .where(LedgerEntry.source == "attendance")
        ).all()
    assert set(credited) == {make_up}


def test_a_member_moved_mid_month_is_expected_by_the_old_unit_before_the_move(
    database: Database, expected: MinimalSeed, uow: UnitOfWork
) -> None:
    from server.db.models import OrgUnit
    from server.services.members import move_member

    with database.write_sessions.begin() as db:
        db.add(OrgUnit(code="T02", name="第二支部"))
    later_start = NOW + timedelta(days=10)
    (later,) = sessions.plan_sessions(
        uow,
        sessions.SessionPlan(
            "组织生活会",
            "test_study",
            later_start,
            later_start + timedelta(hours=1),
            org_unit_codes=["T01"],
        ),
        ZONE,
    )

    move_member(uow, expected.employee_no, "T02", NOW + timedelta(days=5))

    assert sessions.freeze(uow, expected.session_id, ZONE) == [expected.member_id]
    assert sessions.freeze(uow, later, ZONE) == []
