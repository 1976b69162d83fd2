"""Report queries at size: 10,000 members and 1,000,000 taps, timed on PostgreSQL and SQLite.

Usage: python -m bench.reports [--db postgresql|sqlite] [--taps 1000000] [--runs 7]

Loads a year of organisational life into a fresh, migrated database: 10
committees × 10 branches × 100 members, each branch with five sessions a month
in its own room, the roster of every session frozen, attendance for every
session before the reference day (present, late, excused or absent), a ledger
credit for every attended one, and taps: the accepted first taps plus repeats
and kiosk taps up to the number asked for. PostgreSQL is loaded with COPY,
SQLite with big executemany batches, then both are ANALYZEd.

Then it times, median of --runs after one warm-up run:
- the monthly ranking of the whole organisation and of one branch
  (server.services.rankings.member_ranking);
- a branch's quarterly attendance matrix (server.services.reports);
- a kiosk lookup: the card's holder, their points this month, quarter and year,
  their rank in their branch this month, their last five attendances and the
  next five sessions open to them.
On PostgreSQL every statement of each timed call is also run under EXPLAIN
(ANALYZE, BUFFERS). Prints a table and writes reports-<db>.json.
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.types.json import Json
from sqlalchemy import Connection, Engine, create_engine, event, insert, or_, select
from sqlalchemy import text as sql_text

from bench import services
from server.db import lookups
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    Card,
    LedgerEntry,
    Member,
    OrgUnit,
    Reader,
    Room,
    SessionAudience,
    SessionRoom,
    SessionRosterEntry,
    TapRecord,
    table_of,
)
from server.services import rankings, reports

ZONE = ZoneInfo("Asia/Shanghai")
YEAR = 2026
TODAY = datetime(YEAR, 10, 15, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
COMMITTEES, BRANCHES, MEMBERS = 10, 10, 100
SESSIONS_PER_MONTH = 5
STATUSES = (("present", 0.85), ("late", 0.05), ("excused", 0.03), ("absent", 0.07))
POINTS = {"present": 2, "late": 1}


# --------------------------------------------------------------------------- loading


class Loader:
    """Writes rows to one table: COPY on PostgreSQL, executemany batches on SQLite."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgresql = engine.dialect.name == "postgresql"

    def load(self, model: type[Any], columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
        """Insert `rows` (tuples in `columns` order) into the model's table; return the count."""
        table = table_of(model)
        count = 0
        if self.postgresql:
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                names = ", ".join(columns)
                with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for row in rows:
                        copy.write_row([Json(v) if isinstance(v, dict) else v for v in row])
                        count += 1
                raw.commit()
            finally:
                raw.close()
            return count
        statement = insert(table)
        with self.engine.begin() as connection:
            batch: list[dict[str, Any]] = []
            for row in rows:
                batch.append(dict(zip(columns, row, strict=True)))
                if len(batch) == 20_000:
                    connection.execute(statement, batch)
                    count += len(batch)
                    batch = []
            if batch:
                connection.execute(statement, batch)
                count += len(batch)
        return count


def session_times(branch: int, month: int, k: int) -> datetime:
    """When a branch's k-th session of a month starts (local afternoons, spread over days)."""
    day = 2 + (k * 5 + branch) % 25
    local = datetime(YEAR, month, day, 14 + k % 3, 0, tzinfo=ZONE)
    return local.astimezone(UTC)


def load(database_url: str, taps_wanted: int) -> dict[str, Any]:
    """Load the organisation, sessions, rosters, attendance, ledger and taps."""
    rng = random.Random(8)
    engine = create_engine(database_url)
    loader = Loader(engine)
    counts: dict[str, int] = {}
    started = time.monotonic()
    now = TODAY
    # Small tables through Core, with explicit ids.
    with engine.begin() as c:
        c.execute(
            insert(table_of(OrgUnit)),
            [{"id": 1, "parent_id": None, "code": "ROOT", "name": "党委"}],
        )
        units = []
        for ci in range(COMMITTEES):
            units.append(
                {"id": 2 + ci, "parent_id": 1, "code": f"C{ci:02d}", "name": f"第{ci + 1}总支"}
            )
        for ci in range(COMMITTEES):
            for bi in range(BRANCHES):
                b = ci * BRANCHES + bi
                units.append(
                    {
                        "id": 100 + b,
                        "parent_id": 2 + ci,
                        "code": f"C{ci:02d}B{bi:02d}",
                        "name": f"第{b + 1}支部",
                    }
                )
        c.execute(insert(table_of(OrgUnit)), units)
        c.execute(
            insert(table_of(ActivityType)),
            [{"id": 1, "code": "branch_meeting", "name": "支部党员大会", "default_points": 2}],
        )
        branches = COMMITTEES * BRANCHES
        c.execute(
            insert(table_of(Room)),
            [{"id": 1 + b, "code": f"R{b:03d}", "name": f"会议室{b + 1}"} for b in range(branches)],
        )
        c.execute(
            insert(table_of(Reader)),
            [
                {"id": 1 + b, "reader_id": f"reader-{b:03d}", "room_id": 1 + b, "mode": "checkin"}
                for b in range(branches)
            ],
        )
    branches = COMMITTEES * BRANCHES
    member_ids = [[1 + b * MEMBERS + i for i in range(MEMBERS)] for b in range(branches)]
    counts["members"] = loader.load(
        Member,
        ["id", "employee_no", "name", "org_unit_id", "category", "created_at"],
        (
            (m, f"E{m:06d}", f"成员{m:05d}", 100 + b, "正式党员", now)
            for b in range(branches)
            for m in member_ids[b]
        ),
    )
    counts["cards"] = loader.load(
        Card,
        ["id", "tech", "uid", "member_id", "status", "issued_at"],
        (
            (m, "iso14443a", f"04{m:08X}", m, "active", now)
            for b in range(branches)
            for m in member_ids[b]
        ),
    )
    # Sessions: five a month per branch, the whole year.
    sessions: list[tuple[int, int, datetime]] = []  # (id, branch, starts_at)
    for b in range(branches):
        for month in range(1, 13):
            for k in range(SESSIONS_PER_MONTH):
                sessions.append((len(sessions) + 1, b, session_times(b, month, k)))
    counts["sessions"] = loader.load(
        AttendanceSession,
        [
            "id",
            "title",
            "activity_type_id",
            "starts_at",
            "ends_at",
            "checkin_open_minutes",
            "late_grace_minutes",
            "allow_walk_in",
            "created_at",
            "requires_checkout",
            "min_stay_minutes",
            "roster_frozen_at",
            "closed_at",
        ],
        (
            (
                sid,
                f"第{b + 1}支部 {start.astimezone(ZONE):%m月%d日} 党员大会",
                1,
                start,
                start + timedelta(hours=2),
                30,
                5,
                True,
                start - timedelta(days=7),
                False,
                0,
                start if start < now else None,
                start + timedelta(hours=3) if start < now else None,
            )
            for sid, b, start in sessions
        ),
    )
    counts["session_rooms"] = loader.load(
        SessionRoom, ["session_id", "room_id"], ((sid, 1 + b) for sid, b, _ in sessions)
    )
    counts["session_audience"] = loader.load(
        SessionAudience,
        ["id", "session_id", "org_unit_id"],
        ((sid, sid, 100 + b) for sid, b, _ in sessions),
    )
    counts["session_roster"] = loader.load(
        SessionRosterEntry,
        ["session_id", "member_id", "org_unit_id"],
        ((sid, m, 100 + b) for sid, b, start in sessions if start < now for m in member_ids[b]),
    )
    # Attendance of every past session, with the first tap's id and a credit per attended one.
    weights = [w for _, w in STATUSES]
    names = [s for s, _ in STATUSES]
    attendance: list[tuple[Any, ...]] = []
    ledger: list[tuple[Any, ...]] = []
    taps: list[tuple[Any, ...]] = []
    for sid, b, start in sessions:
        if start >= now:
            continue
        for m in member_ids[b]:
            status = rng.choices(names, weights)[0]
            aid = len(attendance) + 1
            tap_id = None
            at = None
            if status in POINTS:
                at = start + timedelta(
                    minutes=rng.randint(-20, -1) if status == "present" else rng.randint(6, 40)
                )
                tap_id = len(taps) + 1
                points = POINTS[status]
                taps.append(_tap(tap_id, b, m, at, "accepted", points, sid))
                ledger.append((len(ledger) + 1, m, points, "attendance", "2026-01", aid, 0, at))
            attendance.append((aid, m, sid, status, tap_id, at, at or start + timedelta(hours=3)))
    # Repeats (answered duplicate) and kiosk taps fill up to the number asked for.
    accepted = len(taps)
    while len(taps) < taps_wanted:
        tap_id = len(taps) + 1
        source = taps[rng.randrange(accepted)]
        _, _, reader_id, _, _, _, uid, occurred, *_ = source
        b = int(reader_id.split("-")[1])
        m = int(uid[2:], 16)
        if rng.random() < 0.8:
            taps.append(
                _tap(
                    tap_id,
                    b,
                    m,
                    occurred + timedelta(seconds=rng.randint(1, 300)),
                    "duplicate",
                    0,
                    source[13],
                )
            )
        else:
            taps.append(
                _tap(
                    tap_id,
                    b,
                    m,
                    occurred - timedelta(days=rng.randint(1, 5)),
                    "accepted",
                    0,
                    None,
                    "kiosk",
                )
            )
    counts["taps"] = loader.load(TapRecord, TAP_COLUMNS, iter(taps))
    counts["attendance"] = loader.load(
        Attendance,
        ["id", "member_id", "session_id", "status", "first_tap_id", "checked_in_at", "created_at"],
        iter(attendance),
    )
    counts["points_ledger"] = loader.load(
        LedgerEntry,
        [
            "id",
            "member_id",
            "amount",
            "source",
            "rule_version",
            "attendance_id",
            "credit_seq",
            "created_at",
        ],
        iter(ledger),
    )
    with engine.begin() as c:
        if loader.postgresql:
            # Explicit ids were loaded: move the sequences past them.
            for table in (
                "org_units",
                "members",
                "cards",
                "sessions",
                "session_audience",
                "taps",
                "attendance",
                "points_ledger",
                "rooms",
                "readers",
                "activity_types",
            ):
                c.execute(
                    sql_text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT max(id) FROM {table}))"
                    )
                )
        c.execute(sql_text("ANALYZE"))
    engine.dispose()
    counts["load_seconds"] = round(time.monotonic() - started, 1)
    return counts


