"""Fresh PostgreSQL databases for tests, on the server at 127.0.0.1:5432 by default."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

ADMIN_URL = os.environ.get(
    "ROLLCALL_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _connect_admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}\n"
            "Run `make test` (it installs and starts PostgreSQL) or set "
            "ROLLCALL_TEST_PG_ADMIN_URL to a server where the tests may create databases.",
            pytrace=False,
        )


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, and drop it afterwards."""
    name = f"rollcall_test_{uuid.uuid4().hex[:12]}"
    with _connect_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with _connect_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
