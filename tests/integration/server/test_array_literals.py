"""Array literals built by `arrays.array_literal` read back by PostgreSQL as the values given.

Every column type the batch INSERTs use, with generated values: text with
quotes, backslashes, braces, commas, blanks, the word NULL and any Unicode;
None among values; empty lists; bytes of every value; times in any zone.
"""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Integer,
    LargeBinary,
    String,
    Uuid,
    text,
)

from server.db.arrays import array_literal
from server.db.engine import open_database
from server.db.types import UtcDateTime
from server.db.upserts import Arrays
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.integration

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"))
awkward = st.sampled_from(['"', "\\", "{", "}", ",", " ", "NULL", "", '\\"', "a,b", "{}", "\t\n"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
)
# Bounds of a naive range, as hypothesis wants them; each value gets one of the zones.
times = st.datetimes(
    min_value=datetime(1990, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=zones,
)


@pytest.fixture(scope="module")
def connection() -> Iterator[Connection]:
    """One PostgreSQL database for the module (fresh_database says what is missing, if so)."""
    with fresh_database() as url:
        database = open_database(url)
        try:
            with database.engine.connect() as conn:
                yield conn
        finally:
            database.dispose()


def _round_trip(connection: Connection, column: Column[Any], values: list[Any]) -> list[Any]:
    arrays = Arrays.of(connection.dialect, [("v", column)])
    assert arrays.processors[0][2] is not None, "no literal for this type"
    params = arrays.params(connection, [{"v": v} for v in values])
    assert isinstance(params["v"], str)
    # Through unnest, as the batch INSERTs read them, each element typed as the column.
    rows = connection.execute(
        text(f"SELECT x FROM {arrays.sql} WITH ORDINALITY AS p(x, n) ORDER BY n"), params
    )
    return [row[0] for row in rows]


@SETTINGS
@given(values=st.lists(st.none() | texts | awkward, max_size=6))
def test_text(connection: Connection, values: list[str | None]) -> None:
    assert _round_trip(connection, Column("v", String(500)), values) == values


@SETTINGS
@given(values=st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=6))
def test_big_integers(connection: Connection, values: list[int | None]) -> None:
    assert _round_trip(connection, Column("v", BigInteger()), values) == values


@SETTINGS
@given(values=st.lists(st.none() | st.integers(-(2**31), 2**31 - 1), max_size=6))
def test_integers(connection: Connection, values: list[int | None]) -> None:
    assert _round_trip(connection, Column("v", Integer()), values) == values


@SETTINGS
@given(values=st.lists(st.none() | st.booleans(), max_size=6))
def test_booleans(connection: Connection, values: list[bool | None]) -> None:
    assert _round_trip(connection, Column("v", Boolean()), values) == values


@SETTINGS
@given(values=st.lists(st.none() | st.uuids(), max_size=6))
def test_uuids(connection: Connection, values: list[uuid.UUID | None]) -> None:
    assert _round_trip(connection, Column("v", Uuid()), values) == values


@SETTINGS
@given(values=st.lists(st.none() | times, max_size=6))
def test_times_are_stored_as_the_same_instant(
    connection: Connection, values: list[datetime | None]
) -> None:
    back = _round_trip(connection, Column("v", UtcDateTime()), values)
    assert back == values  # aware datetimes compare as instants
    assert all(b is None or b.utcoffset() is not None for b in back)


def test_a_naive_time_is_refused(connection: Connection) -> None:
    with pytest.raises(ValueError, match="naive"):
        _round_trip(connection, Column("v", UtcDateTime()), [datetime(2026, 1, 1)])  # noqa: DTZ001


@SETTINGS
@given(values=st.lists(st.none() | st.binary(max_size=40), max_size=6))
def test_bytes(connection: Connection, values: list[bytes | None]) -> None:
    assert _round_trip(connection, Column("v", LargeBinary()), values) == values


@SETTINGS
@given(values=st.lists(json_values.filter(lambda v: v is not None), max_size=5))
def test_json(connection: Connection, values: list[Any]) -> None:
    back = _round_trip(connection, Column("v", JSON()), values)
    assert back == values
    # Stored as the text SQLAlchemy's JSON type would have sent (the json type keeps it).
    raw = connection.execute(
        text("SELECT x::text FROM unnest(CAST(:v AS JSON[])) AS x"),
        {"v": array_literal(JSON(), connection.dialect)(values)},  # type: ignore[misc]
    ).scalars()
    assert list(raw) == [json.dumps(v) for v in values]


def test_a_nul_in_text_is_refused_not_split(connection: Connection) -> None:
    """Joined on NUL internally: one inside a value must not become a second element."""
    literal = array_literal(String(), connection.dialect)
    assert literal is not None
    with pytest.raises(ValueError, match="NUL"):
        literal(["a\0b", "c"])
