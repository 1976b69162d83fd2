"""INSERT … ON CONFLICT for the backends we support, chosen by the connection's dialect."""

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from server.errors import StorageError

Insert = postgresql.Insert | sqlite.Insert


def insert_for(connection: Connection, table: Table) -> Insert:
    """An INSERT that supports on_conflict_do_nothing / on_conflict_do_update."""
    name = connection.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise StorageError(f"no INSERT … ON CONFLICT support for the {name} dialect")
