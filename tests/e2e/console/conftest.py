"""`rollcall serve` on SQLite with two branches, a closed session and an unknown card.

One server process and its seeded data serve the whole module: each test changes only
what no other test reads (a leave for A002 in branch A's session, the unknown card bound
to B002, its own cookies), and signs in with a browser context of its own.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.db.engine import Database, open_database
from server.services.sessions import close
from server.services.unit_of_work import UnitOfWork
from tests.e2e.harness import SqliteCopy, server
from tests.support.console import Branches, make_user, seed_branches, sign_in_page

ADMIN = "secretary"


@dataclass(frozen=True)
class Served:
    """The served console: base URL, database and what was seeded."""

    base_url: str
    database: Database
    branches: Branches


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, upgraded_sqlite: SqliteCopy
) -> Iterator[Served]:
    """A real server process; branch A's session ended an hour ago and is closed."""
    tmp_path = tmp_path_factory.mktemp("console")
    url = upgraded_sqlite(tmp_path / "rollcall.sqlite3")
    database = open_database(url)
    try:
        now = datetime.now(UTC)
        branches = seed_branches(database, now - timedelta(hours=3))
        close(
            UnitOfWork(database.write_sessions),
            branches.session_a,
            now,
            ZoneInfo("Asia/Shanghai"),
            grace=timedelta(0),
        )
        make_user(database, ADMIN)
        env = {
            "ROLLCALL_DATABASE_URL": url,
            "ROLLCALL_COOKIE_SECURE": "false",
            # The scheduler's first pass comes one interval after start (30 s by default):
            # a server per test never saw one. Shared by the module, it would close branch
            # B's and everyone's sessions (they ended an hour ago) midway; keep it idle.
            "ROLLCALL_SCHEDULER_INTERVAL_SECONDS": "3600",
        }
        with server(tmp_path, env) as (_, http, _):
            yield Served(http, database, branches)
    finally:
        database.dispose()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (its own cookies)."""
    made = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def page(context: Any, served: Served) -> Any:
    """A page signed in as the secretary (a super admin)."""
    signed_in = context.new_page()
    sign_in_page(signed_in, served.base_url, ADMIN)
    return signed_in
