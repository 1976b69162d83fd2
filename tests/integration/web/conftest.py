"""Fixtures for console tests: a served app on a migrated database with a clock the test moves."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI

from server.api.app import create_app
from server.db.engine import Database
from server.domain.clock import FixedClock
from server.runtime import ServerRuntime
from server.settings import Settings, load_settings
from tests.support.console import Branches, seed_branches
from tests.support.served import ApiClient, served

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, a Monday


@dataclass
class Console:
    """A served console: its HTTP client, database, clock and settings."""

    client: ApiClient
    database: Database
    clock: FixedClock
    settings: Settings
    base_url: str
    app: FastAPI

    def new_client(self) -> ApiClient:
        """Another client of the same server, with its own cookies."""
        other = ApiClient(base_url=self.base_url, timeout=10)
        other.runtime = self.client.runtime
        return other


@pytest.fixture
def clock() -> FixedClock:
    """The server's clock, standing at NOW until the test moves it."""
    return FixedClock(NOW)


def _console(database_url: str, tmp_path: Path, clock: FixedClock) -> Iterator[Console]:
    settings = load_settings(
        database_url=database_url,
        data_dir=tmp_path,
        cookie_secure=False,
        scheduler_enabled=False,
    )
    with ServerRuntime(settings, clock=clock, ingest=False) as runtime:
        app = create_app(settings, runtime=runtime)
        with served(app) as client:
            client.runtime = runtime
            yield Console(client, runtime.database, clock, settings, str(client.base_url), app)


@pytest.fixture
def console(database_url: str, tmp_path: Path, clock: FixedClock) -> Iterator[Console]:
    """The console served on each database backend."""
    yield from _console(database_url, tmp_path, clock)


@pytest.fixture
def sqlite_console(tmp_path: Path, clock: FixedClock) -> Iterator[Console]:
    """The console served on SQLite only (for tests that do not depend on the backend)."""
    yield from _console(f"sqlite:///{tmp_path / 'rollcall.sqlite3'}", tmp_path, clock)


@pytest.fixture
def branches(sqlite_console: Console) -> Branches:
    """Two branches seeded into the SQLite console's database."""
    return seed_branches(sqlite_console.database, NOW)
