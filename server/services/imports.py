"""Importing org units, members and cards from CSV or XLSX: check every row, then apply all or none.

A dry run reads the file, checks each row against the database and against the
rest of the file, and reports every bad row with its line number; it writes
nothing. Applying checks again inside its one write transaction and refuses the
whole file if any row is bad, so a file is taken whole or not at all, and the
import is audited in that same transaction. Rows equal to what is stored count
as unchanged, so importing the same file twice changes nothing the second time.

CSV files may be UTF-8 (with or without a byte-order mark) or GB18030, which is
what Chinese Excel writes; XLSX is read from its first sheet. Column headers may
be English (`employee_no`) or Chinese (`工号`). An org admin's import is held to
their subtree: units and members outside it are treated as unknown.
"""

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from enum import StrEnum
from typing import Any, Final

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException
from sqlalchemy import Connection, Executable, bindparam, insert, select, update

from protocol import CardTech
from server.audit.chain import record_audit
from server.db.lookups import chunks
from server.db.models import Card, Member, MemberCategory, MemberOrgHistory, OrgUnit, table_of
from server.domain.cards import CardStatus
from server.errors import DomainError
from server.services.unit_of_work import UnitOfWork

MAX_ROWS: Final = 100_000
CHUNK_ROWS: Final = 500
DEFAULT_TECH: Final = CardTech.ISO14443A

Progress = Callable[[int, int], None]
"""Told (rows written so far, rows to write) after each chunk of an import."""


class ImportKind(StrEnum):
    """What a file holds."""

    ORG_UNITS = "org_units"
    MEMBERS = "members"
    CARDS = "cards"


class BadImportFile(DomainError):
    """A file that cannot be read as a table of this kind (format, encoding, columns)."""


# Each kind's columns: canonical name → accepted headers (compared lower-case, `_` for spaces).
_COLUMNS: Final[Mapping[ImportKind, Mapping[str, tuple[str, ...]]]] = {
    ImportKind.ORG_UNITS: {
        "code": ("code", "编码", "组织编码", "单位编码"),
        "name": ("name", "名称", "组织名称", "单位名称"),
        "parent_code": ("parent_code", "parent", "上级编码", "上级组织编码", "上级组织"),
    },
    ImportKind.MEMBERS: {
        "employee_no": ("employee_no", "employee_number", "工号", "员工编号", "职工号"),
        "name": ("name", "姓名"),
        "org_unit": ("org_unit", "org_unit_code", "组织编码", "所属组织", "所在组织", "支部编码"),
        "category": ("category", "类别", "人员类别", "党员类别"),
        "active_from": ("active_from", "起始日期", "生效日期"),
        "active_to": ("active_to", "终止日期", "失效日期"),
        "card_uid": ("card_uid", "uid", "卡号"),
        "card_tech": ("card_tech", "tech", "卡类型"),
    },
    ImportKind.CARDS: {
        "employee_no": ("employee_no", "employee_number", "工号", "员工编号", "职工号"),
        "uid": ("uid", "card_uid", "卡号"),
        "tech": ("tech", "card_tech", "卡类型"),
    },
}
_REQUIRED: Final[Mapping[ImportKind, tuple[str, ...]]] = {
    ImportKind.ORG_UNITS: ("code", "name"),
    ImportKind.MEMBERS: ("employee_no", "name", "org_unit", "category"),
    ImportKind.CARDS: ("employee_no", "uid"),
}
_LIMITS: Final = {
    "code": 32,
    "name": 100,
    "employee_no": 32,
    "category": 32,
}

