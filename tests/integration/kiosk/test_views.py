"""What a kiosk and a live screen show, computed from a small organisation on both backends."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from server.db.engine import Database
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    LedgerEntry,
    Member,
    MemberOrgHistory,
    OrgUnit,
    Room,
    SeriesSession,
    SessionAudience,
    SessionRoom,
    SessionRosterEntry,
    SessionSeries,
)
from server.kiosk.views import kiosk_view, live_figures, room_session

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 5, 20, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai
POINTS_B1 = [12, 100, 50, 0, 0, 0, 0, 0, 0, 0]  # member 0 is 张三明 (third of ten)


def _at(days: float) -> datetime:
    return NOW + timedelta(days=days)


class Org:
    """Ids of what _seed made."""

    def __init__(self) -> None:
        self.members: dict[str, int] = {}
        self.sessions: dict[str, int] = {}
        self.room = 0


def _session(
    db: Session, kind: int, title: str, starts: datetime, room: int, **extra: object
) -> AttendanceSession:
    meeting = AttendanceSession(
        title=title,
        activity_type_id=kind,
        starts_at=starts,
        ends_at=starts + timedelta(hours=2),
        **extra,
    )
    db.add(meeting)
    db.flush()
    db.add(SessionRoom(session_id=meeting.id, room_id=room))
    return meeting


def _seed(database: Database) -> Org:
    org = Org()
    with database.write_sessions.begin() as db:
        root = OrgUnit(code="PC", name="党委")
        db.add(root)
        db.flush()
        b1 = OrgUnit(code="B1", name="第一支部", parent_id=root.id)
        b2 = OrgUnit(code="B2", name="第二支部", parent_id=root.id)
        db.add_all([b1, b2])
        db.flush()
        g1 = OrgUnit(code="G1", name="第一党小组", parent_id=b1.id)
        room = Room(code="HALL", name="大礼堂")
        kind = ActivityType(code="study", name="学习", default_points=3)
        db.add_all([g1, room, kind])
        db.flush()
        org.room = room.id
        people = [("张三明", g1.id)] + [(f"甲{i}", b1.id) for i in range(1, 10)] + [("王五", b2.id)]
        for i, (name, unit) in enumerate(people):
            member = Member(
                employee_no=f"E{i:03d}", name=name, org_unit_id=unit, category="正式党员"
            )
            db.add(member)
            db.flush()
            org.members[name] = member.id
            db.add(
                MemberOrgHistory(
                    member_id=member.id,
                    org_unit_id=unit,
                    valid_from=datetime(2025, 1, 1, tzinfo=UTC),
                )
            )
            if i < len(POINTS_B1) and POINTS_B1[i]:
                db.add(_adjust(member.id, POINTS_B1[i] - (7 + 11 if i == 0 else 0), _at(-10)))
        me = org.members["张三明"]
        db.add_all(
            [
                _adjust(me, 7, datetime(2025, 4, 10, tzinfo=UTC)),  # this quarter
                _adjust(me, 11, datetime(2025, 2, 10, tzinfo=UTC)),  # this year
                _adjust(me, 13, datetime(2024, 12, 1, tzinfo=UTC)),  # last year
            ]
        )
        # A study series: missed on the 13th, held again on the 27th.
        series = SessionSeries(title="党章学习", activity_type_id=kind.id)
        db.add(series)
        db.flush()
        missed = _session(db, kind.id, "党章学习（一）", _at(-7), room.id)
        again = _session(db, kind.id, "党章学习（二）", _at(7), room.id)
        attended = _session(db, kind.id, "主题党日", _at(-14), room.id)
        for meeting in (missed, again, attended):
            db.add(SessionAudience(session_id=meeting.id, org_unit_id=b1.id))
        db.add_all(
            [
                SeriesSession(session_id=missed.id, series_id=series.id),
                SeriesSession(session_id=again.id, series_id=series.id),
                SessionRosterEntry(session_id=missed.id, member_id=me, org_unit_id=g1.id),
                SessionRosterEntry(session_id=attended.id, member_id=me, org_unit_id=g1.id),
                Attendance(member_id=me, session_id=missed.id, status="absent"),
                Attendance(
                    member_id=me, session_id=attended.id, status="present", checked_in_at=_at(-14)
                ),
            ]
        )
        # Not the member's: open to all, another branch's, cancelled.
        _session(db, kind.id, "公开讲座", _at(2), room.id)
        other = _session(db, kind.id, "二支部会议", _at(3), room.id)
        db.add(SessionAudience(session_id=other.id, org_unit_id=b2.id))
        dropped = _session(db, kind.id, "取消的会", _at(4), room.id, cancelled_at=_at(-1))
        db.add(SessionAudience(session_id=dropped.id, org_unit_id=b1.id))
        # The session in progress now, for the first branch; 王五 walks in.
        live = _session(db, kind.id, "支部党员大会", _at(-1 / 24), room.id, late_grace_minutes=5)
        db.add(SessionAudience(session_id=live.id, org_unit_id=b1.id))
        db.add_all(
            [
                Attendance(
                    member_id=me, session_id=live.id, status="present", checked_in_at=_at(-0.05)
                ),
                Attendance(
                    member_id=org.members["甲1"],
                    session_id=live.id,
                    status="late",
                    checked_in_at=_at(-0.01),
                ),
                Attendance(
                    member_id=org.members["王五"],
                    session_id=live.id,
                    status="present",
                    checked_in_at=_at(-0.03),
                ),
            ]
        )
        org.sessions = {"missed": missed.id, "again": again.id, "live": live.id}
    return org


def _adjust(member_id: int, amount: int, at: datetime) -> LedgerEntry:
    return LedgerEntry(
        member_id=member_id,
        amount=amount,
        source="adjustment",
        rule_version="test",
        reason="测试",
        created_at=at,
    )


def test_the_kiosk_view_of_one_member(database: Database) -> None:
    org = _seed(database)
    with database.sessions() as db:
        view = kiosk_view(
            db.connection(), org.members["张三明"], now=NOW, zone=ZONE, mask="mask_middle"
        )
    assert view.name == "张*明"
    assert view.branch == "第一支部"
    assert (view.points_month, view.points_quarter, view.points_year) == (-6, 1, 12)
    assert (view.rank_band, view.branch_members) == ("前50%", 10)
    assert [(a.title, a.status_label) for a in view.recent] == [
        ("支部党员大会", "出席"),
        ("党章学习（一）", "缺席"),
        ("主题党日", "出席"),
    ]
    assert [u.title for u in view.upcoming] == ["党章学习（二）"]
    assert view.upcoming[0].rooms == ("大礼堂",)
    assert [(m.title, m.next_at) for m in view.missing] == [("党章学习", _at(7))]


def test_the_live_figures_of_a_session(database: Database) -> None:
    org = _seed(database)
    with database.sessions() as db:
        figures = live_figures(
            db.connection(), org.sessions["live"], zone=ZONE, mask="surname_only"
        )
        current = room_session(db.connection(), org.room, NOW, ZONE)
    assert (figures.expected, figures.arrived, figures.late) == (10, 3, 1)
    assert figures.rate == pytest.approx(0.2)
    by_branch = {b.name: (b.expected, b.arrived, b.walk_ins) for b in figures.branches}
    assert by_branch == {"第一支部": (10, 2, 0), "第二支部": (0, 0, 1)}
    assert [(a.name, a.branch, a.late) for a in figures.latest] == [
        ("甲*", "第一支部", True),
        ("王*", "第二支部", False),
        ("张**", "第一支部", False),
    ]
    assert current == org.sessions["live"]
