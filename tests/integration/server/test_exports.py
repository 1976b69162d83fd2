"""Exporting attendance, points and rankings from SQLite and PostgreSQL; each export audited."""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from server.db.engine import Database
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    AuditEntry,
    LedgerEntry,
    Member,
    OrgUnit,
    SessionRosterEntry,
)
from server.errors import NotFound
from server.services import exports
from server.services.exports import ExportFormat, ExportKind, ExportRequest
from server.services.unit_of_work import UnitOfWork

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 4, 2, 2, 0, tzinfo=UTC)
# 2025-03-07 14:30 in Shanghai.
STARTS = datetime(2025, 3, 7, 6, 30, tzinfo=UTC)
MARCH = (date(2025, 3, 1), date(2025, 3, 31))


def _seed(database: Database) -> dict[str, int]:
    """Two branches under one committee; one session; E1 present (+3), E2 late (+2), E3 absent."""
    with database.write_sessions.begin() as db:
        top = OrgUnit(code="C", name="机关党委")
        db.add(top)
        db.flush()
        b1 = OrgUnit(code="B1", name="第一党支部", parent_id=top.id)
        b2 = OrgUnit(code="B2", name="第二党支部", parent_id=top.id)
        kind = ActivityType(code="meeting", name="支部党员大会", default_points=3)
        db.add_all([b1, b2, kind])
        db.flush()
        people = [
            Member(employee_no="E1", name="张三", org_unit_id=b1.id, category="正式党员"),
            Member(
                employee_no="E2", name="=HYPERLINK(李四)", org_unit_id=b2.id, category="正式党员"
            ),
            Member(employee_no="E3", name="王五", org_unit_id=b1.id, category="正式党员"),
        ]
        meeting = AttendanceSession(
            title="三月主题党日",
            activity_type_id=kind.id,
            starts_at=STARTS,
            ends_at=STARTS + timedelta(hours=2),
        )
        db.add_all([*people, meeting])
        db.flush()
        marks = [
            (people[0], b1, "present", STARTS - timedelta(minutes=5), 3),
            (people[1], b2, "late", STARTS + timedelta(minutes=10), 2),
            (people[2], b1, "absent", None, 0),
        ]
        for person, unit, status, checked_in, points in marks:
            db.add(
                SessionRosterEntry(session_id=meeting.id, member_id=person.id, org_unit_id=unit.id)
            )
            attendance = Attendance(
                member_id=person.id,
                session_id=meeting.id,
                status=status,
                checked_in_at=checked_in,
            )
            db.add(attendance)
            db.flush()
            if points:
                db.add(
                    LedgerEntry(
                        member_id=person.id,
                        amount=points,
                        source="attendance",
                        rule_version="v1",
                        attendance_id=attendance.id,
                        created_at=checked_in,
                    )
                )
        return {"B1": b1.id, "B2": b2.id, "C": top.id}


def _export(
    database: Database,
    kind: ExportKind,
    format_: ExportFormat = ExportFormat.XLSX,
    *,
    unit: str | None = None,
    scope: frozenset[int] | None = None,
) -> exports.ExportFile:
    return exports.export(
        UnitOfWork(database.write_sessions),
        ExportRequest(kind, *MARCH, unit, format_),
        actor="auditor1",
        scope=scope,
        now=NOW,
        zone=ZONE,
    )


def _xlsx_rows(content: bytes) -> list[list[object]]:
    sheet = load_workbook(io.BytesIO(content)).worksheets[0]
    return [list(r) for r in sheet.iter_rows(values_only=True)]


def test_attendance_exports_as_xlsx_and_is_audited(database: Database) -> None:
    _seed(database)

    made = _export(database, ExportKind.ATTENDANCE)

    assert made.filename == "rollcall-attendance-20250301-20250331.xlsx"
    assert made.rows == 3
    rows = _xlsx_rows(made.content)
    assert rows[0][:8] == [
        "开始时间",
        "会议",
        "活动类型",
        "工号",
        "姓名",
        "组织编码",
        "组织",
        "状态",
    ]
    assert [r[3:9] for r in rows[1:]] == [
        ["E1", "张三", "B1", "第一党支部", "出席", "2025-03-07 14:25:00"],
        ["E2", "=HYPERLINK(李四)", "B2", "第二党支部", "迟到", "2025-03-07 14:40:00"],
        ["E3", "王五", "B1", "第一党支部", "缺席", None],
    ]
    assert rows[1][0] == "2025-03-07 14:30:00"
    with database.sessions() as db:
        audit = db.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.details)).one()
    assert audit.actor == "auditor1"
    assert audit.action == "export.attendance"
    assert audit.details == {
        "kind": "attendance",
        "format": "xlsx",
        "from": "2025-03-01",
        "to": "2025-03-31",
        "org_unit": None,
        "rows": 3,
    }


def test_points_export_as_csv_lists_the_ledger(database: Database) -> None:
    _seed(database)

    made = _export(database, ExportKind.POINTS, ExportFormat.CSV)

    text = made.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:6] == ["编号", "记账时间", "工号", "姓名", "组织编码", "积分"]
    assert [(r[2], r[3], r[5], r[6], r[8]) for r in rows[1:]] == [
        ("E1", "张三", "3", "签到", "三月主题党日"),
        ("E2", "'=HYPERLINK(李四)", "2", "签到", "三月主题党日"),
    ]


def test_rankings_export_matches_the_rankings_service(database: Database) -> None:
    _seed(database)

    made = _export(database, ExportKind.RANKINGS)

    assert _xlsx_rows(made.content) == [
        ["组织编码", "组织", "名次", "工号", "姓名", "积分"],
        ["C", "机关党委", 1, "E1", "张三", 3],
        ["C", "机关党委", 2, "E2", "=HYPERLINK(李四)", 2],
        ["C", "机关党委", 3, "E3", "王五", 0],
    ]


def test_an_org_admin_exports_only_their_subtree(database: Database) -> None:
    ids = _seed(database)
    scope = frozenset({ids["B1"]})

    everything = _export(database, ExportKind.ATTENDANCE, scope=scope)
    ranking = _export(database, ExportKind.RANKINGS, scope=scope)

    assert [r[3] for r in _xlsx_rows(everything.content)[1:]] == ["E1", "E3"]
    assert [r[0] for r in _xlsx_rows(ranking.content)[1:]] == ["B1", "B1"]
    with pytest.raises(NotFound):
        _export(database, ExportKind.POINTS, unit="B2", scope=scope)
    with pytest.raises(NotFound):
        _export(database, ExportKind.POINTS, unit="NOPE")
    with database.sessions() as db:
        actions = db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["export.attendance", "export.rankings"]


def test_benchmarks_export_compares_the_branches(database: Database) -> None:
    _seed(database)

    made = _export(database, ExportKind.BENCHMARKS, ExportFormat.CSV)

    rows = list(csv.reader(io.StringIO(made.content.decode("utf-8-sig"))))
    assert rows[0][:6] == ["上级编码", "上级组织", "支部编码", "支部", "人数", "应到出勤率"]
    by_branch = {r[2]: r for r in rows[1:]}
    assert set(by_branch) == {"B1", "B2"}
    # B1: E1 present, E3 absent; B2: E2 late, which counts as attended.
    assert (by_branch["B1"][4], by_branch["B1"][5]) == ("2", "0.5")
    assert (by_branch["B2"][4], by_branch["B2"][5]) == ("1", "1.0")
    assert {r[0] for r in rows[1:]} == {"C"}