# Problem codes and their texts (Chinese first, English); `{value}` and `{other}` are filled in.
PROBLEM_TEXTS: Final[Mapping[str, tuple[str, str]]] = {
    "blank": ("{field}不能为空", "{field} is blank"),
    "too_long": ("{field}过长（最多 {other} 个字符）", "{field} is too long (at most {other})"),
    "bad_date": ("日期 {value} 无法识别（应为 2026-03-01）", "cannot read date {value}"),
    "dates_reversed": ("终止日期早于起始日期", "active_to is before active_from"),
    "duplicate": ("{value} 与第 {other} 行重复", "{value} repeats line {other}"),
    "unknown_org_unit": ("组织编码 {value} 不存在", "no org unit {value}"),
    "unknown_category": ("人员类别 {value} 未定义", "unknown member category {value}"),
    "unknown_member": ("工号 {value} 不存在", "no member {value}"),
    "employee_no_taken": ("工号 {value} 已被其他组织使用", "employee number {value} is taken"),
    "bad_uid": ("卡号 {value} 不是十六进制", "card uid {value} is not hexadecimal"),
    "bad_tech": ("卡类型 {value} 无效", "unknown card technology {value}"),
    "card_taken": ("卡 {value} 已属于工号 {other}", "card {value} belongs to {other}"),
    "cycle": ("上级组织 {value} 会形成循环", "parent {value} would make a cycle"),
    "outside_scope": ("组织 {value} 不在您的管理范围内", "org unit {value} is outside your scope"),
    "moved_too_soon": (
        "成员调入当前组织的时间晚于现在，无法调动",
        "the member's current membership starts in the future; cannot move",
    ),
}
_FIELD_NAMES: Final[Mapping[str, tuple[str, str]]] = {
    "code": ("编码", "code"),
    "name": ("名称", "name"),
    "parent_code": ("上级编码", "parent_code"),
    "employee_no": ("工号", "employee_no"),
    "org_unit": ("组织编码", "org_unit"),
    "category": ("类别", "category"),
    "active_from": ("起始日期", "active_from"),
    "active_to": ("终止日期", "active_to"),
    "card_uid": ("卡号", "card_uid"),
    "card_tech": ("卡类型", "card_tech"),
    "uid": ("卡号", "uid"),
    "tech": ("卡类型", "tech"),
}


@dataclass(frozen=True)
class SourceRow:
    """One data row of the file: its line number (the header is line 1) and its cells by column."""

    line: int
    values: Mapping[str, str]

    def get(self, column: str) -> str:
        """The cell's text, stripped; empty if the column is absent."""
        return self.values.get(column, "").strip()


@dataclass(frozen=True)
class RowProblem:
    """Why one row cannot be imported."""

    line: int
    column: str
    code: str
    value: str = ""
    other: str = ""

    def text(self, language: str = "zh") -> str:
        """The reason in Chinese (`zh`, the default) or English (`en`)."""
        index = 1 if language.startswith("en") else 0
        field_name = _FIELD_NAMES.get(self.column, (self.column, self.column))[index]
        template = PROBLEM_TEXTS[self.code][index]
        return template.format(field=field_name, value=self.value, other=self.other)


@dataclass(frozen=True)
class ImportReport:
    """What an import found and (unless a dry run or refused) did."""

    kind: ImportKind
    rows: int
    created: int
    updated: int
    unchanged: int
    problems: tuple[RowProblem, ...]
    applied: bool

    @property
    def ok(self) -> bool:
        """Whether every row can be imported."""
        return not self.problems


# --------------------------------------------------------------------------- reading files


