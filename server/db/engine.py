"""Open a database: engine, session factories and the per-backend settings that matter.

SQLite gets WAL (readers never wait for the writer), synchronous=FULL (a
committed tap survives power loss), foreign keys and a busy timeout. Its
write transactions start with BEGIN IMMEDIATE: a deferred transaction that
reads first and writes later can fail at once with "database is locked" when
another writer got in between, and the busy timeout does not help there.
PostgreSQL is reached through psycopg 3.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from server.errors import ConfigError, StorageError

SQLITE_BUSY_TIMEOUT_MS = 10_000
_BEGIN_OPTION = "rollcall_sqlite_begin"


def parse_database_url(url: str) -> URL:
    """Parse an SQLAlchemy URL, choosing psycopg 3 for a bare postgresql:// URL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database_url: cannot parse {url!r}: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"database_url: only sqlite and postgresql are supported, not {url!r}")
    return parsed


def display_url(url: str | URL) -> str:
    """A database URL safe to print: the password removed entirely."""
    parsed = url if isinstance(url, URL) else make_url(url)
    # URL.set() ignores None; SQLAlchemy documents _replace() for clearing a field.
    return parsed._replace(password=None).render_as_string(hide_password=False)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module, which would
    # otherwise open transactions lazily; the "begin" hook below issues BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


@dataclass(frozen=True)
class Database:
    """An open database: the engine and session factories for reading and writing."""

    url: URL
    engine: Engine
    sessions: sessionmaker[Session]
    write_sessions: sessionmaker[Session]
    # What write_sessions are bound to (on SQLite, transactions BEGIN IMMEDIATE).
    writer: Engine

    @property
    def display_url(self) -> str:
        """The URL without its password, for logs and startup lines."""
        return display_url(self.url)

    @property
    def backend(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.url.get_backend_name()

    def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def open_database(url: str, *, echo: bool = False, pre_ping: bool = True) -> Database:
    """Create the engine and session factories for `url` (nothing is connected yet).

    `pre_ping`: check a pooled PostgreSQL connection with a round trip before each
    use, so that a request after a database restart does not fail on a dead one.
    """
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed, echo=echo)
        writer: Engine = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
    else:
        engine = create_engine(parsed, echo=echo, pool_pre_ping=pre_ping)
        writer = engine
    return Database(
        url=parsed,
        engine=engine,
        sessions=sessionmaker(engine, expire_on_commit=False),
        write_sessions=sessionmaker(writer, expire_on_commit=False),
        writer=writer,
    )


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        # Each pooled connection would get its own empty in-memory database.
        raise ConfigError("database_url: SQLite needs a file path, not an in-memory database")
    try:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the directory for {database}: {exc}") from exc
    engine = create_engine(
        url,
        echo=echo,
        # The ingest thread and the HTTP worker threads share the pool.
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine
