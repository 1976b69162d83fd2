"""Fresh PostgreSQL databases for tests and benchmarks, on 127.0.0.1:5432 by default."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url

from tests.support import ServiceUnavailable

ADMIN_URL = os.environ.get(
    "ROLLCALL_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _connect_admin(admin_url: str, variable: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(
            f"PostgreSQL is not reachable at {admin_url!r}: {exc}\n"
            "Run `make test` (it installs and starts PostgreSQL) or set "
            f"{variable} to a server where databases may be created."
        ) from exc


@contextmanager
def fresh_database(
    admin_url: str = ADMIN_URL,
    *,
    prefix: str = "rollcall_test",
    variable: str = "ROLLCALL_TEST_PG_ADMIN_URL",
) -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, and drop it afterwards.

    `variable` names the setting that chose `admin_url`, for the message when it is wrong.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _connect_admin(admin_url, variable) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # Through make_url, so that a query (`?host=/var/run/postgresql`: the Unix socket)
    # stays a query rather than becoming part of the database name.
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with _connect_admin(admin_url, variable) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