def _decode(data: bytes) -> str:
    """UTF-8 (a BOM is dropped), else GB18030: Excel in a Chinese locale writes GB18030."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise BadImportFile("the file is neither UTF-8 nor GB18030 text") from exc


def _csv_lines(data: bytes) -> list[tuple[int, list[str]]]:
    text = _decode(data)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    lines: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            # A quoted cell may span lines: a row is numbered by the line it starts on.
            lines.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise BadImportFile(f"line {start}: {exc}") from exc
    return lines


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        # A number typed into Excel (an employee number) comes back as 1001.0.
        return str(int(value))
    return str(value)


def _xlsx_lines(data: bytes) -> list[tuple[int, list[str]]]:
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise BadImportFile(f"not a readable XLSX workbook: {exc}") from exc
    try:
        sheet = workbook.worksheets[0]
        return [
            (number, [_cell_text(v) for v in values])
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
        ]
    finally:
        workbook.close()


def _header_key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


def read_rows(data: bytes, filename: str, kind: ImportKind) -> list[SourceRow]:
    """The data rows of a CSV or XLSX file, cells keyed by canonical column name.

    BadImportFile if the file cannot be read, has no header, lacks a required
    column or names one twice; blank rows are skipped.
    """
    is_xlsx = data[:4] == b"PK\x03\x04" or filename.lower().endswith(".xlsx")
    lines = _xlsx_lines(data) if is_xlsx else _csv_lines(data)
    lines = [(n, cells) for n, cells in lines if any(c.strip() for c in cells)]
    if not lines:
        raise BadImportFile("the file is empty")
    header_line, headers = lines[0]
    aliases = {
        _header_key(alias): column for column, names in _COLUMNS[kind].items() for alias in names
    }
    positions: dict[str, int] = {}
    for index, header in enumerate(headers):
        column = aliases.get(_header_key(header))
        if column is None:
            continue  # other columns (备注 …) are allowed and ignored
        if column in positions:
            raise BadImportFile(f"line {header_line}: column {column} appears twice")
        positions[column] = index
    missing = [c for c in _REQUIRED[kind] if c not in positions]
    if missing:
        raise BadImportFile(
            f"line {header_line}: missing column(s) {', '.join(missing)} for {kind.value}"
        )
    if len(lines) - 1 > MAX_ROWS:
        raise BadImportFile(f"more than {MAX_ROWS} rows; split the file")
    return [
        SourceRow(
            number,
            {c: cells[i] if i < len(cells) else "" for c, i in positions.items()},
        )
        for number, cells in lines[1:]
    ]


# --------------------------------------------------------------------------- checking cells


class _Checker:
    """Collects problems while reading cells."""

    def __init__(self) -> None:
        self.problems: list[RowProblem] = []
        self.bad_lines: set[int] = set()

    def add(self, row: SourceRow, column: str, code: str, value: str = "", other: str = "") -> None:
        self.add_line(row.line, column, code, value, other)

    def add_line(self, line: int, column: str, code: str, value: str = "", other: str = "") -> None:
        self.problems.append(RowProblem(line, column, code, value, other))
        self.bad_lines.add(line)

    def text(self, row: SourceRow, column: str, *, required: bool = True) -> str:
        value = row.get(column)
        if required and not value:
            self.add(row, column, "blank")
        limit = _LIMITS.get(column)
        if limit is not None and len(value) > limit:
            self.add(row, column, "too_long", value[:40], str(limit))
        return value

    def day(self, row: SourceRow, column: str) -> date | None:
        value = row.get(column)
        if not value:
            return None
        parsed = _parse_date(value)
        if parsed is None:
            self.add(row, column, "bad_date", value)
        return parsed

    def card(self, row: SourceRow, uid_column: str, tech_column: str) -> tuple[str, str] | None:
        raw = row.get(uid_column)
        if not raw:
            return None
        uid = re.sub(r"[\s:\-]", "", raw).upper()
        ok = True
        if not re.fullmatch(r"(?:[0-9A-F]{2}){2,32}", uid):
            self.add(row, uid_column, "bad_uid", raw)
            ok = False
        tech_text = row.get(tech_column).lower() or DEFAULT_TECH.value
        if tech_text not in {t.value for t in CardTech}:
            self.add(row, tech_column, "bad_tech", tech_text)
            ok = False
        return (tech_text, uid) if ok else None

    def once(self, seen: dict[str, int], row: SourceRow, column: str, key: str) -> bool:
        """False (and a problem) if `key` already appeared on an earlier line."""
        if key in seen:
            self.add(row, column, "duplicate", key, str(seen[key]))
            return False
        seen[key] = row.line
        return True


def _parse_date(text: str) -> date | None:
    match = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:[ T].*)?", text)
    if match is None:
        match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", text)
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _units(connection: Connection) -> dict[str, tuple[int, int | None, str]]:
    """Every org unit: code → (id, parent id, name)."""
    return {
        code: (unit_id, parent_id, name)
        for unit_id, parent_id, code, name in connection.execute(
            select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.code, OrgUnit.name)
        )
    }


def _in_scope(scope: frozenset[int] | None, unit_id: int) -> bool:
    return scope is None or unit_id in scope


def _active_cards(
    connection: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str]]:
    """Active cards among (tech, uid) keys: key → (member id, holder's employee number)."""
    wanted = set(keys)
    found: dict[tuple[str, str], tuple[int, str]] = {}
    for part in chunks({uid for _, uid in wanted}):
        rows = connection.execute(
            select(Card.tech, Card.uid, Card.member_id, Member.employee_no)
            .join(Member, Member.id == Card.member_id)
            .where(Card.uid.in_(part), Card.status == CardStatus.ACTIVE.value)
        )
        for tech, uid, member_id, employee_no in rows:
            if (tech, uid) in wanted:
                found[(tech, uid)] = (member_id, employee_no)
    return found


# --------------------------------------------------------------------------- plans

Tick = Callable[[int], None]
"""Told how many more rows have been written."""


@dataclass
class _Plan:
    """What applying a file would do, and the rows that stop it."""

    problems: list[RowProblem]
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    write: Callable[[Connection, Tick], None] = lambda connection, tick: None


def _in_chunks(
    connection: Connection, statement: Executable, rows: Sequence[dict[str, Any]], tick: Tick
) -> None:
    """Execute a statement over rows, CHUNK_ROWS at a time, telling `tick` after each."""
    for start in range(0, len(rows), CHUNK_ROWS):
        part = list(rows[start : start + CHUNK_ROWS])
        connection.execute(statement, part)
        tick(len(part))


def _plan_org_units(
    connection: Connection, rows: Sequence[SourceRow], scope: frozenset[int] | None
) -> _Plan:
    check = _Checker()
    units = _units(connection)
    by_id = {unit_id: code for code, (unit_id, _, _) in units.items()}
    seen: dict[str, int] = {}
    wanted: dict[str, tuple[SourceRow, str, str]] = {}  # code → row, name, parent code
    for row in rows:
        code = check.text(row, "code")
        name = check.text(row, "name")
        parent = row.get("parent_code")
        if code and check.once(seen, row, "code", code):
            wanted[code] = (row, name, parent)
    # The tree after the import: stored parents, overridden by the file's.
    stored_parent: dict[str, str | None] = {
        code: None if parent_id is None else by_id[parent_id]
        for code, (_, parent_id, _) in units.items()
    }
    parents = dict(stored_parent)
    for code, (_, _, parent) in wanted.items():
        parents[code] = parent or None
    creates: list[tuple[str, str]] = []
    changes: list[tuple[str, str, str | None]] = []
    unchanged = 0
    for code, (row, name, parent) in wanted.items():
        stored = units.get(code)
        if stored is not None and not _in_scope(scope, stored[0]):
            check.add(row, "code", "outside_scope", code)
        else:
            _check_parent(
                check,
                row,
                code,
                parent,
                units=units,
                in_file=wanted.keys(),
                parents=parents,
                scope=scope,
            )
        if row.line in check.bad_lines:
            continue
        if stored is None:
            creates.append((code, name))
        elif stored[2] != name or stored_parent[code] != parents[code]:
            changes.append((code, name, parents[code]))
        else:
            unchanged += 1
    names = dict(creates)
    order = _top_down(list(names), parents)

    def write(connection: Connection, tick: Tick) -> None:
        table = table_of(OrgUnit)
        ids = {code: unit_id for code, (unit_id, _, _) in units.items()}
        # Parents first, level by level, so each unit can name its parent's id.
        for level in order:
            rows = [
                {"code": c, "name": names[c], "parent_id": None if p is None else ids[p]}
                for c in level
                for p in [parents[c]]
            ]
            _in_chunks(connection, insert(table), rows, tick)
            for part in chunks(level):
                ids.update(
                    connection.execute(
                        select(OrgUnit.code, OrgUnit.id).where(OrgUnit.code.in_(part))
                    ).all()
                )
        statement = (
            update(table)
            .where(table.c.code == bindparam("c"))
            .values(name=bindparam("n"), parent_id=bindparam("p"))
        )
        rows = [{"c": c, "n": n, "p": None if p is None else ids[p]} for c, n, p in changes]
        _in_chunks(connection, statement, rows, tick)

    return _Plan(check.problems, len(creates), len(changes), unchanged, write)


def _check_parent(
    check: _Checker,
    row: SourceRow,
    code: str,
    parent: str,
    *,
    units: Mapping[str, tuple[int, int | None, str]],
    in_file: Iterable[str],
    parents: Mapping[str, str | None],
    scope: frozenset[int] | None,
) -> None:
    """A unit's parent must exist (stored or in the file), be in scope, and make no cycle."""
    if not parent:
        if scope is not None:
            check.add(row, "parent_code", "blank")  # an org admin cannot add a top-level unit
        return
    parent_unit = units.get(parent)
    if parent_unit is None and parent not in in_file:
        check.add(row, "parent_code", "unknown_org_unit", parent)
    elif parent_unit is not None and not _in_scope(scope, parent_unit[0]):
        check.add(row, "parent_code", "outside_scope", parent)
    elif _has_cycle(parents, code):
        check.add(row, "parent_code", "cycle", parent)


def _has_cycle(parents: Mapping[str, str | None], code: str) -> bool:
    seen = {code}
    current = parents.get(code)
    while current is not None:
        if current in seen:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


def _top_down(codes: Sequence[str], parents: Mapping[str, str | None]) -> list[list[str]]:
    """New units in levels: each level's parents are stored already or in an earlier level."""
    pending = set(codes)
    levels: list[list[str]] = []
    while pending:
        level = sorted(c for c in pending if parents.get(c) not in pending)
        levels.append(level)
        pending -= set(level)
    return levels


@dataclass(frozen=True)
class _MemberRow:
    line: int
    employee_no: str
    name: str
    org_unit_id: int
    category: str
    active_from: date | None
    active_to: date | None
    card: tuple[str, str] | None


def _stored_members(connection: Connection) -> dict[str, tuple[int, _MemberRow]]:
    """Every member by employee number: (member id, their fields; line 0)."""
    return {
        no: (member_id, _MemberRow(0, no, name, unit_id, category, active_from, active_to, None))
        for member_id, no, name, unit_id, category, active_from, active_to in connection.execute(
            select(
                Member.id,
                Member.employee_no,
                Member.name,
                Member.org_unit_id,
                Member.category,
                Member.active_from,
                Member.active_to,
            )
        )
    }


def _read_members(
    check: _Checker,
    rows: Sequence[SourceRow],
    units: Mapping[str, tuple[int, int | None, str]],
    categories: frozenset[str],
    scope: frozenset[int] | None,
) -> list[_MemberRow]:
    """The rows that pass every check of their own cells and no earlier row repeats."""
    seen: dict[str, int] = {}
    seen_cards: dict[str, int] = {}
    good: list[_MemberRow] = []
    for row in rows:
        employee_no = check.text(row, "employee_no")
        name = check.text(row, "name")
        unit_code = check.text(row, "org_unit")
        category = check.text(row, "category")
        if category and category not in categories:
            check.add(row, "category", "unknown_category", category)
        active_from, active_to = check.day(row, "active_from"), check.day(row, "active_to")
        if active_from and active_to and active_to < active_from:
            check.add(row, "active_to", "dates_reversed")
        unit = units.get(unit_code)
        if unit_code and (unit is None or not _in_scope(scope, unit[0])):
            # Outside the admin's subtree reads as unknown: it must not reveal what exists.
            check.add(row, "org_unit", "unknown_org_unit", unit_code)
        card = check.card(row, "card_uid", "card_tech")
        if employee_no:
            check.once(seen, row, "employee_no", employee_no)
        if card is not None:
            check.once(seen_cards, row, "card_uid", card[1])
        if row.line not in check.bad_lines and unit is not None:
            good.append(
                _MemberRow(
                    row.line, employee_no, name, unit[0], category, active_from, active_to, card
                )
            )
    return good


def _plan_members(
    connection: Connection,
    rows: Sequence[SourceRow],
    scope: frozenset[int] | None,
    now: datetime,
    zone: tzinfo,
) -> _Plan:
    check = _Checker()
    stored = _stored_members(connection)
    categories = frozenset(connection.scalars(select(MemberCategory.name)).all())
    good = _read_members(check, rows, _units(connection), categories, scope)
    held = _active_cards(connection, [r.card for r in good if r.card is not None])
    moving = [
        stored[r.employee_no][0]
        for r in good
        if r.employee_no in stored and stored[r.employee_no][1].org_unit_id != r.org_unit_id
    ]
    open_since: dict[int, datetime] = {}
    for part in chunks(moving):
        open_since.update(
            connection.execute(
                select(MemberOrgHistory.member_id, MemberOrgHistory.valid_from).where(
                    MemberOrgHistory.member_id.in_(part), MemberOrgHistory.valid_to.is_(None)
                )
            ).all()
        )
    creates: list[_MemberRow] = []
    changes: list[tuple[int, _MemberRow]] = []
    moves: list[tuple[int, int]] = []
    new_cards: list[tuple[str, tuple[str, str]]] = []
    unchanged = 0
    for r in good:
        member_id, before = stored.get(r.employee_no, (0, None))
        if before is not None and not _in_scope(scope, before.org_unit_id):
            check.add_line(r.line, "employee_no", "employee_no_taken", r.employee_no)
            continue
        holder = None if r.card is None else held.get(r.card)
        if r.card is not None and holder is not None and holder[1] != r.employee_no:
            check.add_line(r.line, "card_uid", "card_taken", r.card[1], holder[1])
            continue
        if before is not None and before.org_unit_id != r.org_unit_id:
            since = open_since.get(member_id)
            if since is not None and since >= now:
                check.add_line(r.line, "org_unit", "moved_too_soon")
                continue
            moves.append((member_id, r.org_unit_id))
        card_is_new = r.card is not None and holder is None
        if card_is_new and r.card is not None:
            new_cards.append((r.employee_no, r.card))
        if before is None:
            creates.append(r)
        elif _same_member(before, r):
            if card_is_new:
                changes.append((member_id, r))
            else:
                unchanged += 1
        else:
            changes.append((member_id, r))

    def write(connection: Connection, tick: Tick) -> None:
        _write_members(
            connection,
            creates=creates,
            changes=changes,
            moves=moves,
            new_cards=new_cards,
            now=now,
            zone=zone,
            tick=tick,
        )

    return _Plan(check.problems, len(creates), len(changes), unchanged, write)


def _same_member(before: _MemberRow, after: _MemberRow) -> bool:
    return (
        before.name,
        before.org_unit_id,
        before.category,
        before.active_from,
        before.active_to,
    ) == (after.name, after.org_unit_id, after.category, after.active_from, after.active_to)


def _write_members(
    connection: Connection,
    *,
    creates: Sequence[_MemberRow],
    changes: Sequence[tuple[int, _MemberRow]],
    moves: Sequence[tuple[int, int]],
    new_cards: Sequence[tuple[str, tuple[str, str]]],
    now: datetime,
    zone: tzinfo,
    tick: Tick,
) -> None:
    members, history = table_of(Member), table_of(MemberOrgHistory)
    for start in range(0, len(creates), CHUNK_ROWS):
        part = creates[start : start + CHUNK_ROWS]
        connection.execute(
            insert(members),
            [
                {
                    "employee_no": r.employee_no,
                    "name": r.name,
                    "org_unit_id": r.org_unit_id,
                    "category": r.category,
                    "active_from": r.active_from,
                    "active_to": r.active_to,
                    "created_at": now,
                }
                for r in part
            ],
        )
        ids = dict(
            connection.execute(
                select(Member.employee_no, Member.id).where(
                    Member.employee_no.in_([r.employee_no for r in part])
                )
            ).all()
        )
        connection.execute(
            insert(history),
            [
                {
                    "member_id": ids[r.employee_no],
                    "org_unit_id": r.org_unit_id,
                    "valid_from": _joined(r.active_from, now, zone),
                }
                for r in part
            ],
        )
        tick(len(part))
    statement = (
        update(members)
        .where(members.c.id == bindparam("member"))
        .values(
            name=bindparam("new_name"),
            org_unit_id=bindparam("unit"),
            category=bindparam("new_category"),
            active_from=bindparam("new_from", type_=members.c.active_from.type),
            active_to=bindparam("new_to", type_=members.c.active_to.type),
        )
    )
    rows = [
        {
            "member": member_id,
            "new_name": r.name,
            "unit": r.org_unit_id,
            "new_category": r.category,
            "new_from": r.active_from,
            "new_to": r.active_to,
        }
        for member_id, r in changes
    ]
    _in_chunks(connection, statement, rows, tick)
    if moves:
        # The old membership ends now, so past sessions still expect them where they were.
        connection.execute(
            update(history)
            .where(history.c.member_id == bindparam("member"), history.c.valid_to.is_(None))
            .values(valid_to=now),
            [{"member": m} for m, _ in moves],
        )
        connection.execute(
            insert(history),
            [{"member_id": m, "org_unit_id": u, "valid_from": now} for m, u in moves],
        )
    if new_cards:
        _insert_cards(connection, new_cards, now)


def _joined(active_from: date | None, now: datetime, zone: tzinfo) -> datetime:
    """When a new member's first membership starts: their first active day, else now."""
    if active_from is None:
        return now
    return datetime.combine(active_from, time.min, tzinfo=zone).astimezone(UTC)


def _insert_cards(
    connection: Connection, new_cards: Sequence[tuple[str, tuple[str, str]]], now: datetime
) -> None:
    ids: dict[str, int] = {}
    for part in chunks(sorted({no for no, _ in new_cards})):
        ids.update(
            connection.execute(
                select(Member.employee_no, Member.id).where(Member.employee_no.in_(part))
            ).all()
        )
    connection.execute(
        insert(table_of(Card)),
        [
            {
                "tech": tech,
                "uid": uid,
                "member_id": ids[no],
                "status": CardStatus.ACTIVE.value,
                "issued_at": now,
                "status_changed_at": now,
            }
            for no, (tech, uid) in new_cards
        ],
    )


def _plan_cards(
    connection: Connection, rows: Sequence[SourceRow], scope: frozenset[int] | None, now: datetime
) -> _Plan:
    check = _Checker()
    seen: dict[str, int] = {}
    wanted: list[tuple[SourceRow, str, tuple[str, str]]] = []
    for row in rows:
        employee_no = check.text(row, "employee_no")
        card = check.card(row, "uid", "tech")
        if card is None and row.get("uid") == "":
            check.add(row, "uid", "blank")
        if card is not None and check.once(seen, row, "uid", card[1]) and employee_no:
            wanted.append((row, employee_no, card))
    holders: dict[str, int] = {}
    for part in chunks(sorted({no for _, no, _ in wanted})):
        holders.update(
            connection.execute(
                select(Member.employee_no, Member.org_unit_id).where(Member.employee_no.in_(part))
            ).all()
        )
    held = _active_cards(connection, [card for _, _, card in wanted])
    new_cards: list[tuple[str, tuple[str, str]]] = []
    unchanged = 0
    for row, employee_no, card in wanted:
        unit_id = holders.get(employee_no)
        if unit_id is None or not _in_scope(scope, unit_id):
            check.add(row, "employee_no", "unknown_member", employee_no)
            continue
        holder = held.get(card)
        if holder is not None and holder[1] != employee_no:
            check.add(row, "uid", "card_taken", card[1], holder[1])
        elif row.line in check.bad_lines:
            continue
        elif holder is None:
            new_cards.append((employee_no, card))
        else:
            unchanged += 1

    def write(connection: Connection, tick: Tick) -> None:
        for start in range(0, len(new_cards), CHUNK_ROWS):
            part = new_cards[start : start + CHUNK_ROWS]
            _insert_cards(connection, part, now)
            tick(len(part))

    return _Plan(check.problems, len(new_cards), 0, unchanged, write)


def _plan(
    connection: Connection,
    kind: ImportKind,
    rows: Sequence[SourceRow],
    *,
    scope: frozenset[int] | None,
    now: datetime,
    zone: tzinfo,
) -> _Plan:
    if kind is ImportKind.ORG_UNITS:
        return _plan_org_units(connection, rows, scope)
    if kind is ImportKind.MEMBERS:
        return _plan_members(connection, rows, scope, now, zone)
    return _plan_cards(connection, rows, scope, now)


def _report(
    kind: ImportKind, rows: Sequence[SourceRow], plan: _Plan, applied: bool
) -> ImportReport:
    problems = tuple(sorted(plan.problems, key=lambda p: p.line))
    return ImportReport(
        kind, len(rows), plan.created, plan.updated, plan.unchanged, problems, applied
    )


# --------------------------------------------------------------------------- use cases


def dry_run(
    uow: UnitOfWork,
    kind: ImportKind,
    rows: Sequence[SourceRow],
    *,
    scope: frozenset[int] | None,
    now: datetime,
    zone: tzinfo,
) -> ImportReport:
    """What importing these rows would do, and every bad row; nothing is written."""
    with uow:
        plan = _plan(uow.session.connection(), kind, rows, scope=scope, now=now, zone=zone)
    return _report(kind, rows, plan, applied=False)


def apply(
    uow: UnitOfWork,
    kind: ImportKind,
    rows: Sequence[SourceRow],
    *,
    actor: str,
    source: str,
    scope: frozenset[int] | None,
    now: datetime,
    zone: tzinfo,
    progress: Progress | None = None,
) -> ImportReport:
    """Import every row in one transaction, audited; if any row is bad, nothing at all."""
    with uow:
        connection = uow.session.connection()
        plan = _plan(connection, kind, rows, scope=scope, now=now, zone=zone)
        if plan.problems:
            return _report(kind, rows, plan, applied=False)
        total = plan.created + plan.updated
        done = 0

        def tick(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(min(done, total), total)

        if total == 0:
            # The same file again: nothing to write, nothing to audit.
            return _report(kind, rows, plan, applied=True)
        plan.write(connection, tick)
        record_audit(
            uow.session,
            actor=actor,
            action=f"import.{kind.value}",
            target=source[:200],
            details={
                "rows": len(rows),
                "created": plan.created,
                "updated": plan.updated,
                "unchanged": plan.unchanged,
            },
            at=now,
        )
        uow.commit()
    if progress is not None:
        progress(total, total)
    return _report(kind, rows, plan, applied=True)
