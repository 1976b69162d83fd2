"""Fixtures shared by every test: real Mosquitto and PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto
from tests.support.postgres import fresh_database


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running Mosquitto of this test's own, on a free port."""
    broker_dir = tmp_path / "mosquitto"
    broker_dir.mkdir()
    broker = Mosquitto(broker_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, empty PostgreSQL database."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each supported kind in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rollcall.sqlite3'}"
    else:
        with fresh_database() as url:
            yield url
