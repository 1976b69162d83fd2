"""Fixtures of the browser tests: one migrated SQLite database to copy, made once per run."""

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.harness import SqliteCopy, upgrade


@pytest.fixture(scope="session")
def upgraded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> SqliteCopy:
    """Copy an SQLite database `rollcall db upgrade` made (once per run) to a path; its URL.

    The upgrade is the same every time, so the tests that only need a fresh, migrated
    database start from a copy of one instead of running the CLI again.
    """
    where = tmp_path_factory.mktemp("upgraded")
    template = where / "template.sqlite3"
    upgrade(f"sqlite:///{template}", where)

    def copy(path: Path) -> str:
        assert not path.exists(), path
        with sqlite3.connect(template) as source, sqlite3.connect(path) as target:
            source.backup(target)
        source.close()
        target.close()
        return f"sqlite:///{path}"

    return copy
