"""`rollcall import` and `rollcall export` against a real database file."""

from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from server.cli import main
from server.db.engine import open_database
from server.db.models import AuditEntry, Member

pytestmark = pytest.mark.integration

UNITS = "code,name,parent_code\nC,机关党委,\nB1,第一党支部,C\n"
ROSTER = "工号,姓名,组织编码,类别\nE1,张三,B1,正式党员\nE2,李四,B9,正式党员\n"


def test_import_dry_run_then_apply_then_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'rollcall.sqlite3'}"
    monkeypatch.setenv("ROLLCALL_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    (tmp_path / "units.csv").write_text(UNITS, encoding="utf-8")
    # What Excel in a Chinese locale writes.
    (tmp_path / "roster.csv").write_bytes(ROSTER.encode("gb18030"))
    capsys.readouterr()

    assert main(["import", "org_units", str(tmp_path / "units.csv")]) == 0
    assert main(["import", "members", str(tmp_path / "roster.csv"), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "line 3: org_unit: no org unit B9" in out
    assert "members: 2 rows, refused: 1 new, 0 changed, 0 unchanged, 1 problem(s)" in out

    (tmp_path / "roster.csv").write_bytes(ROSTER.replace("B9", "B1").encode("gb18030"))
    assert main(["import", "members", str(tmp_path / "roster.csv")]) == 0
    assert "members: 2 rows, applied: 2 new" in capsys.readouterr().out

    output = tmp_path / "ranking.xlsx"
    code = main(
        ["export", "rankings", "--from", "2025-01-01", "--to", "2025-03-31", "-o", str(output)]
    )
    assert code == 0
    sheet = load_workbook(output).worksheets[0]
    assert [r[3] for r in sheet.iter_rows(min_row=2, values_only=True)] == ["E1", "E2"]

    database = open_database(url)
    try:
        with database.sessions() as db:
            assert db.scalar(select(func.count()).select_from(Member)) == 2
            actions = db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
            assert actions == ["import.org_units", "import.members", "export.rankings"]
            actor = db.scalar(select(AuditEntry.actor).limit(1))
            assert actor is not None
            assert actor.startswith("cli")
    finally:
        database.dispose()
