"""HeldConnection: the ingest's transactions on one connection kept between them."""

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from server.db.driver import driver_rows
from server.db.engine import Database, open_database
from server.db.models import OrgUnit
from server.services.unit_of_work import HeldConnection

pytestmark = pytest.mark.integration


def _units(database: Database) -> int:
    with database.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(OrgUnit)) or 0)


def _add_unit(held: HeldConnection, code: str) -> None:
    held.connection().execute(OrgUnit.__table__.insert().values(code=code, name=code))


def _fail_after_adding(held: HeldConnection, code: str) -> None:
    with held:
        _add_unit(held, code)
        raise RuntimeError("boom")


def test_committed_stays_and_the_rest_is_rolled_back(database: Database) -> None:
    held = HeldConnection(database.writer)
    before = _units(database)
    with held:
        _add_unit(held, "KEPT")
        held.commit()
    with pytest.raises(RuntimeError, match="boom"):
        _fail_after_adding(held, "GONE")
    with held:
        _add_unit(held, "NOT-COMMITTED")
    assert _units(database) == before + 1
    held.close()


def test_the_same_connection_serves_every_transaction(database: Database) -> None:
    held = HeldConnection(database.writer)
    with held:
        first = held.connection()
    with held:
        assert held.connection() is first
    held.close()


def test_used_outside_a_transaction_it_says_so(database: Database) -> None:
    held = HeldConnection(database.writer)
    with pytest.raises(RuntimeError, match="no transaction"):
        held.connection()
    with pytest.raises(RuntimeError, match="no transaction"):
        held.commit()
    with held, pytest.raises(RuntimeError, match="already open"):
        held.__enter__()
    held.close()


@pytest.fixture
def pg_held(postgres_url: str) -> Iterator[tuple[Database, HeldConnection]]:
    """A PostgreSQL database and a held connection to it (only a server drops connections)."""
    database = open_database(postgres_url)
    held = HeldConnection(database.writer)
    try:
        yield database, held
    finally:
        held.close()
        database.dispose()


def _drop(database: Database, pid: int) -> None:
    """End the server process behind a connection, as a database restart would."""
    with database.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()


def test_a_connection_the_server_dropped_is_replaced(
    pg_held: tuple[Database, HeldConnection],
) -> None:
    database, held = pg_held
    with held:
        pid = held.connection().scalar(text("SELECT pg_backend_pid()"))
    _drop(database, pid)
    # The first use finds it dead (as a batch would: the worker then retries)...
    with pytest.raises(DBAPIError), held:
        held.connection().execute(text("SELECT 1"))
    # ...and the next transaction runs on a new one.
    with held:
        assert held.connection().scalar(text("SELECT pg_backend_pid()")) != pid
        held.connection().execute(text("CREATE TABLE after_drop (x int)"))
        held.commit()
    with database.engine.connect() as check:
        assert check.scalar(text("SELECT count(*) FROM after_drop")) == 0


def test_driver_rows_raise_as_sqlalchemy_does(pg_held: tuple[Database, HeldConnection]) -> None:
    """Statements run on psycopg directly: errors wrapped, a dropped connection invalidated."""
    database, held = pg_held
    with held:
        assert driver_rows(held.connection(), "SELECT %(a)s::int + 1", {"a": 41}) == [(42,)]
    with pytest.raises(DataError, match="division by zero"), held:
        driver_rows(held.connection(), "SELECT 1 / %(z)s::int", {"z": 0})
    with held:
        pid = driver_rows(held.connection(), "SELECT pg_backend_pid()", {})[0][0]
    _drop(database, pid)
    with pytest.raises(OperationalError) as dropped, held:
        driver_rows(held.connection(), "SELECT 1", {})
    assert dropped.value.connection_invalidated
    with held:
        assert driver_rows(held.connection(), "SELECT 2", {}) == [(2,)]
