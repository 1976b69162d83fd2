"""Run and inspect Alembic migrations without an alembic.ini, from any working directory.

The script location is the `migrations` directory inside this package, found
from this file, so an installed wheel migrates as well as a checkout does.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from server.db.engine import Database
from server.errors import SchemaOutOfDate, StorageError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database: Database) -> Config:
    """An Alembic Config pointing at our migrations and at `database`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Handed over as an attribute, not as sqlalchemy.url: ini interpolation
    # would mangle a password containing '%'.
    config.attributes["url"] = database.url.render_as_string(hide_password=False)
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:
        raise StorageError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(database: Database) -> str | None:
    """The revision the database is at, or None for an empty database."""
    try:
        with database.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read the schema version of {database.display_url}: {exc}"
        ) from exc


def upgrade(database: Database, revision: str = "head") -> str:
    """Migrate the database to `revision` (default: the newest); return the revision reached."""
    config = alembic_config(database)
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except SQLAlchemyError as exc:
        raise StorageError(f"migrating {database.display_url} failed: {exc}") from exc
    reached = current_revision(database)
    return reached or "base"


def downgrade(database: Database, revision: str) -> None:
    """Migrate the database back to `revision` ('base' empties it)."""
    config = alembic_config(database)
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    except SQLAlchemyError as exc:
        raise StorageError(f"downgrading {database.display_url} failed: {exc}") from exc


def ensure_current(database: Database) -> None:
    """Raise SchemaOutOfDate unless the database is at the newest revision."""
    current = current_revision(database)
    head = head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database {database.display_url} is at revision {current or 'none'}, "
            f"the code needs {head}: run `rollcall db upgrade`"
        )
