"""Exporting attendance, the points ledger and rankings as CSV or XLSX; every export is audited.

An export names a period (first and last local day, both included) and
optionally an org unit; it covers that unit's subtree, and never more than the
caller's scope (an org admin's subtree). A unit outside the scope is NotFound,
so its existence is not revealed. Exports hold personal data, so each one is
written to the audit chain with who asked, what, and how many rows left.

Text cells that a spreadsheet would run as a formula (=, +, -, @) are written
as text: a member named "=HYPERLINK(…)" must not become a link in Excel.
"""

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Final

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from sqlalchemy import Connection, func, select

from server.audit.chain import record_audit
from server.db import lookups
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    LedgerEntry,
    Member,
    OrgUnit,
    SessionRosterEntry,
)
from server.domain.attendance import AttendanceStatus
from server.domain.points import LedgerSource
from server.errors import DomainError, NotFound
from server.services.rankings import Period, benchmarks, member_ranking
from server.services.settlement import local_midnight
from server.services.unit_of_work import UnitOfWork

MAX_DAYS: Final = 3 * 366

STATUS_LABELS: Final = {
    AttendanceStatus.PRESENT.value: "出席",
    AttendanceStatus.LATE.value: "迟到",
    AttendanceStatus.LEFT_EARLY.value: "早退",
    AttendanceStatus.ABSENT.value: "缺席",
    AttendanceStatus.EXCUSED.value: "请假",
}
SOURCE_LABELS: Final = {
    LedgerSource.ATTENDANCE.value: "签到",
    LedgerSource.ADJUSTMENT.value: "调整",
    LedgerSource.REVERSAL.value: "冲正",
}
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


class ExportKind(StrEnum):
    """What is exported."""

    ATTENDANCE = "attendance"
    POINTS = "points"
    RANKINGS = "rankings"
    BENCHMARKS = "benchmarks"


class ExportFormat(StrEnum):
    """The file format."""

    CSV = "csv"
    XLSX = "xlsx"

    @property
    def media_type(self) -> str:
        """The HTTP content type of a file in this format."""
        if self is ExportFormat.CSV:
            return "text/csv; charset=utf-8"
        return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


Cell = str | int | float | None


