"""A real `rollcall serve` on SQLite with a super admin, and a Chromium page signed in to it.

`console` is a server of the test's own on a fresh database: the import tests count every
member, card and audit entry there is. `scored_console` is one server for the package with
the March scores seeded; its tests only read them (the export adds an audit entry and a
file of its own, which the charts never look at).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from server.db.engine import Database, open_database
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    LedgerEntry,
    Member,
    OrgUnit,
    SessionRosterEntry,
)
from tests.e2e.harness import SqliteCopy, server
from tests.support.console import make_user, sign_in_page

ADMIN = "admin"
STARTS = datetime(2025, 3, 7, 6, 30, tzinfo=UTC)  # 14:30 in Shanghai


@dataclass(frozen=True)
class Console:
    """The served console: its base URL and its database (for setting up and checking)."""

    base_url: str
    database: Database


def seed_scores(database: Database) -> None:
    """Members of two branches and one March session: E1 +3, E2 +2, E3 absent."""
    with database.write_sessions.begin() as db:
        top = OrgUnit(code="C", name="机关党委")
        db.add(top)
        db.flush()
        b1 = OrgUnit(code="B1", name="第一党支部", parent_id=top.id)
        b2 = OrgUnit(code="B2", name="第二党支部", parent_id=top.id)
        kind = ActivityType(code="meeting", name="支部党员大会", default_points=3)
        db.add_all([b1, b2, kind])
        db.flush()
        meeting = AttendanceSession(
            title="三月主题党日",
            activity_type_id=kind.id,
            starts_at=STARTS,
            ends_at=STARTS + timedelta(hours=2),
        )
        people = [
            (Member(employee_no="E1", name="张三", org_unit_id=b1.id, category="正式党员"), 3),
            (Member(employee_no="E2", name="李四", org_unit_id=b2.id, category="正式党员"), 2),
            (Member(employee_no="E3", name="王五", org_unit_id=b1.id, category="正式党员"), 0),
        ]
        db.add_all([meeting, *(p for p, _ in people)])
        db.flush()
        for person, points in people:
            db.add(
                SessionRosterEntry(
                    session_id=meeting.id, member_id=person.id, org_unit_id=person.org_unit_id
                )
            )
            attendance = Attendance(
                member_id=person.id,
                session_id=meeting.id,
                status="present" if points else "absent",
                checked_in_at=STARTS if points else None,
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
                        created_at=STARTS,
                    )
                )


@contextmanager
def _served(
    tmp_path: Path, copy: SqliteCopy, extra_env: dict[str, str], scores: bool
) -> Iterator[Console]:
    url = copy(tmp_path / "rollcall.sqlite3")
    database = open_database(url)
    try:
        make_user(database, ADMIN)
        if scores:
            seed_scores(database)
        env = {"ROLLCALL_DATABASE_URL": url, "ROLLCALL_COOKIE_SECURE": "false", **extra_env}
        with server(tmp_path, env) as (_, http, _):
            yield Console(http, database)
    finally:
        database.dispose()


@pytest.fixture
def console(tmp_path: Path, upgraded_sqlite: SqliteCopy) -> Iterator[Console]:
    """`rollcall serve` on a fresh SQLite database with one super admin."""
    with _served(tmp_path, upgraded_sqlite, {}, scores=False) as served:
        yield served


@pytest.fixture(scope="package")
def scored_console(
    tmp_path_factory: pytest.TempPathFactory, upgraded_sqlite: SqliteCopy
) -> Iterator[Console]:
    """One `rollcall serve` for the package: a super admin and the March scores (seed_scores)."""
    # The scheduler's first pass comes 30 s after start by default: a server per test never
    # saw one, but one shared this long would close the March session and score E3's
    # absence under the rules of the day. Keep it idle, as the tests have always had it.
    idle = {"ROLLCALL_SCHEDULER_INTERVAL_SECONDS": "3600"}
    with _served(tmp_path_factory.mktemp("scored"), upgraded_sqlite, idle, scores=True) as served:
        yield served


@contextmanager
def _signed_in(browser: Any, console: Console) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, locale="zh-CN")
    try:
        signed_in = context.new_page()
        sign_in_page(signed_in, console.base_url, ADMIN)
        yield signed_in
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    """A Chromium page signed in as the super admin to `console`; downloads allowed."""
    with _signed_in(browser, console) as signed_in:
        yield signed_in


@pytest.fixture
def scored_page(browser: Any, scored_console: Console) -> Iterator[Any]:
    """A Chromium page signed in as the super admin to `scored_console`; downloads allowed."""
    with _signed_in(browser, scored_console) as signed_in:
        yield signed_in
