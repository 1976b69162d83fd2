"""The ingest's reference cache on both backends: kept while nothing changes, never stale.

Every change below is made the way another process makes it (its own
connection and commit, not through the cache), and the very next batch must
see it.
"""

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import delete, event, func, insert, select, text, update

from protocol import AckResult, TapMode
from protocol.signing import sign
from server.db import lookups
from server.db.engine import Database
from server.db.models import (
    ActivityType,
    AttendanceSession,
    Base,
    Reader,
    Room,
    SessionRoom,
    StrongTierRoom,
    table_of,
)
from server.ingest.inbound import tap_submission
from server.migrations.versions import r0009_reference_generation as migration
from server.sample import MinimalSeed, TapBuilder
from server.services.reference import (
    TOUCH_INTERVAL,
    WATCHED_TABLES,
    ReferenceCache,
    expected_triggers,
    triggers_present,
)
from server.services.taps import Outcome, Submission, record_taps
from server.services.unit_of_work import UnitOfWork


def record(database: Database, cache: ReferenceCache, *batch: Submission) -> list[Outcome]:
    return record_taps(UnitOfWork(database.write_sessions), list(batch), reference=cache)


def generation(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT generation FROM reference_generation")).scalar_one())


def change(database: Database, statement: Any) -> None:
    with database.engine.begin() as conn:
        conn.execute(statement)


def move_reader(database: Database, reader_id: str, room_id: int) -> None:
    readers = table_of(Reader)
    change(
        database, update(readers).where(readers.c.reader_id == reader_id).values(room_id=room_id)
    )


@pytest.fixture
def statements(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQL statements run from here on, through SQLAlchemy or psycopg directly."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    # lookups.start_batch and driver.driver_rows run theirs on psycopg's cursors
    # themselves; SQLAlchemy's go through them too (seen twice, which sets ignore).
    direct = psycopg.Cursor.execute

    def execute(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(query))
        return direct(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    event.listen(database.engine, "before_cursor_execute", listen)
    yield seen
    event.remove(database.engine, "before_cursor_execute", listen)


def add_session(
    database: Database, seeded: MinimalSeed, room_id: int, starts_at: datetime, title: str
) -> int:
    """A one-hour session in a room, as the console would add it; its id."""
    with database.write_sessions.begin() as db:
        session = AttendanceSession(
            title=title,
            activity_type_id=seeded.activity_type_id,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(hours=1),
        )
        db.add(session)
        db.flush()
        db.add(SessionRoom(session_id=session.id, room_id=room_id))
        return session.id


def other_room_session(database: Database, seeded: MinimalSeed, name: str) -> tuple[int, int]:
    """A second room with its own session at the same time; (room id, session id)."""
    with database.write_sessions.begin() as db:
        room = Room(code=f"R-{name}", name=name)
        db.add(room)
        db.flush()
        room_id = room.id
    return room_id, add_session(database, seeded, room_id, seeded.starts_at, f"{name}的会")


def test_the_migration_watches_exactly_the_tables_the_cache_relies_on(database: Database) -> None:
    assert set(migration.WATCHED) == set(WATCHED_TABLES)
    with database.engine.connect() as conn:
        assert triggers_present(conn)


def test_reference_changes_raise_the_generation_and_tap_bookkeeping_does_not(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    readers = table_of(Reader)
    start = generation(database)

    # What every batch writes to readers: last seen, skew, signing position.
    record(database, ReferenceCache(), taps.received())
    change(
        database,
        update(readers)
        .where(readers.c.reader_id == seeded.reader_id)
        .values(last_seen_at=func.now(), skew_seconds=1.5, last_seq=99),
    )
    assert generation(database) == start

    change(
        database,
        update(readers).where(readers.c.reader_id == seeded.reader_id).values(mode="kiosk"),
    )
    assert generation(database) == start + 1
    change(database, update(table_of(ActivityType)).values(default_points=7))
    assert generation(database) == start + 2


def test_a_quiet_batch_reads_only_the_generation_cards_and_attendance(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, statements: list[str]
) -> None:
    cache = ReferenceCache()
    record(database, cache, taps.received())
    statements.clear()

    [outcome] = record(database, cache, taps.received())  # the same card again

    assert outcome.result is AckResult.DUPLICATE
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # Tables, not set-returning functions (unnest(…)) nor LATERAL subqueries.
    named = r"\b(?:FROM|JOIN)\s+(?!LATERAL\b)(\w+)\b(?!\s*\()"
    tables = {t.lower() for s in reads for t in re.findall(named, s, re.IGNORECASE)}
    assert tables == {"reference_generation", "cards", "members", "attendance"}, reads
    assert "reference_generation" in reads[0]


@pytest.fixture
def attendance_reads(monkeypatch: pytest.MonkeyPatch) -> list[set[tuple[int, int]]]:
    """The (member, session) pairs of each attendance read made after the taps were resolved."""
    asked: list[set[tuple[int, int]]] = []
    real = lookups.attendance_for

    def attendance_for(connection: Any, pairs: Any) -> Any:
        asked.append(set(pairs))
        return real(connection, pairs)

    monkeypatch.setattr(lookups, "attendance_for", attendance_for)
    return asked


def test_a_warm_batch_reads_its_attendance_with_its_cards(
    database: Database,
    seeded: MinimalSeed,
    taps: TapBuilder,
    attendance_reads: list[set[tuple[int, int]]],
) -> None:
    cache = ReferenceCache()
    [first] = record(database, cache, taps.received())  # checks in; keeps the session
    attendance_reads.clear()

    [again] = record(database, cache, taps.received())
    [out] = record(database, cache, taps.received(mode=TapMode.CHECKOUT))
    [out_again] = record(database, cache, taps.received(mode=TapMode.CHECKOUT))

    assert first.result is AckResult.ACCEPTED
    assert [again.result, out.result, out_again.result] == [
        AckResult.DUPLICATE,
        AckResult.ACCEPTED,
        AckResult.DUPLICATE,
    ]
    if database.engine.dialect.name == "postgresql":
        assert attendance_reads == []  # each came in the batch's first round trip
    else:
        assert attendance_reads == [{(seeded.member_id, seeded.session_id)}] * 3


def test_a_session_the_cache_did_not_hold_has_its_attendance_read_after_resolving(
    database: Database,
    seeded: MinimalSeed,
    taps: TapBuilder,
    attendance_reads: list[set[tuple[int, int]]],
) -> None:
    cache = ReferenceCache()
    room_id, session_id = other_room_session(database, seeded, "二号会议室")
    record(database, cache, taps.received())  # keeps the first room's session only
    move_reader(database, seeded.reader_id, room_id)
    # Another worker checks the member in to the second room's session.
    [elsewhere] = record(database, ReferenceCache(), taps.received())
    assert (elsewhere.result, elsewhere.session_id) == (AckResult.ACCEPTED, session_id)
    attendance_reads.clear()

    # Begun with the first room's session in mind; resolved to the second's.
    [out] = record(database, cache, taps.received(mode=TapMode.CHECKOUT))

    assert (out.result, out.session_id) == (AckResult.ACCEPTED, session_id)
    assert attendance_reads == [{(seeded.member_id, session_id)}]


def test_a_batch_start_reads_the_attendance_asked_for_with_the_cards(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    _, other_session = other_room_session(database, seeded, "二号会议室")
    record(database, ReferenceCache(), taps.received())  # attendance in the seeded session
    card = (seeded.card_tech.value, seeded.card_uid)
    asked = {(*card, seeded.session_id), (*card, other_session), ("iso14443a", "FFFF", 1)}
    with database.engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            assert lookups.start_batch(conn, [card], asked) is None
            return
        # Each leaves its transaction open on the driver, behind SQLAlchemy's back.
        driver = conn.connection.driver_connection
        assert driver is not None
        both = lookups.start_batch(conn, [card], asked)
        driver.rollback()
        none = lookups.start_batch(conn, [card])
        driver.rollback()
    assert both is not None
    assert both.attendance_asked == asked
    assert list(both.attendance) == [(seeded.member_id, seeded.session_id)]
    assert both.attendance[(seeded.member_id, seeded.session_id)].checked_in_at is not None
    assert none is not None
    assert (none.attendance_asked, none.attendance) == (frozenset(), {})


def test_a_batch_start_that_fails_rolls_back_and_leaves_reading_one_by_one(
    database: Database,
    seeded: MinimalSeed,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = [(seeded.card_tech.value, seeded.card_uid)]
    with database.engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            assert lookups.start_batch(conn, keys) is None  # SQLite: one by one
            return
        conn.exec_driver_sql("ALTER TABLE reference_generation RENAME TO kept_aside")
        conn.commit()
        monkeypatch.setattr(lookups, "_PIPELINE_FAILURES", set())
        try:
            with caplog.at_level(logging.WARNING, logger=lookups.__name__):
                assert lookups.start_batch(conn, keys) is None
                # Rolled back: the connection takes statements again.
                assert conn.exec_driver_sql("SELECT count(*) FROM cards").scalar() == 1
                conn.rollback()
                assert lookups.start_batch(conn, keys) is None
                conn.rollback()
            # Said, with its cause, once however many batches it costs.
            said = [r.getMessage() for r in caplog.records if "pipelined" in r.getMessage()]
            assert len(said) == 1, said
            assert "UndefinedTable" in said[0]
        finally:
            conn.exec_driver_sql("ALTER TABLE kept_aside RENAME TO reference_generation")
            conn.commit()
        start = lookups.start_batch(conn, keys)
        assert start is not None
        assert start.generation == generation(database)
        assert [c.member_id for c in start.cards.values()] == [seeded.member_id]


def test_a_reader_moved_to_another_room_is_seen_by_the_next_batch(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    cache = ReferenceCache()
    room_id, session_id = other_room_session(database, seeded, "二号会议室")
    [first] = record(database, cache, taps.received())
    assert first.session_id == seeded.session_id

    move_reader(database, seeded.reader_id, room_id)
    [second] = record(database, cache, taps.received())

    assert second.result is AckResult.ACCEPTED
    assert second.session_id == session_id


def test_a_session_created_after_a_no_session_answer_takes_the_next_tap(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    cache = ReferenceCache()
    later = seeded.starts_at + timedelta(hours=3)
    [before] = record(database, cache, taps.received(at=later))
    assert before.result is AckResult.NO_SESSION

    new_id = add_session(database, seeded, seeded.room_id, later, "加开的会")
    [after] = record(database, cache, taps.received(at=later))

    assert after.result is AckResult.ACCEPTED
    assert after.session_id == new_id


def test_changed_points_and_a_new_strong_requirement_count_at_once(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    cache = ReferenceCache()
    record(database, cache, taps.received(mode=TapMode.KIOSK))  # fills the cache

    change(
        database,
        update(table_of(ActivityType))
        .where(table_of(ActivityType).c.id == seeded.activity_type_id)
        .values(default_points=9),
    )
    [credited] = record(database, cache, taps.received())
    assert credited.points == 9

    change(
        database,
        insert(table_of(StrongTierRoom)).values(
            room_id=seeded.room_id, required_since=seeded.starts_at
        ),
    )
    # The card gives no challenge answer: in a strong-tier room it is now refused.
    [refused] = record(database, cache, taps.received(mode=TapMode.CHECKOUT))
    assert refused.result is AckResult.REJECTED


def test_signing_positions_are_read_fresh_by_every_worker(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    key = bytes.fromhex("5a" * 32)
    readers = table_of(Reader)
    change(
        database,
        update(readers).where(readers.c.reader_id == seeded.reader_id).values(sign_key=key.hex()),
    )
    worker_a, worker_b = ReferenceCache(), ReferenceCache()
    first, second = taps.tap(), taps.tap()
    now = seeded.starts_at

    def arrive(cache: ReferenceCache, payload: bytes) -> Outcome:
        [outcome] = record(database, cache, tap_submission(seeded.reader_id, payload, now))
        return outcome

    assert arrive(worker_b, sign(first, key)).result is AckResult.ACCEPTED  # b keeps seq 1
    assert arrive(worker_a, sign(second, key)).result is AckResult.DUPLICATE  # same pair
    # Worker b's kept reader still says seq 1; a replay of seq 2 under a new event id
    # must be refused against the stored position, not the kept one.
    replay = second.model_copy(update={"event_id": taps.tap().event_id})
    refused = arrive(worker_b, sign(replay, key))

    assert refused.result is AckResult.REJECTED
    assert (refused.detail or "").startswith(f"replay: seq {replay.seq} ")


def test_one_missing_trigger_is_enough_not_to_trust_the_generation(database: Database) -> None:
    with database.engine.begin() as conn:
        assert triggers_present(conn)
        name = sorted(expected_triggers(conn.dialect.name))[0]  # e.g. activity_types, delete
        if conn.dialect.name == "postgresql":
            table = name.removeprefix("reference_bump_")
            conn.execute(text(f"DROP TRIGGER {name} ON {table}"))
        else:
            conn.execute(text(f"DROP TRIGGER {name}"))
    with database.engine.connect() as conn:
        assert not triggers_present(conn)


def test_without_its_triggers_the_cache_reads_every_batch(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    with database.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER reference_bump_readers ON readers"))
        else:
            for name in ("insert", "update", "delete"):
                conn.execute(text(f"DROP TRIGGER reference_bump_readers_{name}"))
    cache = ReferenceCache()
    room_id, session_id = other_room_session(database, seeded, "三号会议室")
    record(database, cache, taps.received())
    assert not cache.trusted

    move_reader(database, seeded.reader_id, room_id)
    [outcome] = record(database, cache, taps.received())

    assert outcome.session_id == session_id


def last_seen(database: Database, reader_id: str) -> datetime | None:
    readers = table_of(Reader)
    with database.engine.connect() as conn:
        return conn.execute(
            select(readers.c.last_seen_at).where(readers.c.reader_id == reader_id)
        ).scalar_one()


def test_a_worker_writes_a_readers_last_seen_time_at_most_once_a_second(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    cache = ReferenceCache()
    t0 = seeded.starts_at
    record(database, cache, taps.received(received_at=t0))
    assert last_seen(database, seeded.reader_id) == t0

    record(database, cache, taps.received(received_at=t0 + timedelta(milliseconds=400)))
    assert last_seen(database, seeded.reader_id) == t0  # within the second: not written

    later = t0 + TOUCH_INTERVAL + timedelta(milliseconds=1)
    record(database, cache, taps.received(received_at=later))
    assert last_seen(database, seeded.reader_id) == later

    # Without a cache (the console, the API) every batch writes it.
    latest = later + timedelta(milliseconds=10)
    record_taps(UnitOfWork(database.write_sessions), [taps.received(received_at=latest)])
    assert last_seen(database, seeded.reader_id) == latest


def _watched_row(
    database: Database, seeded: MinimalSeed, table: str
) -> tuple[dict[str, Any], str, tuple[str, ...]]:
    """A new row for `table` (its dependencies made first), a watched column, its key."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    if table == "session_rooms":
        # A second room for the seeded session: the pair must be new.
        rooms = table_of(Room)
        with database.engine.begin() as conn:
            room_id = conn.execute(
                insert(rooms).values(code="ROOM-2", name="第二会议室").returning(rooms.c.id)
            ).scalar_one()
        return (
            {"session_id": seeded.session_id, "room_id": room_id},
            "room_id",
            ("session_id", "room_id"),
        )
    rows: dict[str, tuple[dict[str, Any], str, tuple[str, ...]]] = {
        "readers": (
            {"reader_id": "reader-new", "room_id": seeded.room_id, "mode": "checkin"},
            "mode",
            ("reader_id",),
        ),
        "rooms": ({"code": "ROOM-NEW", "name": "新会议室"}, "name", ("code",)),
        "sessions": (
            {
                "title": "新的会",
                "activity_type_id": seeded.activity_type_id,
                "starts_at": now,
                "ends_at": now + timedelta(hours=1),
            },
            "title",
            ("starts_at",),
        ),
        "session_audience": (
            {"session_id": seeded.session_id, "org_unit_id": seeded.org_unit_id},
            "org_unit_id",
            ("session_id",),
        ),
        "activity_types": (
            {"code": "NEW", "name": "新活动", "default_points": 1},
            "name",
            ("code",),
        ),
        "points_rule_versions": (
            {"version": "new/1", "effective_from": now.date(), "body": {"activities": {}}},
            "version",
            ("effective_from",),
        ),
        "strong_tier_rooms": (
            {"room_id": seeded.room_id, "required_since": now},
            "required_since",
            ("room_id",),
        ),
        "strong_tier_activity_types": (
            {"activity_type_id": seeded.activity_type_id, "required_since": now},
            "required_since",
            ("activity_type_id",),
        ),
        "org_units": (
            {"code": "UNIT-NEW", "name": "新支部", "parent_id": seeded.org_unit_id},
            "name",
            ("code",),
        ),
    }
    return rows[table]


@pytest.mark.parametrize("table", WATCHED_TABLES)
def test_every_watched_table_raises_the_generation_on_insert_update_and_delete(
    database: Database, seeded: MinimalSeed, table: str
) -> None:
    # The triggers-present check trusts the triggers by name; this checks what each does.
    row, column, key = _watched_row(database, seeded, table)
    target = Base.metadata.tables[table]
    match = [target.c[name] == row[name] for name in key]
    seen = [generation(database)]

    change(database, insert(target).values(**row))
    seen.append(generation(database))
    change(database, update(target).where(*match).values({column: row[column]}))
    seen.append(generation(database))
    change(database, delete(target).where(*match))
    seen.append(generation(database))

    assert seen[1] > seen[0], f"INSERT INTO {table} left the generation at {seen}"
    assert seen[2] > seen[1], f"UPDATE {table} SET {column} left the generation at {seen}"
    assert seen[3] > seen[2], f"DELETE FROM {table} left the generation at {seen}"
