"""The console's data pages over HTTP: each renders, its forms change what they say, all scoped.

An org admin of branch B1 must get 404 (or 403 for what only a super admin
does) for every page and object of branch B2; an auditor changes nothing.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from protocol import TapMode
from server.api.app import create_app
from server.db.engine import Database
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    AuditEntry,
    LedgerEntry,
    Member,
    MemberOrgHistory,
    OrgUnit,
    PointsRuleVersion,
    Reader,
    Room,
    SeriesSession,
    SessionAudience,
    SessionRoom,
    SessionRosterEntry,
)
from server.domain.clock import FixedClock
from server.runtime import ServerRuntime
from server.services.auth import Role
from server.settings import load_settings
from tests.support.console import make_user, sign_in
from tests.support.served import ApiClient, served

pytestmark = pytest.mark.integration

NOW = datetime(2025, 4, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
MARCH_SESSION = datetime(2025, 3, 7, 6, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Site:
    """A served console with two branches and a closed March session in each."""

    client: ApiClient
    database: Database
    base_url: str
    ids: dict[str, int]
    clients: list[ApiClient]

    def client_for(self, username: str) -> tuple[ApiClient, str]:
        """A new client signed in as `username`, and its CSRF token (closed after the test)."""
        other = ApiClient(base_url=self.base_url, timeout=10)
        self.clients.append(other)
        return other, sign_in(other, username)


def _seed(database: Database) -> dict[str, int]:
    with database.write_sessions.begin() as db:
        top = OrgUnit(code="C", name="机关党委")
        db.add(top)
        db.flush()
        b1 = OrgUnit(code="B1", name="第一党支部", parent_id=top.id)
        b2 = OrgUnit(code="B2", name="第二党支部", parent_id=top.id)
        kind = ActivityType(code="meeting", name="支部党员大会", default_points=3)
        room = Room(code="R1", name="党员活动室")
        db.add_all([b1, b2, kind, room])
        db.flush()
        db.add(
            Reader(
                reader_id="hall-1",
                room_id=room.id,
                mode=TapMode.CHECKIN.value,
                state="online",
                last_status_at=NOW - timedelta(seconds=20),
                last_seen_at=NOW - timedelta(seconds=20),
                outbox_depth=7,
                skew_seconds=-1.5,
            )
        )
        ids = {"C": top.id, "B1": b1.id, "B2": b2.id}
        for code, unit, points in (("B1", b1, 3), ("B2", b2, 2)):
            person = Member(
                employee_no=f"{code}-1",
                name=f"{code}党员",
                org_unit_id=unit.id,
                category="正式党员",
            )
            meeting = AttendanceSession(
                title=f"{code}三月党员大会",
                activity_type_id=kind.id,
                starts_at=MARCH_SESSION,
                ends_at=MARCH_SESSION + timedelta(hours=2),
                closed_at=MARCH_SESSION + timedelta(hours=3),
                roster_frozen_at=MARCH_SESSION,
            )
            later = AttendanceSession(
                title=f"{code}五月党课",
                activity_type_id=kind.id,
                starts_at=NOW + timedelta(days=30),
                ends_at=NOW + timedelta(days=30, hours=2),
            )
            db.add_all([person, meeting, later])
            db.flush()
            db.add(
                MemberOrgHistory(
                    member_id=person.id, org_unit_id=unit.id, valid_from=NOW - timedelta(days=365)
                )
            )
            for session in (meeting, later):
                db.add(SessionAudience(session_id=session.id, org_unit_id=unit.id))
                db.add(SessionRoom(session_id=session.id, room_id=room.id))
            db.add(
                SessionRosterEntry(session_id=meeting.id, member_id=person.id, org_unit_id=unit.id)
            )
            attendance = Attendance(
                member_id=person.id,
                session_id=meeting.id,
                status="present",
                checked_in_at=MARCH_SESSION,
            )
            db.add(attendance)
            db.flush()
            db.add(
                LedgerEntry(
                    member_id=person.id,
                    amount=points,
                    source="attendance",
                    rule_version="fixed-per-activity/1",
                    attendance_id=attendance.id,
                    created_at=MARCH_SESSION,
                )
            )
            ids[f"session_{code}"] = meeting.id
            ids[f"later_{code}"] = later.id
        return ids


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    settings = load_settings(
        database_url=database_url,
        data_dir=tmp_path,
        mqtt_url="mqtt://127.0.0.1:1",
        cookie_secure=False,
        scheduler_enabled=False,
    )
    with ServerRuntime(settings, clock=FixedClock(NOW), ingest=False) as runtime:
        ids = _seed(runtime.database)
        make_user(runtime.database, "admin", Role.SUPER_ADMIN)
        make_user(runtime.database, "b1admin", Role.ORG_ADMIN, org_unit_id=ids["B1"])
        make_user(runtime.database, "auditor", Role.AUDITOR)
        with served(create_app(settings, runtime=runtime)) as client:
            site = Site(client, runtime.database, str(client.base_url), ids, [])
            try:
                yield site
            finally:
                for other in site.clients:
                    other.close()


def _count(database: Database, model: type) -> int:
    with database.sessions() as db:
        return db.scalar(select(func.count()).select_from(model)) or 0


def test_every_data_page_renders_for_a_super_admin(site: Site) -> None:
    client, _ = site.client_for("admin")
    for path, text in (
        ("/admin/imports", "预检"),
        ("/admin/exports", "导出"),
        ("/admin/rankings?unit=C&month=2025-03", "B1党员"),
        ("/admin/org", "第二党支部"),
        ("/admin/rooms", "党员活动室"),
        ("/admin/readers", "hall-1"),
        ("/admin/sessions", "B2五月党课"),
        ("/admin/sessions/new", "每月第一个星期五"),
        ("/admin/rules", "fixed-per-activity/1"),
    ):
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert text in page.text, path

    readers = client.get("/admin/readers").text
    assert re.search(r'data-test="outbox">7', readers)
    assert "-1.5 s" in readers
    assert "在线" in readers
    ranking = client.get("/admin/rankings?unit=C&month=2025-03").text
    assert "/static/vendor/echarts.min.js" in ranking
    stars = ranking.split('data-test="branch-stars"')[1].split("</table>")[0]
    assert "B1党员（B1-1）" in stars
    assert "B2党员（B2-1）" in stars
    assert client.get("/static/vendor/echarts.min.js").status_code == 200
    data = client.get("/admin/rankings/data.json?unit=C&month=2025-03").json()
    assert data["trend"][-1] == {
        "month": "2025-03",
        "attendance_rate": 1.0,
        "points_per_member": 2.5,
    }
    assert len(data["trend"]) == 6
    assert [(b["code"], b["attendance_rate"]) for b in data["branches"]] == [
        ("B1", 1.0),
        ("B2", 1.0),
    ]


def test_the_forms_plan_sessions_add_units_rooms_and_rule_versions(site: Site) -> None:
    client, token = site.client_for("admin")

    planned = client.post(
        "/admin/sessions/new",
        data={
            "csrf_token": token,
            "title": "主题党日",
            "activity_type": "meeting",
            "day": "2025-05-01",
            "start_time": "14:30",
            "end_time": "16:30",
            "rooms": ["R1"],
            "units": ["B1"],
            "recurrence": "monthly_first_fri",
            "occurrences": "3",
            "series_title": "二季度主题党日",
            "allow_walk_in": "true",
        },
        follow_redirects=False,
    )
    unit = client.post(
        "/admin/org",
        data={"csrf_token": token, "code": "G11", "name": "第一党小组", "parent_code": "B1"},
        follow_redirects=False,
    )
    room = client.post(
        "/admin/rooms",
        data={"csrf_token": token, "code": "R2", "name": "二楼会议室"},
        follow_redirects=False,
    )
    reader = client.post(
        "/admin/readers/hall-1",
        data={"csrf_token": token, "mode": "kiosk", "room_code": "R2", "name": "大厅查询机"},
        follow_redirects=False,
    )
    version = client.post(
        "/admin/rules",
        data={
            "csrf_token": token,
            "version": "2025-v2",
            "effective_from": "2025-03-01",
            "body": '{"activities": {"meeting": {"category": "general", "present": 5, "late": 4}}}',
        },
        follow_redirects=False,
    )
    bad_version = client.post(
        "/admin/rules",
        data={"csrf_token": token, "version": "x", "effective_from": "2025-04-01", "body": "{"},
    )
    preview = client.post(
        "/admin/rules/preview",
        data={"csrf_token": token, "start": "2025-03-01", "end": "2025-04-01"},
    )

    renamed = client.post(
        "/admin/rooms/R1", data={"csrf_token": token, "name": "大会议室"}, follow_redirects=False
    )
    published = client.post(
        "/admin/rankings/publish",
        data={"csrf_token": token, "unit": "C", "quarter": "2025Q1"},
        follow_redirects=False,
    )
    again = client.post(
        "/admin/rankings/publish", data={"csrf_token": token, "unit": "C", "quarter": "2025Q1"}
    )
    frozen = client.get("/admin/rankings/publications/C/2025Q1")

    assert [r.status_code for r in (planned, unit, room, reader, version, renamed)] == [303] * 6
    assert published.headers["location"] == "/admin/rankings/publications/C/2025Q1"
    assert again.status_code == 409
    assert frozen.status_code == 200
    assert "B1党员" in frozen.text
    assert 'data-test="rule-error">JSON' in bad_version.text
    assert preview.status_code == 200
    assert "+2" in preview.text  # B1's member: 3 → 5
    assert _count(site.database, LedgerEntry) == 2  # a preview writes nothing
    with site.database.sessions() as db:
        starts = db.scalars(
            select(AttendanceSession.starts_at)
            .where(AttendanceSession.title == "主题党日")
            .order_by(AttendanceSession.starts_at)
        ).all()
        # First Fridays of May, June and July 2025 at 14:30 in Shanghai.
        assert [s.astimezone(UTC) for s in starts] == [
            datetime(2025, 5, 2, 6, 30, tzinfo=UTC),
            datetime(2025, 6, 6, 6, 30, tzinfo=UTC),
            datetime(2025, 7, 4, 6, 30, tzinfo=UTC),
        ]
        assert db.scalar(select(func.count()).select_from(SeriesSession)) == 3
        assert db.scalar(select(Reader.mode).where(Reader.reader_id == "hall-1")) == "kiosk"
        assert db.scalar(select(OrgUnit.name).where(OrgUnit.code == "G11")) == "第一党小组"
        assert db.scalar(select(func.count()).select_from(PointsRuleVersion)) == 1
        actions = set(db.scalars(select(AuditEntry.action)).all())
    assert {
        "org_unit.create",
        "room.create",
        "room.rename",
        "reader.change",
        "rules.version.create",
        "rankings.publish",
    } <= actions

    applied = client.post(
        "/admin/rules/rescore",
        data={"csrf_token": token, "start": "2025-03-01", "end": "2025-04-01"},
        follow_redirects=False,
    )
    assert applied.status_code == 303
    with site.database.sessions() as db:
        assert db.scalar(select(func.sum(LedgerEntry.amount))) == 5 + 5  # both present
        assert "points.rescore" in db.scalars(select(AuditEntry.action)).all()


def test_an_org_admin_of_b1_reaches_nothing_of_b2(site: Site) -> None:
    client, token = site.client_for("b1admin")
    later_b2, later_b1 = site.ids["later_B2"], site.ids["later_B1"]

    for path in (
        "/admin/rankings?unit=B2",
        "/admin/rankings?unit=C",
        "/admin/rankings/data.json?unit=B2",
        f"/admin/sessions/{later_b2}/edit",
        "/admin/sessions?unit=B2",
        "/admin/rankings/publications/C/2025Q1",
        "/admin/exports/download?kind=attendance&first_day=2025-03-01&last_day=2025-03-31"
        "&org_unit=B2",
    ):
        assert client.get(path).status_code == 404, path
    for path, data in (
        ("/admin/org/B2", {"name": "改名"}),
        (f"/admin/sessions/{later_b2}/cancel", {"reason": "x"}),
        ("/admin/sessions/series", {"title": "x", "session_ids": [later_b1, later_b2]}),
        ("/admin/org", {"code": "X", "name": "x", "parent_code": "B2"}),
        ("/admin/rankings/publish", {"unit": "B2", "quarter": "2025Q1"}),
    ):
        response = client.post(path, data={"csrf_token": token, **data}, follow_redirects=False)
        assert response.status_code == 404, (path, response.text[:300])
    for path, data in (
        ("/admin/rooms", {"code": "R9", "name": "x"}),
        ("/admin/readers/hall-1", {"mode": "kiosk"}),
        ("/admin/rules/preview", {"start": "2025-03-01", "end": "2025-04-01"}),
        ("/admin/org", {"code": "TOP", "name": "x", "parent_code": ""}),
    ):
        response = client.post(path, data={"csrf_token": token, **data}, follow_redirects=False)
        assert response.status_code == 403, path
    # The console's guard reads a {code} in any path as an org unit's: refused either way.
    renamed = client.post("/admin/rooms/R1", data={"csrf_token": token, "name": "x"})
    assert renamed.status_code in (403, 404)

    own = client.get("/admin/rankings").text
    org = client.get("/admin/org").text
    sessions = client.get("/admin/sessions").text
    export = client.get(
        "/admin/exports/download",
        params={"kind": "attendance", "first_day": "2025-03-01", "last_day": "2025-03-31"},
    )
    assert "B1党员" in own
    assert "B2党员" not in own
    assert "第二党支部" not in org
    assert "B1五月党课" in sessions
    assert "B2五月党课" not in sessions
    assert export.status_code == 200
    assert b"B2" not in export.content
    assert client.get(f"/admin/sessions/{later_b1}/edit").status_code == 200
    assert _count(site.database, Room) == 1
    with site.database.sessions() as db:
        assert db.scalar(select(OrgUnit.name).where(OrgUnit.code == "B2")) == "第二党支部"
        assert (
            db.scalar(
                select(AttendanceSession.cancelled_at).where(AttendanceSession.id == later_b2)
            )
            is None
        )


def test_an_auditor_reads_and_exports_but_changes_nothing(site: Site) -> None:
    client, token = site.client_for("auditor")

    assert client.get("/admin/rankings?unit=C&month=2025-03").status_code == 200
    upload = client.post(
        "/admin/imports",
        data={"csrf_token": token, "kind": "members"},
        files={"file": ("m.csv", "工号,姓名,组织编码,类别\nE9,新人,B1,正式党员\n".encode())},
    )
    unit = client.post(
        "/admin/org", data={"csrf_token": token, "code": "X", "name": "x", "parent_code": "C"}
    )
    export = client.get(
        "/admin/exports/download",
        params={
            "kind": "points",
            "first_day": "2025-03-01",
            "last_day": "2025-03-31",
            "file_format": "csv",
        },
    )
    bare = client.get("/admin/exports/download", follow_redirects=False)

    assert upload.status_code == 403
    assert unit.status_code == 403
    assert bare.headers["location"] == "/admin/exports"
    assert export.status_code == 200
    assert export.headers["content-disposition"].endswith("rollcall-points-20250301-20250331.csv")
    assert "B2党员" in export.content.decode("utf-8-sig")
    assert _count(site.database, Member) == 2
    with site.database.sessions() as db:
        actor = db.scalar(select(AuditEntry.actor).where(AuditEntry.action == "export.points"))
    assert actor == "auditor"
