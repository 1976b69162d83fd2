"""Lists as PostgreSQL array parameters: `= ANY(:ids)` instead of an expanded IN list.

An expanded `IN (:id_1, …, :id_n)` has a different text for every list length,
and past 4 KiB psycopg re-parses it on every execution; `= ANY(:ids)` keeps one
text whatever the length. Lookup lists go in psycopg's binary format (its text
format runs a regex over every element, several times the cost); the columns of
a batch's rows go in as array literals built here (`array_literal`), cheaper
still.
"""

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any
from uuid import UUID

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Dialect,
    Enum,
    Integer,
    LargeBinary,
    String,
    Uuid,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from server.db.driver import psycopg_of


class BinaryArray(list[Any]):
    """A list psycopg sends as a binary array."""


def binary_array(connection: Connection, values: Iterable[Any]) -> BinaryArray:
    """`values` as an array parameter for a statement run on `connection` (PostgreSQL)."""
    driver = psycopg_of(connection)
    if driver is None:
        raise TypeError("binary arrays need a psycopg connection")
    # Per connection, and only a dict lookup once done: only our own list type is affected.
    driver.adapters.register_dumper(BinaryArray, ListBinaryDumper)
    return BinaryArray(values)


# ---- array literals in PostgreSQL's text form, built here
#
# psycopg's binary array dumper costs about 13 µs per parameter before the first
# element (it looks at the list to choose the elements' dumper), and a batch's
# one INSERT statement has 28 arrays: 0.2 ms of a small batch's ~2 ms of CPU.
# Its text dumper runs a regex over every element. A literal joined here from
# each column's values costs a few µs per array and less per element than
# either: micro-benchmark of the taps columns' parameters, binary against text,
# 1 row 201 against 45 µs, 5 rows 261 against 92, 500 rows 6.1 against 5.2 ms.


def _quoted(values: Sequence[str | None]) -> str:
    """`{"a","b",NULL}`: every element quoted, `\\` and `"` escaped."""
    if not values:
        return "{}"
    if None in values:
        return (
            "{"
            + ",".join(
                "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                for v in values
            )
            + "}"
        )
    # Joined on NUL and escaped in one pass; no PostgreSQL text can hold a NUL,
    # and one inside a value would split it into two elements here.
    joined = "\0".join(values)  # type: ignore[arg-type]
    if joined.count("\0") != len(values) - 1:
        raise ValueError("a text value holds a NUL character, which PostgreSQL cannot store")
    if "\\" in joined or '"' in joined:
        joined = joined.replace("\\", "\\\\").replace('"', '\\"')
    return '{"' + joined.replace("\0", '","') + '"}'


def _plain(texts: Iterable[str | None]) -> str:
    """`{1,2,NULL}`: elements whose text needs no quoting (numbers, UUIDs, ISO times)."""
    return "{" + ",".join("NULL" if t is None else t for t in texts) + "}"


def _integers(values: Sequence[int | None]) -> str:
    if None not in values:
        return "{" + ",".join(map(str, values)) + "}"
    return _plain(None if v is None else str(v) for v in values)


_HEX = attrgetter("hex")
_ISOFORMAT: Callable[[datetime], str] = datetime.isoformat


def _uuids(values: Sequence[UUID | None]) -> str:
    # 32 hex digits: PostgreSQL reads a UUID without its hyphens, and `hex` is cheaper.
    if None not in values:
        return "{" + ",".join(map(_HEX, values)) + "}"
    return _plain(None if v is None else v.hex for v in values)


_BOOLEAN_TEXT = {True: "t", False: "f", None: "NULL"}


def _booleans(values: Sequence[bool | None]) -> str:
    return "{" + ",".join(map(_BOOLEAN_TEXT.__getitem__, values)) + "}"


def _json(values: Sequence[Any]) -> str:
    # json.dumps, as SQLAlchemy's JSON type serialises for psycopg.
    if None not in values:
        return _quoted(list(map(json.dumps, values)))
    return _quoted([None if v is None else json.dumps(v) for v in values])


def _bytea(values: Sequence[bytes | None]) -> str:
    # Each element in bytea's hex input form, `\x…` (its backslash escaped by _quoted).
    return _quoted([None if v is None else "\\x" + bytes(v).hex() for v in values])


def _datetimes(process: Callable[[Any], Any] | None) -> Callable[[Sequence[Any]], str]:
    """ISO 8601 with the offset, after the column's own bind processing (UTC check)."""

    def literal(values: Sequence[datetime | None]) -> str:
        done: Sequence[Any] = list(map(process, values)) if process else values
        if None not in done:
            return "{" + ",".join(map(_ISOFORMAT, done)) + "}"
        return _plain(None if v is None else v.isoformat() for v in done)

    return literal


ArrayLiteral = Callable[[Sequence[Any]], str]

# The first that matches wins; Enum, a String, is turned away before these are tried.
_LITERALS: tuple[tuple[type[TypeEngine[Any]], ArrayLiteral], ...] = (
    (Boolean, _booleans),
    (Integer, _integers),
    (Uuid, _uuids),
    (JSON, _json),
    (LargeBinary, _bytea),
    (String, _quoted),
)


def array_literal(column_type: TypeEngine[Any], dialect: Dialect) -> ArrayLiteral | None:
    """How a column's values become one PostgreSQL array literal; None if not known here."""
    if isinstance(column_type, Enum):
        return None  # its values are Python enums; the binary path converts them
    if isinstance(column_type, TypeDecorator):
        if isinstance(column_type.impl_instance, DateTime):
            return _datetimes(column_type.dialect_impl(dialect).bind_processor(dialect))
        return None
    for kind, literal in _LITERALS:
        if isinstance(column_type, kind):
            return literal
    return None
