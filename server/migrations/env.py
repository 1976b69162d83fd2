"""Alembic environment: runs migrations on the connection handed over by server.db.migrate."""

from alembic import context
from sqlalchemy import Connection

from server.db.engine import open_database
from server.db.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=context.config.attributes["url"],
        target_metadata=Base.metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    database = open_database(context.config.attributes["url"])
    try:
        with database.engine.begin() as own_connection:
            _run(own_connection)
    finally:
        database.dispose()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