@dataclass(frozen=True)
class Table:
    """An export's content before it is written in a format."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[Cell, ...]]


@dataclass(frozen=True)
class ExportRequest:
    """What to export: kind, first and last local day (inclusive), org unit, format."""

    kind: ExportKind
    first_day: date
    last_day: date
    org_unit_code: str | None = None
    format: ExportFormat = ExportFormat.XLSX

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise DomainError(
                f"the last day ({self.last_day}) is before the first ({self.first_day})"
            )
        if (self.last_day - self.first_day).days > MAX_DAYS:
            raise DomainError(f"an export covers at most {MAX_DAYS} days")

    @property
    def period(self) -> Period:
        """The days as a half-open period."""
        return Period(self.first_day, self.last_day + timedelta(days=1))

    @property
    def filename(self) -> str:
        """A file name saying what the file holds (ASCII, safe in any header)."""
        unit = f"-{self.org_unit_code}" if self.org_unit_code else ""
        safe_unit = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in unit)
        return (
            f"rollcall-{self.kind.value}{safe_unit}-{self.first_day:%Y%m%d}-{self.last_day:%Y%m%d}"
            f".{self.format.value}"
        )


@dataclass(frozen=True)
class ExportFile:
    """A finished export."""

    filename: str
    media_type: str
    content: bytes
    rows: int


# --------------------------------------------------------------------------- scope


def _units(
    connection: Connection, org_unit_code: str | None, scope: frozenset[int] | None
) -> frozenset[int] | None:
    """The org units an export covers; None for the whole organisation."""
    if org_unit_code is None:
        return scope
    unit_id = connection.scalar(select(OrgUnit.id).where(OrgUnit.code == org_unit_code))
    if unit_id is None or (scope is not None and unit_id not in scope):
        raise NotFound("org unit", org_unit_code)
    subtree = lookups.org_tree(connection).subtree(unit_id)
    return subtree if scope is None else subtree & scope


def _roots(connection: Connection, units: frozenset[int] | None) -> list[tuple[int, str, str]]:
    """The top units of a set of units (id, code, name), by code."""
    rows = connection.execute(select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.code, OrgUnit.name))
    if units is None:
        top = [(i, c, n) for i, p, c, n in rows if p is None]
    else:
        top = [(i, c, n) for i, p, c, n in rows if i in units and (p is None or p not in units)]
    return sorted(top, key=lambda r: r[1])


def _local(value: datetime | None, zone: tzinfo) -> str:
    return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


# --------------------------------------------------------------------------- tables


def attendance_table(
    connection: Connection, request: ExportRequest, units: frozenset[int] | None, zone: tzinfo
) -> Table:
    """Every attendance record of sessions starting in the period, by session then member."""
    period = request.period
    unit_id = func.coalesce(SessionRosterEntry.org_unit_id, Member.org_unit_id)
    query = (
        select(
            AttendanceSession.starts_at,
            AttendanceSession.title,
            ActivityType.name,
            Member.employee_no,
            Member.name,
            OrgUnit.code,
            OrgUnit.name,
            Attendance.status,
            Attendance.checked_in_at,
            Attendance.checked_out_at,
        )
        .join(AttendanceSession, AttendanceSession.id == Attendance.session_id)
        .join(ActivityType, ActivityType.id == AttendanceSession.activity_type_id)
        .join(Member, Member.id == Attendance.member_id)
        # The unit that expected them at the session, else their unit now (a walk-in).
        .outerjoin(
            SessionRosterEntry,
            (SessionRosterEntry.session_id == Attendance.session_id)
            & (SessionRosterEntry.member_id == Attendance.member_id),
        )
        .join(OrgUnit, OrgUnit.id == unit_id)
        .where(
            AttendanceSession.starts_at >= local_midnight(period.start, zone),
            AttendanceSession.starts_at < local_midnight(period.end, zone),
        )
        .order_by(AttendanceSession.starts_at, AttendanceSession.id, Member.employee_no)
    )
    if units is not None:
        query = query.where(unit_id.in_(sorted(units)))
    rows: list[tuple[Cell, ...]] = [
        (
            _local(starts_at, zone),
            title,
            activity,
            employee_no,
            name,
            unit_code,
            unit_name,
            STATUS_LABELS.get(status, status),
            _local(checked_in, zone),
            _local(checked_out, zone),
        )
        for (
            starts_at,
            title,
            activity,
            employee_no,
            name,
            unit_code,
            unit_name,
            status,
            checked_in,
            checked_out,
        ) in connection.execute(query)
    ]
    return Table(
        "签到记录",
        (
            "开始时间",
            "会议",
            "活动类型",
            "工号",
            "姓名",
            "组织编码",
            "组织",
            "状态",
            "签到时间",
            "签退时间",
        ),
        rows,
    )


def points_table(
    connection: Connection, request: ExportRequest, units: frozenset[int] | None, zone: tzinfo
) -> Table:
    """Every ledger entry made in the period, oldest first, with the member's unit now."""
    period = request.period
    query = (
        select(
            LedgerEntry.id,
            LedgerEntry.created_at,
            Member.employee_no,
            Member.name,
            OrgUnit.code,
            LedgerEntry.amount,
            LedgerEntry.source,
            LedgerEntry.rule_version,
            AttendanceSession.title,
            LedgerEntry.reason,
        )
        .join(Member, Member.id == LedgerEntry.member_id)
        .join(OrgUnit, OrgUnit.id == Member.org_unit_id)
        .outerjoin(Attendance, Attendance.id == LedgerEntry.attendance_id)
        .outerjoin(AttendanceSession, AttendanceSession.id == Attendance.session_id)
        .where(
            LedgerEntry.created_at >= local_midnight(period.start, zone),
            LedgerEntry.created_at < local_midnight(period.end, zone),
        )
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
    )
    if units is not None:
        query = query.where(Member.org_unit_id.in_(sorted(units)))
    rows: list[tuple[Cell, ...]] = [
        (
            entry_id,
            _local(created_at, zone),
            employee_no,
            name,
            unit_code,
            amount,
            SOURCE_LABELS.get(source, source),
            rule_version,
            title or "",
            reason or "",
        )
        for (
            entry_id,
            created_at,
            employee_no,
            name,
            unit_code,
            amount,
            source,
            rule_version,
            title,
            reason,
        ) in connection.execute(query)
    ]
    return Table(
        "积分明细",
        (
            "编号",
            "记账时间",
            "工号",
            "姓名",
            "组织编码",
            "积分",
            "来源",
            "规则版本",
            "会议",
            "原因",
        ),
        rows,
    )


