"""The console in Chromium: import a roster with bad rows, export an XLSX and read it back."""

import io
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from server.db.models import AuditEntry, Card, Member, OrgUnit
from server.services import imports
from server.services.imports import ImportKind, read_rows
from server.services.rankings import Period, member_ranking
from server.services.unit_of_work import UnitOfWork
from tests.e2e.console_data.conftest import ADMIN, Console

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ZONE = ZoneInfo("Asia/Shanghai")
UNITS = "编码,名称,上级编码\nC,机关党委,\nB1,第一党支部,C\nB2,第二党支部,C\n"
BAD_ROSTER = (
    "工号,姓名,组织编码,类别,卡号\n"
    "E1,张三,B1,正式党员,04A1B2C3\n"
    "E2,李四,B9,正式党员,\n"  # line 3: no such org unit
    "E3,,B2,正式党员,\n"  # line 4: no name
    "E1,张三,B1,正式党员,\n"  # line 5: repeats line 2
    "E5,赵六,B2,正式党员,XYZ\n"  # line 6: not a card uid
)
GOOD_ROSTER = (
    "工号,姓名,组织编码,类别,卡号\n"
    "E1,张三,B1,正式党员,04A1B2C3\n"
    "E2,李四,B1,正式党员,\n"
    "E3,王五,B2,正式党员,\n"
    "E5,赵六,B2,预备党员,04A1B2C5\n"
)


def _seed_units(console: Console) -> None:
    rows = read_rows(UNITS.encode(), "units.csv", ImportKind.ORG_UNITS)
    imports.apply(
        UnitOfWork(console.database.write_sessions),
        ImportKind.ORG_UNITS,
        rows,
        actor="setup",
        source="units.csv",
        scope=None,
        now=datetime.now(UTC),
        zone=ZONE,
    )


def _count(console: Console, model: type) -> int:
    with console.database.sessions() as db:
        return db.scalar(select(func.count()).select_from(model)) or 0


def _upload(page: Any, base_url: str, name: str, text: str) -> None:
    page.goto(f"{base_url}/admin/imports")
    page.select_option("select[name=kind]", "members")
    page.set_input_files(
        "input[name=file]",
        files=[{"name": name, "mimeType": "text/csv", "buffer": text.encode("gb18030")}],
    )
    page.click("[data-test=dry-run]")


def test_import_a_roster_with_bad_rows_dry_run_then_confirm(page: Any, console: Console) -> None:
    _seed_units(console)

    _upload(page, console.base_url, "roster.csv", BAD_ROSTER)

    page.wait_for_selector("[data-test=dry-run-bad]")
    lines = page.locator("table[data-test=problems] tbody tr").evaluate_all(
        "rows => rows.map(r => [Number(r.dataset.line), r.cells[2].innerText])"
    )
    assert [line for line, _ in lines] == [3, 4, 5, 6]
    assert "B9" in lines[0][1]
    assert "第 2 行" in lines[2][1]
    assert page.locator("[data-test=confirm]").count() == 0
    assert _count(console, Member) == 0

    _upload(page, console.base_url, "roster.csv", GOOD_ROSTER)
    page.wait_for_selector("[data-test=dry-run-ok]")
    assert page.inner_text("[data-test=created]") == "4"
    assert _count(console, Member) == 0
    page.click("[data-test=confirm]")
    page.wait_for_selector("[data-test=import-done]", timeout=30_000)

    with console.database.sessions() as db:
        members = db.execute(
            select(Member.employee_no, Member.name, OrgUnit.code)
            .join(OrgUnit, OrgUnit.id == Member.org_unit_id)
            .order_by(Member.employee_no)
        ).all()
        assert [tuple(m) for m in members] == [
            ("E1", "张三", "B1"),
            ("E2", "李四", "B1"),
            ("E3", "王五", "B2"),
            ("E5", "赵六", "B2"),
        ]
        assert db.scalar(select(func.count()).select_from(Card)) == 2
        actors = db.execute(
            select(AuditEntry.actor).where(AuditEntry.action == "import.members")
        ).all()
        assert [a for (a,) in actors] == [ADMIN]


def test_export_rankings_as_xlsx_and_read_it_back(
    scored_page: Any, scored_console: Console
) -> None:
    # The package's server with the March scores (conftest.seed_scores): E1 +3, E2 +2, E3 absent.
    page, console = scored_page, scored_console
    page.goto(f"{console.base_url}/admin/exports")
    page.select_option("select[name=kind]", "rankings")
    page.fill("input[name=first_day]", "2025-03-01")
    page.fill("input[name=last_day]", "2025-03-31")
    page.select_option("select[name=org_unit]", "C")
    page.select_option("select[name=file_format]", "xlsx")

    with page.expect_download() as download:
        page.click("[data-test=export]")
    content = download.value.path().read_bytes()

    assert download.value.suggested_filename == "rollcall-rankings-C-20250301-20250331.xlsx"
    sheet = load_workbook(io.BytesIO(content)).worksheets[0]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == ["组织编码", "组织", "名次", "工号", "姓名", "积分"]
    with console.database.sessions() as db:
        expected = member_ranking(
            db.connection(), "C", Period(date(2025, 3, 1), date(2025, 4, 1)), ZONE
        )
        audit = db.execute(
            select(AuditEntry.actor, AuditEntry.target, AuditEntry.details).where(
                AuditEntry.action == "export.rankings"
            )
        ).one()
    assert [r[2:] for r in rows[1:]] == [
        [m.rank, m.employee_no, m.name, m.points] for m in expected
    ]
    assert [r[3:] for r in rows[1:]] == [["E1", "张三", 3], ["E2", "李四", 2], ["E3", "王五", 0]]
    assert audit.actor == ADMIN
    assert audit.target == "rollcall-rankings-C-20250301-20250331.xlsx"
    assert audit.details["rows"] == 3
    # The export page lists it among the user's latest exports.
    page.goto(f"{console.base_url}/admin/exports")
    assert "rollcall-rankings-C-20250301-20250331.xlsx" in page.inner_text("main")


def test_a_large_import_shows_its_progress_until_done(page: Any, console: Console) -> None:
    _seed_units(console)
    lines = ["employee_no,name,org_unit,category"]
    lines += [f"P{i:05d},成员{i},B1,正式党员" for i in range(5_000)]
    _upload(page, console.base_url, "big.csv", "\n".join(lines) + "\n")
    page.wait_for_selector("[data-test=dry-run-ok]", timeout=60_000)
    assert page.inner_text("[data-test=created]") == "5000"

    page.click("[data-test=confirm]")

    # The progress fragment polls itself (HTMX) until the import has ended.
    page.wait_for_selector("#import-progress[data-state=done]", timeout=120_000)
    assert page.inner_text("[data-test=created]") == "5000"
    assert _count(console, Member) == 5_000
