"""Lists as PostgreSQL array parameters: `= ANY(:ids)` instead of an expanded IN list.

An expanded `IN (:id_1, …, :id_n)` has a different text for every list length,
and past 4 KiB psycopg re-parses it on every execution; `= ANY(:ids)` keeps one
text whatever the length. The arrays go in psycopg's binary format: its text
format runs a regex over every element, several times the cost.
"""

from collections.abc import Iterable
from typing import Any

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Connection


class BinaryArray(list[Any]):
    """A list psycopg sends as a binary array."""


def binary_array(connection: Connection, values: Iterable[Any]) -> BinaryArray:
    """`values` as an array parameter for a statement run on `connection` (PostgreSQL)."""
    driver = connection.connection.driver_connection
    # Per connection, and only a dict lookup once done: only our own list type is affected.
    driver.adapters.register_dumper(BinaryArray, ListBinaryDumper)  # type: ignore[union-attr]
    return BinaryArray(values)