TAP_COLUMNS = [
    "id",
    "event_id",
    "reader_id",
    "boot_id",
    "seq",
    "card_tech",
    "card_uid",
    "occurred_at",
    "received_at",
    "clock_synced",
    "mode",
    "result",
    "points",
    "session_id",
    "member_id",
    "card_id",
    "display",
    "flagged",
]
_BOOT = uuid.UUID(int=8)


def _tap(  # noqa: PLR0917 - one tap row's facts, in column order
    tap_id: int,
    branch: int,
    member: int,
    at: datetime,
    result: str,
    points: int,
    session_id: int | None,
    mode: str = "checkin",
) -> tuple[Any, ...]:
    display = {"title": "签到成功" if points else "重复签到", "lines": [f"成员{member:05d}"]}
    return (
        tap_id,
        uuid.UUID(int=tap_id),
        f"reader-{branch:03d}",
        _BOOT,
        tap_id,
        "iso14443a",
        f"04{member:08X}",
        at,
        at,
        True,
        mode,
        result,
        points,
        session_id,
        member,
        member,
        display,
        False,
    )


# --------------------------------------------------------------------------- timing


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Record every statement (with its parameters) the engine executes inside the block."""
    statements: list[tuple[str, Any]] = []

    def record(  # noqa: PLR0917 - SQLAlchemy's event signature
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def kiosk_lookup(connection: Connection, uid: str) -> dict[str, Any]:
    """What a kiosk shows the holder of card `uid` (the queries of server/kiosk's view)."""
    card = lookups.cards_by_key(connection, [("iso14443a", uid)])[("iso14443a", uid)]
    local = TODAY.astimezone(ZONE).date()
    month = rankings.Period.month(local.year, local.month)
    quarter = rankings.Period.quarter(f"{local.year}Q{(local.month - 1) // 3 + 1}")
    year = rankings.Period(date(local.year, 1, 1), date(local.year + 1, 1, 1))
    points = {
        name: rankings._points(connection, [card.member_id], period, ZONE).get(card.member_id, 0)
        for name, period in (("month", month), ("quarter", quarter), ("year", year))
    }
    branch = connection.execute(
        select(OrgUnit.code).where(OrgUnit.id == card.org_unit_id)
    ).scalar_one()
    ranking = rankings.member_ranking(connection, branch, month, ZONE)
    rank = next(r.rank for r in ranking if r.name == card.member_name)
    recent = connection.execute(
        select(AttendanceSession.title, AttendanceSession.starts_at, Attendance.status)
        .join(AttendanceSession, AttendanceSession.id == Attendance.session_id)
        .where(Attendance.member_id == card.member_id)
        .order_by(AttendanceSession.starts_at.desc())
        .limit(5)
    ).all()
    path = lookups.org_tree(connection).path_to_root(card.org_unit_id)
    upcoming = connection.execute(
        select(AttendanceSession.title, AttendanceSession.starts_at)
        .join(SessionAudience, SessionAudience.session_id == AttendanceSession.id)
        .where(
            AttendanceSession.starts_at >= TODAY,
            AttendanceSession.cancelled_at.is_(None),
            or_(SessionAudience.org_unit_id.in_(path), SessionAudience.member_id == card.member_id),
        )
        .order_by(AttendanceSession.starts_at)
        .limit(5)
    ).all()
    return {
        "points": points,
        "rank": rank,
        "of": len(ranking),
        "recent": len(recent),
        "upcoming": len(upcoming),
    }


def timed(
    engine: Engine, name: str, call: Callable[[Connection], Any], runs: int
) -> dict[str, Any]:
    """Median wall time of `call` over `runs` (after one warm-up), and its statements' plans."""
    times = []
    with engine.connect() as connection:
        call(connection)  # warm-up: caches, and the statements to explain
        for _ in range(runs):
            t = time.perf_counter()
            call(connection)
            times.append((time.perf_counter() - t) * 1000)
        with captured(engine) as statements:
            result = call(connection)
        plans = []
        if engine.dialect.name == "postgresql":
            raw = connection.connection.driver_connection
            for statement, params in statements:
                cursor = raw.cursor()  # type: ignore[union-attr]
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                lines = [row[0] for row in cursor.fetchall()]
                plans.append({"sql": " ".join(statement.split())[:300], "plan": lines})
        connection.rollback()
    summary = {
        "name": name,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "statements": len(statements),
        "result": _summary(result),
        "plans": plans,
    }
    print(
        f"  {name:<34} median {summary['median_ms']:8.1f} ms  (min {summary['min_ms']:.1f}, "
        f"max {summary['max_ms']:.1f})  {summary['statements']} statements",
        flush=True,
    )
    return summary


def _summary(result: Any) -> Any:
    if isinstance(result, list):
        return {"rows": len(result)}
    if isinstance(result, reports.AttendanceMatrix):
        return {
            "members": len(result.members),
            "sessions": len(result.sessions),
            "cells": len(result.cells),
        }
    return result


def run(kind: str, taps: int, runs: int, workdir: Path) -> dict[str, Any]:
    """Load and time one database."""
    with services.database(kind, workdir) as url:
        services.upgrade(url, workdir)
        counts = load(url, taps)
        print(f"  loaded {counts}", flush=True)
        engine = create_engine(url)
        try:
            month = rankings.Period.month(YEAR, 9)
            results = [
                timed(
                    engine,
                    "monthly ranking, whole org (10k)",
                    lambda c: rankings.member_ranking(c, "ROOT", month, ZONE),
                    runs,
                ),
                timed(
                    engine,
                    "monthly ranking, one branch",
                    lambda c: rankings.member_ranking(c, "C03B04", month, ZONE),
                    runs,
                ),
                timed(
                    engine,
                    "quarterly matrix, one branch",
                    lambda c: reports.attendance_matrix(
                        c, "C03B04", rankings.Period.quarter(f"{YEAR}Q3"), ZONE
                    ),
                    runs,
                ),
                timed(engine, "kiosk lookup", lambda c: kiosk_lookup(c, f"04{4321:08X}"), runs),
            ]
        finally:
            engine.dispose()
    return {"db": kind, "counts": counts, "queries": results}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load, time, print and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--taps", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"reports: {args.db}, {args.taps} taps", flush=True)
    with tempfile.TemporaryDirectory(prefix="reports-", dir=args.out) as tmp:
        report = run(args.db, args.taps, args.runs, Path(tmp))
    path = args.out / f"reports-{args.db}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    print(f"reports: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
