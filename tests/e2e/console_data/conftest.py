"""A real `rollcall serve` on SQLite with a super admin, and a Chromium page signed in to it."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.db.engine import Database, open_database
from tests.e2e.harness import server, upgrade
from tests.support.console import make_user, sign_in_page

ADMIN = "admin"


@dataclass(frozen=True)
class Console:
    """The served console: its base URL and its database (for setting up and checking)."""

    base_url: str
    database: Database


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    """`rollcall serve` on a fresh SQLite database with one super admin."""
    url = f"sqlite:///{tmp_path / 'rollcall.sqlite3'}"
    upgrade(url, tmp_path)
    database = open_database(url)
    try:
        make_user(database, ADMIN)
        env = {"ROLLCALL_DATABASE_URL": url, "ROLLCALL_COOKIE_SECURE": "false"}
        with server(tmp_path, env) as (_, http, _):
            yield Console(http, database)
    finally:
        database.dispose()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    """A Chromium page signed in as the super admin; downloads allowed."""
    context = browser.new_context(accept_downloads=True, locale="zh-CN")
    try:
        signed_in = context.new_page()
        sign_in_page(signed_in, console.base_url, ADMIN)
        yield signed_in
    finally:
        context.close()
