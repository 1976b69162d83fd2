"""INSERT … ON CONFLICT for the backends we support, chosen by dialect name."""

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from server.errors import StorageError

Insert = postgresql.Insert | sqlite.Insert


def insert_for(dialect: str, table: Table) -> Insert:
    """An INSERT that supports on_conflict_do_nothing / on_conflict_do_update."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise StorageError(f"no INSERT … ON CONFLICT support for the {dialect} dialect")
