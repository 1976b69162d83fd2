"""Importing org units, members and cards into SQLite and PostgreSQL: dry run, all or nothing."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from server.db.engine import Database
from server.db.lookups import org_tree
from server.db.models import AuditEntry, Card, Member, MemberOrgHistory, OrgUnit
from server.services import imports
from server.services.imports import ImportKind, ImportReport, read_rows
from server.services.unit_of_work import UnitOfWork

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Shanghai")

UNITS = "编码,名称,上级编码\nC,机关党委,\nB1,第一党支部,C\nB2,第二党支部,C\nG11,第一党小组,B1\n"
BAD_ROSTER = (
    "工号,姓名,组织编码,类别,起始日期,卡号\n"
    "E1,张三,B1,正式党员,2024-01-01,04A1B2C3\n"
    "E2,,B1,正式党员,,\n"  # no name
    "E3,王五,B9,正式党员,,\n"  # no such unit
    "E1,张三又,B1,正式党员,,\n"  # repeats line 2
    "E4,赵六,G11,党外人士,,\n"  # no such category
    "E5,钱七,B2,预备党员,2024-13-01,\n"  # no such day
    "E6,孙八,B2,正式党员,,04A1B2C3\n"  # card of line 2 again
)
GOOD_ROSTER = (
    "工号,姓名,组织编码,类别,起始日期,卡号\n"
    "E1,张三,B1,正式党员,2024-01-01,04A1B2C3\n"
    "E2,李四,B1,正式党员,,\n"
    "E3,王五,B2,正式党员,,\n"
    "E4,赵六,G11,预备党员,,04 a1 b2 c4\n"
)


def _run(
    database: Database,
    kind: ImportKind,
    text: str,
    *,
    dry: bool = False,
    scope: frozenset[int] | None = None,
    now: datetime = NOW,
) -> ImportReport:
    uow = UnitOfWork(database.write_sessions)
    rows = read_rows(text.encode("utf-8"), f"{kind.value}.csv", kind)
    if dry:
        return imports.dry_run(uow, kind, rows, scope=scope, now=now, zone=ZONE)
    return imports.apply(
        uow, kind, rows, actor="admin", source=f"{kind.value}.csv", scope=scope, now=now, zone=ZONE
    )


def _count(database: Database, model: type) -> int:
    with database.sessions() as db:
        return db.scalar(select(func.count()).select_from(model)) or 0


def test_a_dry_run_reports_every_bad_row_and_changes_nothing(database: Database) -> None:
    assert _run(database, ImportKind.ORG_UNITS, UNITS).created == 4
    audits = _count(database, AuditEntry)

    dry = _run(database, ImportKind.MEMBERS, BAD_ROSTER, dry=True)

    assert [(p.line, p.column, p.code) for p in dry.problems] == [
        (3, "name", "blank"),
        (4, "org_unit", "unknown_org_unit"),
        (5, "employee_no", "duplicate"),
        (6, "category", "unknown_category"),
        (7, "active_from", "bad_date"),
        (8, "card_uid", "duplicate"),
    ]
    assert not dry.applied
    assert _count(database, Member) == 0

    refused = _run(database, ImportKind.MEMBERS, BAD_ROSTER)

    assert not refused.applied
    assert len(refused.problems) == 6
    assert _count(database, Member) == 0
    assert _count(database, Card) == 0
    assert _count(database, AuditEntry) == audits


def test_a_good_file_is_applied_once_and_audited(database: Database) -> None:
    _run(database, ImportKind.ORG_UNITS, UNITS)
    dry = _run(database, ImportKind.MEMBERS, GOOD_ROSTER, dry=True)
    assert (dry.ok, dry.created, dry.applied) == (True, 4, False)
    assert _count(database, Member) == 0

    done = _run(database, ImportKind.MEMBERS, GOOD_ROSTER)

    assert (done.applied, done.created, done.updated, done.unchanged) == (True, 4, 0, 0)
    with database.sessions() as db:
        members = db.execute(
            select(Member.employee_no, Member.name, OrgUnit.code, Member.category)
            .join(OrgUnit, OrgUnit.id == Member.org_unit_id)
            .order_by(Member.employee_no)
        ).all()
        assert [tuple(m) for m in members] == [
            ("E1", "张三", "B1", "正式党员"),
            ("E2", "李四", "B1", "正式党员"),
            ("E3", "王五", "B2", "正式党员"),
            ("E4", "赵六", "G11", "预备党员"),
        ]
        cards = db.execute(
            select(Member.employee_no, Card.tech, Card.uid, Card.status)
            .join(Member, Member.id == Card.member_id)
            .order_by(Card.uid)
        ).all()
        assert [tuple(c) for c in cards] == [
            ("E1", "iso14443a", "04A1B2C3", "active"),
            ("E4", "iso14443a", "04A1B2C4", "active"),
        ]
        joined = db.execute(
            select(MemberOrgHistory.valid_from)
            .join(Member, Member.id == MemberOrgHistory.member_id)
            .where(Member.employee_no == "E1")
        ).scalar_one()
        assert joined == datetime(2023, 12, 31, 16, 0, tzinfo=UTC)  # 2024-01-01 in Shanghai
        audit = db.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.details).where(
                AuditEntry.action == "import.members"
            )
        ).one()
        assert audit.actor == "admin"
        assert audit.details == {"rows": 4, "created": 4, "updated": 0, "unchanged": 0}
    audits = _count(database, AuditEntry)

    again = _run(database, ImportKind.MEMBERS, GOOD_ROSTER)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert _count(database, Member) == 4
    assert _count(database, Card) == 2
    assert _count(database, MemberOrgHistory) == 4
    assert _count(database, AuditEntry) == audits


def test_a_changed_row_updates_and_moves_keeping_history(database: Database) -> None:
    _run(database, ImportKind.ORG_UNITS, UNITS)
    _run(database, ImportKind.MEMBERS, GOOD_ROSTER)
    changed = GOOD_ROSTER.replace("E2,李四,B1,正式党员", "E2,李四,B2,预备党员")

    too_soon = _run(database, ImportKind.MEMBERS, changed)
    later = NOW + timedelta(days=1)
    report = _run(database, ImportKind.MEMBERS, changed, now=later)

    # E2 joined at NOW: a move at that same instant would leave an empty membership.
    assert [(p.line, p.code) for p in too_soon.problems] == [(3, "moved_too_soon")]
    assert (report.created, report.updated, report.unchanged) == (0, 1, 3)
    with database.sessions() as db:
        history = db.execute(
            select(OrgUnit.code, MemberOrgHistory.valid_to)
            .join(Member, Member.id == MemberOrgHistory.member_id)
            .join(OrgUnit, OrgUnit.id == MemberOrgHistory.org_unit_id)
            .where(Member.employee_no == "E2")
            .order_by(MemberOrgHistory.valid_from)
        ).all()
        assert [tuple(h) for h in history] == [("B1", later), ("B2", None)]
        assert db.scalar(select(Member.category).where(Member.employee_no == "E2")) == "预备党员"


def test_org_units_are_created_parents_first_and_re_parented(database: Database) -> None:
    # Children listed before their parents still land under them.
    report = _run(
        database,
        ImportKind.ORG_UNITS,
        "code,name,parent_code\nG11,第一党小组,B1\nB1,第一党支部,C\nC,机关党委,\n",
    )
    assert report.created == 3

    moved = _run(database, ImportKind.ORG_UNITS, "code,name,parent_code\nG11,第一党小组,C\n")
    cycle = _run(database, ImportKind.ORG_UNITS, "code,name,parent_code\nC,机关党委,G11\n")

    assert (moved.updated, moved.applied) == (1, True)
    assert [(p.line, p.code) for p in cycle.problems] == [(2, "cycle")]
    with database.sessions() as db:
        parents = dict(db.execute(select(OrgUnit.code, OrgUnit.parent_id)).all())
        codes = dict(db.execute(select(OrgUnit.id, OrgUnit.code)).all())
        assert {c: codes.get(p) if p else None for c, p in parents.items()} == {
            "C": None,
            "B1": "C",
            "G11": "C",
        }


def test_an_org_admin_imports_only_into_their_subtree(database: Database) -> None:
    _run(database, ImportKind.ORG_UNITS, UNITS)
    with database.sessions() as db:
        b1 = db.scalar(select(OrgUnit.id).where(OrgUnit.code == "B1"))
        assert b1 is not None
        scope = org_tree(db.connection()).subtree(b1)

    report = _run(database, ImportKind.MEMBERS, GOOD_ROSTER, scope=scope)
    units = _run(
        database, ImportKind.ORG_UNITS, "编码,名称,上级编码\nX,新支部,C\nG12,小组,B1\n", scope=scope
    )

    assert [(p.line, p.code, p.value) for p in report.problems] == [(4, "unknown_org_unit", "B2")]
    assert _count(database, Member) == 0
    assert [(p.line, p.code) for p in units.problems] == [(2, "outside_scope")]


def test_cards_import_refuses_a_card_someone_else_holds(database: Database) -> None:
    _run(database, ImportKind.ORG_UNITS, UNITS)
    _run(database, ImportKind.MEMBERS, GOOD_ROSTER)

    report = _run(
        database,
        ImportKind.CARDS,
        "工号,卡号,卡类型\nE2,04A1B2C3,\nE3,0102030405,felica\nE9,0A0B,\nE3,0102030405,felica\n",
    )

    assert [(p.line, p.code) for p in report.problems] == [
        (2, "card_taken"),
        (4, "unknown_member"),
        (5, "duplicate"),
    ]
    fixed = _run(
        database, ImportKind.CARDS, "工号,卡号,卡类型\nE3,0102030405,felica\nE1,04A1B2C3,\n"
    )
    assert (fixed.created, fixed.unchanged) == (1, 1)
    assert _count(database, Card) == 3


@pytest.mark.slow
def test_ten_thousand_rows_import_in_chunks_with_progress(database: Database) -> None:
    _run(database, ImportKind.ORG_UNITS, UNITS)
    lines = ["employee_no,name,org_unit,category,card_uid"]
    lines += [f"P{i:05d},成员{i},G11,正式党员,{i:08X}" for i in range(10_000)]
    rows = read_rows("\n".join(lines).encode(), "big.csv", ImportKind.MEMBERS)
    seen: list[tuple[int, int]] = []

    report = imports.apply(
        UnitOfWork(database.write_sessions),
        ImportKind.MEMBERS,
        rows,
        actor="admin",
        source="big.csv",
        scope=None,
        now=NOW,
        zone=ZONE,
        progress=lambda done, total: seen.append((done, total)),
    )

    assert report.created == 10_000
    assert len(seen) >= 10_000 // imports.CHUNK_ROWS
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (10_000, 10_000)
    assert _count(database, Member) == 10_000
    assert _count(database, Card) == 10_000
    assert _count(database, MemberOrgHistory) == 10_000
