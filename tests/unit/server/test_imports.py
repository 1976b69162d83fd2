"""Reading import files (CSV in UTF-8 or GB18030, XLSX) and writing export files."""

import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook, load_workbook

from server.errors import DomainError
from server.services.exports import ExportFormat, ExportKind, ExportRequest, Table, to_csv, to_xlsx
from server.services.imports import BadImportFile, ImportKind, RowProblem, read_rows

ROSTER = "工号,姓名,组织编码,类别,卡号\nE1,张三,B1,正式党员,04A1B2C3\nE2,李四,B1,预备党员,\n"


def test_utf8_csv_with_chinese_headers_is_read_with_line_numbers() -> None:
    rows = read_rows(ROSTER.encode(), "roster.csv", ImportKind.MEMBERS)

    assert [r.line for r in rows] == [2, 3]
    assert rows[0].values == {
        "employee_no": "E1",
        "name": "张三",
        "org_unit": "B1",
        "category": "正式党员",
        "card_uid": "04A1B2C3",
    }
    assert rows[1].get("card_uid") == ""


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030"])
def test_excel_encodings_read_the_same(encoding: str) -> None:
    rows = read_rows(ROSTER.encode(encoding), "roster.csv", ImportKind.MEMBERS)

    assert [r.get("name") for r in rows] == ["张三", "李四"]
    assert [r.get("employee_no") for r in rows] == ["E1", "E2"]


def test_english_headers_tabs_blank_lines_and_multiline_cells_keep_line_numbers() -> None:
    text = (
        "employee_no\tName\torg unit\tcategory\tremark\n"
        "\n"
        'E1\t张三\tB1\t正式党员\t"two\nlines"\n'
        "E2\t李四\tB1\t正式党员\tx\n"
    )
    rows = read_rows(text.encode(), "r.tsv", ImportKind.MEMBERS)

    assert [(r.line, r.get("employee_no")) for r in rows] == [(3, "E1"), (5, "E2")]
    assert "remark" not in rows[0].values


def test_xlsx_numbers_and_dates_become_text() -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["工号", "姓名", "组织编码", "类别", "起始日期"])
    sheet.append([1001, "王五", "B1", "正式党员", datetime(2025, 3, 1)])  # noqa: DTZ001 (Excel has no zones)
    sheet.append([None, None, None, None, None])
    sheet.append([1002.0, "赵六", "B2", "正式党员", date(2025, 4, 1)])
    out = io.BytesIO()
    book.save(out)

    rows = read_rows(out.getvalue(), "roster.xlsx", ImportKind.MEMBERS)

    assert [(r.line, r.get("employee_no"), r.get("active_from")) for r in rows] == [
        (2, "1001", "2025-03-01"),
        (4, "1002", "2025-04-01"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        ("工号,姓名\nE1,张三\n".encode(), "missing column"),
        ("工号,工号,姓名,组织编码,类别\n".encode(), "appears twice"),
        (b"PK\x03\x04not really a zip", "XLSX"),
        (bytes([0xFF, 0xFE, 0xFD, 0x81, 0x30]) * 3, "neither UTF-8 nor GB18030"),
    ],
)
def test_unreadable_files_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(BadImportFile, match=message):
        read_rows(data, "x.csv", ImportKind.MEMBERS)


def test_cards_and_org_units_have_their_own_columns() -> None:
    cards = read_rows(
        "工号,卡号,卡类型\nE1,04:a1:b2:c3,felica\n".encode(), "c.csv", ImportKind.CARDS
    )
    units = read_rows(
        "编码,名称,上级编码\nB1,第一党支部,C\n".encode(), "u.csv", ImportKind.ORG_UNITS
    )

    assert cards[0].values == {"employee_no": "E1", "uid": "04:a1:b2:c3", "tech": "felica"}
    assert units[0].values == {"code": "B1", "name": "第一党支部", "parent_code": "C"}


def test_problems_read_in_chinese_first_and_english_on_request() -> None:
    problem = RowProblem(7, "org_unit", "unknown_org_unit", "B9")

    assert problem.text() == "组织编码 B9 不存在"
    assert problem.text("en") == "no org unit B9"
    assert RowProblem(3, "employee_no", "duplicate", "E1", "2").text() == "E1 与第 2 行重复"


TABLE = Table(
    "积分排名", ("工号", "姓名", "积分"), [("E1", "=HYPERLINK(1)", 12), ("E2", "李四", -3)]
)


def test_csv_export_has_a_bom_and_neutralises_formulas() -> None:
    text = to_csv(TABLE).decode("utf-8")

    assert text.startswith("\ufeff工号,姓名,积分\r\n")
    assert "E1,'=HYPERLINK(1),12\r\n" in text
    assert "E2,李四,-3\r\n" in text


def test_xlsx_export_reads_back_with_text_kept_as_text() -> None:
    book = load_workbook(io.BytesIO(to_xlsx(TABLE)))
    sheet = book.worksheets[0]

    assert sheet.title == "积分排名"
    assert [list(r) for r in sheet.iter_rows(values_only=True)] == [
        ["工号", "姓名", "积分"],
        ["E1", "=HYPERLINK(1)", 12],
        ["E2", "李四", -3],
    ]
    assert sheet["B2"].data_type == "s"


def test_export_request_names_its_file_and_refuses_reversed_days() -> None:
    request = ExportRequest(
        ExportKind.RANKINGS, date(2025, 1, 1), date(2025, 3, 31), "B1", ExportFormat.CSV
    )

    assert request.filename == "rollcall-rankings-B1-20250101-20250331.csv"
    assert request.period.end == date(2025, 4, 1)
    with pytest.raises(DomainError, match="before"):
        ExportRequest(ExportKind.POINTS, date(2025, 2, 1), date(2025, 1, 1))
