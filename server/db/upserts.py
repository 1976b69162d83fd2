"""INSERT … ON CONFLICT for the backends we support, chosen by dialect name."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, CursorResult, Dialect, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.expression import Executable

from server.db.arrays import ArrayLiteral, array_literal, binary_array
from server.errors import StorageError

Insert = postgresql.Insert | sqlite.Insert

# Smaller batches go in as multi-VALUES on PostgreSQL too (see BatchInsert).
UNNEST_FROM_ROWS = 3


def insert_for(dialect: str, table: Table) -> Insert:
    """An INSERT that supports on_conflict_do_nothing / on_conflict_do_update."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise StorageError(f"no INSERT … ON CONFLICT support for the {dialect} dialect")


class BatchInsert:
    """INSERT … ON CONFLICT DO NOTHING [RETURNING] of a batch of rows in one statement.

    On PostgreSQL the rows go in as one array parameter per column:
    `INSERT … SELECT * FROM unnest(CAST(:a AS t[]), …)`. Its text is the same
    whatever the batch size, so psycopg's query cache (statements up to 4 KiB)
    and the server's prepared statements are reused; SQLAlchemy's multi-VALUES
    rendering of a big batch is longer than that and was re-parsed by psycopg
    on every batch. The arrays go in as literals built by `arrays.array_literal`
    (psycopg's text arrays run a regex over every element; its binary ones cost
    about 13 µs each before the first element). A row or two still goes in as
    VALUES (measured for taps with binary arrays: 1 row 183 against 430 µs,
    4 rows 641 against 454, 64 rows 7.3 against 1.3 ms). SQLite keeps the
    multi-VALUES form, which costs it little.

    Every row of a batch must have the same keys; rows go in in the order given,
    which is the order their unique keys are locked in.
    """

    def __init__(
        self,
        dialect: str,
        table: Table,
        conflict: Sequence[str],
        *,
        conflict_where: str | None = None,
        returning: Sequence[str] = (),
    ) -> None:
        self._dialect = dialect
        self._table = table
        self._conflict = tuple(conflict)
        self._conflict_where = conflict_where
        self._returning = tuple(returning)
        self._by_columns: dict[tuple[str, ...], UnnestInsert] = {}
        statement = insert_for(dialect, table).on_conflict_do_nothing(
            index_elements=list(conflict),
            index_where=text(conflict_where) if conflict_where else None,
        )
        self._multi_values: Executable = (
            statement.returning(*(table.c[name] for name in returning)) if returning else statement
        )

    def execute(
        self, connection: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> CursorResult[*tuple[Any, ...]]:
        """Insert `rows`; the result yields the `returning` columns of the rows inserted."""
        if self._dialect != "postgresql" or len(rows) < UNNEST_FROM_ROWS:
            return connection.execute(self._multi_values, list(rows))
        unnest = self.unnest_insert(connection.dialect, tuple(rows[0]))
        return connection.execute(unnest.statement, unnest.arrays.params(connection, rows))

    def unnest_insert(self, dialect: Dialect, columns: tuple[str, ...]) -> "UnnestInsert":
        """The PostgreSQL array form of this INSERT for rows with `columns` (built once)."""
        unnest = self._by_columns.get(columns)
        if unnest is None:
            unnest = self._by_columns[columns] = self._unnest(dialect, columns)
        return unnest

    def _unnest(self, dialect: Dialect, columns: tuple[str, ...]) -> "UnnestInsert":
        quote = dialect.identifier_preparer.quote
        arrays = Arrays.of(dialect, [(name, self._table.c[name]) for name in columns])
        conflict = ", ".join(quote(name) for name in self._conflict)
        where = f" WHERE {self._conflict_where}" if self._conflict_where else ""
        returning = (
            " RETURNING " + ", ".join(quote(name) for name in self._returning)
            if self._returning
            else ""
        )
        into = f"{quote(self._table.name)} ({', '.join(quote(c) for c in columns)})"
        # Names and types come from our table metadata, never from input.
        sql = f"INSERT INTO {into} SELECT * FROM {arrays.sql}"  # noqa: S608
        sql += f" ON CONFLICT ({conflict}){where} DO NOTHING{returning}"
        statement: Executable = text(sql)
        if self._returning:
            # Typed result columns: rows come back converted as from a Core INSERT.
            statement = text(sql).columns(*(self._table.c[name] for name in self._returning))
        return UnnestInsert(sql, statement, arrays)


@dataclass(frozen=True)
class Arrays:
    """`unnest(CAST(:a AS t[]), …)`: rows passed as one array per column (PostgreSQL).

    Each parameter is named after its key in the rows and typed as the column
    given for it; each element gets that column's own bind processing (UTC check,
    JSON, …), as in a plain INSERT. An array goes in as a text literal
    (`array_literal`) for the column types that knows, else in psycopg's binary
    format.
    """

    sql: str
    processors: tuple[tuple[str, Callable[[Any], Any] | None, ArrayLiteral | None], ...]

    @classmethod
    def of(cls, dialect: Dialect, columns: Sequence[tuple[str, Column[Any]]]) -> "Arrays":
        """The unnest over parameters named as the keys, typed as the columns."""
        casts = []
        processors = []
        for name, column in columns:
            casts.append(f"CAST(:{name} AS {column.type.compile(dialect=dialect)}[])")
            processors.append(
                (
                    name,
                    column.type.dialect_impl(dialect).bind_processor(dialect),
                    array_literal(column.type, dialect),
                )
            )
        return cls(f"unnest({', '.join(casts)})", tuple(processors))

    def params(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The array parameters holding `rows`, in their order."""
        params: dict[str, Any] = {}
        for name, process, literal in self.processors:
            values = [row[name] for row in rows]
            if literal is not None:
                params[name] = literal(values)
            else:
                params[name] = binary_array(connection, map(process, values) if process else values)
        return params


@dataclass(frozen=True)
class UnnestInsert:
    """An INSERT … SELECT * FROM unnest(…): its text, as a statement, and its arrays."""

    sql: str
    statement: Executable
    arrays: Arrays