def rankings_table(
    connection: Connection, request: ExportRequest, units: frozenset[int] | None, zone: tzinfo
) -> Table:
    """Member rankings by points in the period, one block per top unit of what is covered."""
    rows: list[tuple[Cell, ...]] = []
    for _, code, name in _roots(connection, units):
        for ranked in member_ranking(connection, code, request.period, zone):
            rows.append((code, name, ranked.rank, ranked.employee_no, ranked.name, ranked.points))
    return Table("积分排名", ("组织编码", "组织", "名次", "工号", "姓名", "积分"), rows)


def benchmarks_table(
    connection: Connection, request: ExportRequest, units: frozenset[int] | None, zone: tzinfo
) -> Table:
    """Branch benchmarks: the units directly under each top unit of what is covered."""
    rows: list[tuple[Cell, ...]] = []
    for _, code, name in _roots(connection, units):
        for branch in benchmarks(connection, code, request.period, zone):
            b = branch.benchmark
            rows.append(
                (
                    code,
                    name,
                    branch.code,
                    branch.name,
                    b.members,
                    round(b.attendance_rate, 4),
                    round(b.fair_attendance_rate, 4),
                    b.attendance_rank,
                    round(b.points_per_member, 2),
                    round(b.fair_points_per_member, 2),
                    b.points_rank,
                )
            )
    return Table(
        "支部对标",
        (
            "上级编码",
            "上级组织",
            "支部编码",
            "支部",
            "人数",
            "应到出勤率",
            "校正出勤率",
            "出勤排名",
            "人均积分",
            "校正人均积分",
            "积分排名",
        ),
        rows,
    )


_TABLES: Final = {
    ExportKind.ATTENDANCE: attendance_table,
    ExportKind.POINTS: points_table,
    ExportKind.RANKINGS: rankings_table,
    ExportKind.BENCHMARKS: benchmarks_table,
}


def build_table(
    connection: Connection, request: ExportRequest, *, scope: frozenset[int] | None, zone: tzinfo
) -> Table:
    """The content of an export, held to `scope` (None: the whole organisation)."""
    units = _units(connection, request.org_unit_code, scope)
    return _TABLES[request.kind](connection, request, units, zone)


# --------------------------------------------------------------------------- formats


def _as_text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def to_csv(table: Table) -> bytes:
    """The table as CSV in UTF-8 with a byte-order mark, so Excel reads the Chinese right."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(table.headers)
    for row in table.rows:
        writer.writerow(
            ["" if v is None else _as_text(v) if isinstance(v, str) else v for v in row]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(table: Table) -> bytes:
    """The table as a one-sheet XLSX workbook; text is always text, never a formula."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(table.title)
    sheet.append(list(table.headers))
    for row in table.rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # openpyxl would take "=…" for a formula
            cells.append(cell)
        sheet.append(cells)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def render(table: Table, format_: ExportFormat) -> bytes:
    """The table written in a format."""
    return to_csv(table) if format_ is ExportFormat.CSV else to_xlsx(table)


# --------------------------------------------------------------------------- use case


def export(
    uow: UnitOfWork,
    request: ExportRequest,
    *,
    actor: str,
    scope: frozenset[int] | None,
    now: datetime,
    zone: tzinfo,
) -> ExportFile:
    """Build an export and record it in the audit chain, in one transaction."""
    with uow:
        table = build_table(uow.session.connection(), request, scope=scope, zone=zone)
        content = render(table, request.format)
        record_audit(
            uow.session,
            actor=actor,
            action=f"export.{request.kind.value}",
            target=request.filename,
            details={
                "kind": request.kind.value,
                "format": request.format.value,
                "from": request.first_day.isoformat(),
                "to": request.last_day.isoformat(),
                "org_unit": request.org_unit_code,
                "rows": len(table.rows),
            },
            at=now,
        )
        uow.commit()
    return ExportFile(request.filename, request.format.media_type, content, len(table.rows))
