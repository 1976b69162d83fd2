"""Statements run on psycopg directly, under a SQLAlchemy connection (PostgreSQL).

For the few statements every ingest batch runs; everything else goes through
SQLAlchemy. `lookups.start_batch` pipelines its reads on the same connection.
"""

from collections.abc import Mapping
from functools import cache
from typing import Any

import psycopg
from sqlalchemy import Connection, Dialect
from sqlalchemy.sql.elements import ClauseElement


def psycopg_of(connection: Connection) -> psycopg.Connection[Any] | None:
    """The psycopg connection under `connection`, or None on another driver."""
    driver = connection.connection.dbapi_connection
    return driver if isinstance(driver, psycopg.Connection) else None


def driver_rows(
    connection: Connection, sql: str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of one statement run on the psycopg connection under `connection` (PostgreSQL).

    `sql` in psycopg's `%(name)s` form (`compiled_sql`). For the few statements
    every batch runs: SQLAlchemy's execution costs about 70 µs of CPU beyond
    psycopg's own per statement (micro-benchmark, a 4-column SELECT: 113 against
    44 µs), mostly building result metadata from psycopg's `cursor.description`,
    which psycopg rebuilds on every access. Values come back as psycopg converts
    them (timestamps in the session's zone: callers wanting UTC convert). An error
    is raised as SQLAlchemy raises it from `execute`, the connection invalidated
    if the database dropped it.
    """
    driver = psycopg_of(connection)
    if driver is None:
        kind = type(connection.connection.dbapi_connection).__name__
        raise TypeError(f"driver_rows needs a psycopg connection, not {kind}")
    try:
        with driver.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    except psycopg.Error as exc:
        # SQLAlchemy's own handling (private, stable since 1.4): wraps the error in
        # its class (OperationalError, IntegrityError, …) and invalidates the
        # connection, and the pool's others, on a disconnect.
        connection._handle_dbapi_exception(exc, sql, params, None, None)


@cache
def compiled_sql(statement: ClauseElement, dialect: Dialect) -> str:
    """A statement's text as psycopg takes it (`%(name)s` parameters), compiled once."""
    return str(statement.compile(dialect=dialect))
