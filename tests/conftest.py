"""Fixtures shared by every test: real Mosquitto, PostgreSQL and headless Chromium."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServiceUnavailable
from tests.support.browser import chromium
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import fresh_database


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test`'s two pytest-xdist processes: the PC/SC tests all in one of them.

    There is one /run/pcscd per machine, so those tests take a machine-wide lock
    (tests/integration/pcsc/pcscd.py) that the session pcscd of one process would
    hold until its last test, stalling the other's PC/SC tests. (xdist's own
    `--dist loadgroup` cannot do this with pytest 9.2: it renames `item._nodeid`,
    which pytest no longer reads.) Every other test is scheduled on its own.
    The scope is xdist's private `_split_scope`, checked to exist.
    """
    from xdist.scheduler import LoadScopeScheduling

    if not callable(getattr(LoadScopeScheduling, "_split_scope", None)):
        # A private method; without it the override below would silently do nothing.
        raise pytest.UsageError(
            "this pytest-xdist has no LoadScopeScheduling._split_scope: keep the PC/SC tests "
            "together another way, or run `make test TEST_PROCESSES=1`"
        )

    class PcscTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "pcsc" if "/pcsc/" in path or "/test_pcsc" in path else nodeid

    return PcscTogether(config, log)


@contextmanager
def _required() -> Iterator[None]:
    """Fail the test, without a traceback, with the message of a service that is missing."""
    try:
        yield
    except ServiceUnavailable as exc:
        # `from None`: the message says it all; the chained traceback would repeat it.
        raise pytest.fail.Exception(str(exc), pytrace=False) from None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running Mosquitto of this test's own, on a free port."""
    broker_dir = tmp_path / "mosquitto"
    broker_dir.mkdir()
    with _required():
        broker = Mosquitto(broker_dir)
        broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, empty PostgreSQL database."""
    with _required(), fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each supported kind in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rollcall.sqlite3'}"
    else:
        with _required(), fresh_database() as url:
            yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium (Playwright `Browser`) for the whole run."""
    with _required(), chromium() as running:
        yield running
