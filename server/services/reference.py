"""Reference data the tap path reads on every batch, kept between batches while unchanged.

Half of a batch's statements read readers, sessions in their rooms, the
strong-tier requirements, the org tree and the points rules: data that changes
a few times a day, read hundreds of times a second under load. The ingest
worker keeps what it read in a `ReferenceCache` and, at the start of each
batch's transaction, reads one integer instead: `reference_generation`, which
triggers (migration 0009) raise in the same transaction as any change to those
tables. A different number drops everything kept. Changes made in another
process or by hand in SQL are seen as promptly as without the cache: by the
next batch's transaction.

The cache also spares most batches the update of their readers' last-seen
time and clock skew: a worker writes them at most once per `TOUCH_INTERVAL` per
reader (the console shows them to the second, and a status message or the next
tap refreshes them).

What is not reference data is read per batch as before: cards and members,
members' org-unit history, attendance, and the signing position of a signing
reader (it moves with every signed tap, so its column does not count as a
change and is read fresh for the signing readers of a batch).

A database whose triggers are not all there (a table rebuilt by a later
migration, a schema not made by `rollcall db upgrade`) is not trusted: the
cache reads everything per batch, as an uncached `Reference` does, and says so
once in the log.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar, cast

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from server.db import lookups
from server.db.lookups import ReaderInfo, RoomSessions
from server.domain.attendance import OrgTree
from server.domain.points import RuleBook
from server.services.cardauth import StrongRequirements, strong_requirements
from server.services.rules import rule_book

log = logging.getLogger(__name__)
T = TypeVar("T")

# The tables whose changes raise the generation (migration 0009 creates their triggers).
WATCHED_TABLES = (
    "readers",
    "rooms",
    "sessions",
    "session_rooms",
    "session_audience",
    "activity_types",
    "points_rule_versions",
    "strong_tier_rooms",
    "strong_tier_activity_types",
    "org_units",
)
# Sessions are read for this much time either side of a batch's taps, so that the
# batches of the next hours find them kept.
SESSION_MARGIN = timedelta(hours=6)
# Unregistered reader ids are remembered too (a reader's registration is a change);
# past this many remembered readers all are forgotten rather than growing without end.
MAX_READERS = 10_000
# A worker writes a reader's last-seen time and skew at most this often.
TOUCH_INTERVAL = timedelta(seconds=1)

_GENERATION = text(lookups.GENERATION_SQL)
_SQLITE_TRIGGERS = text(
    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'reference_bump_%'"
)
_POSTGRESQL_TRIGGERS = text(
    "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "WHERE NOT t.tgisinternal AND t.tgname LIKE 'reference_bump_%' "
    "AND pg_table_is_visible(c.oid)"
)


def expected_triggers(dialect: str) -> set[str]:
    """The generation triggers migration 0009 creates: one per table on PostgreSQL
    (statement level, every kind of change), one per table and change on SQLite."""
    if dialect == "postgresql":
        return {f"reference_bump_{table}" for table in WATCHED_TABLES}
    return {
        f"reference_bump_{table}_{change}"
        for table in WATCHED_TABLES
        for change in ("insert", "update", "delete")
    }


def triggers_present(connection: Connection) -> bool:
    """Whether every generation trigger is there (one missing would let a change go unseen)."""
    postgresql = connection.dialect.name == "postgresql"
    try:
        with connection.begin_nested():
            query = _POSTGRESQL_TRIGGERS if postgresql else _SQLITE_TRIGGERS
            names = {row[0] for row in connection.execute(query)}
            connection.execute(_GENERATION).scalar_one()
    except SQLAlchemyError:  # no table, no row, no catalogue access: not trusted
        return False
    return expected_triggers(connection.dialect.name) <= names


@dataclass
class _Sessions:
    rooms: frozenset[int]
    earliest: datetime
    latest: datetime
    found: RoomSessions


class Reference:
    """Reads reference data for a batch; this one reads it every time."""

    def begin(self, connection: Connection, generation: int | None = None) -> None:
        """Called in each batch's transaction before anything is read.

        `generation`: `reference_generation` as the batch read it already (see
        `wants_generation`), else None.
        """

    @property
    def wants_generation(self) -> bool:
        """Whether `begin` would read the generation (a caller may read it first)."""
        return False

    def kept_sessions(self, reader_id: str) -> tuple[int, ...]:
        """Sessions kept by earlier batches in this reader's room; read before `begin`, so stale."""
        return ()

    def readers(self, connection: Connection, reader_ids: set[str]) -> dict[str, ReaderInfo]:
        """Registered readers among `reader_ids`, with their current signing positions."""
        return lookups.readers_by_id(connection, reader_ids)

    def sessions(
        self, connection: Connection, room_ids: set[int], earliest: datetime, latest: datetime
    ) -> RoomSessions:
        """Sessions in these rooms whose window may cover a tap between earliest and latest.

        May hold more (other rooms, other times): candidates are checked against each tap.
        """
        return lookups.sessions_in_rooms(connection, room_ids, earliest, latest)

    def org_tree(self, connection: Connection) -> OrgTree:
        """The whole organisation as parent links."""
        return lookups.org_tree(connection)

    def requirements(self, connection: Connection) -> StrongRequirements:
        """Where the strong card tier is required."""
        return strong_requirements(connection)

    def rule_book(self, connection: Connection) -> RuleBook:
        """Every points rule version."""
        return rule_book(connection)

    def due_touches(
        self, latest: dict[str, tuple[datetime, float]]
    ) -> dict[str, tuple[datetime, float]]:
        """Of each reader's newest (received at, skew) in a batch, those to write now."""
        return latest


class ReferenceCache(Reference):
    """Keeps reference data while `reference_generation` stays the same.

    One per ingest worker, used by one thread at a time (its batches).
    """

    def __init__(self) -> None:
        self._trusted: bool | None = None
        self._generation: int | None = None
        self._readers: dict[str, ReaderInfo | None] = {}
        self._sessions: _Sessions | None = None
        self._kept: dict[str, object] = {}
        # When this worker last wrote each reader's last-seen time (not reference data:
        # kept whatever the generation).
        self._touched: dict[str, datetime] = {}
        self.hits = 0
        self.misses = 0

    @property
    def trusted(self) -> bool:
        """Whether the database's triggers were found (decided at the first batch)."""
        return bool(self._trusted)

    @property
    def wants_generation(self) -> bool:
        return self._trusted is True

    def begin(self, connection: Connection, generation: int | None = None) -> None:
        """Drop what was kept if the generation moved (or the triggers are missing)."""
        if self._trusted is None:
            self._trusted = triggers_present(connection)
            if not self._trusted:
                log.warning(
                    "reference_generation or its triggers are missing (schema not at "
                    "migration 0009?): reference data is read for every batch"
                )
        if generation is None and self._trusted:
            generation = connection.execute(_GENERATION).scalar()
        if not self._trusted:
            generation = None
        if generation is None or generation != self._generation:
            self._clear()
            self._generation = generation

    def _clear(self) -> None:
        self._readers = {}
        self._sessions = None
        self._kept = {}

    @property
    def _keeping(self) -> bool:
        return self._generation is not None

    def readers(self, connection: Connection, reader_ids: set[str]) -> dict[str, ReaderInfo]:
        if not self._keeping:
            return super().readers(connection, reader_ids)
        missing = reader_ids - self._readers.keys()
        fresh: dict[str, ReaderInfo] = {}
        if missing:
            self.misses += 1
            if len(self._readers) + len(missing) > MAX_READERS:
                self._readers = {}
            fresh = lookups.readers_by_id(connection, missing)
            for reader_id in missing:
                self._readers[reader_id] = fresh.get(reader_id)
        else:
            self.hits += 1
        found = {r: info for r in reader_ids if (info := self._readers.get(r)) is not None}
        stale = [r for r, info in found.items() if info.sign_key is not None and r not in fresh]
        if stale:
            for reader_id, (boot_id, seq) in lookups.reader_positions(connection, stale).items():
                found[reader_id] = replace(found[reader_id], last_boot_id=boot_id, last_seq=seq)
        return found

    def kept_sessions(self, reader_id: str) -> tuple[int, ...]:
        reader, kept = self._readers.get(reader_id), self._sessions
        if reader is None or reader.room_id is None or kept is None:
            return ()
        return tuple(c.session_id for c in kept.found.by_room.get(reader.room_id, ()))

    def sessions(
        self, connection: Connection, room_ids: set[int], earliest: datetime, latest: datetime
    ) -> RoomSessions:
        if not self._keeping:
            return super().sessions(connection, room_ids, earliest, latest)
        kept = self._sessions
        if (
            kept is not None
            and room_ids <= kept.rooms
            and kept.earliest <= earliest
            and latest <= kept.latest
        ):
            self.hits += 1
            return kept.found
        self.misses += 1
        rooms = frozenset(room_ids | (kept.rooms if kept is not None else frozenset()))
        start, end = earliest - SESSION_MARGIN, latest + SESSION_MARGIN
        found = lookups.sessions_in_rooms(connection, rooms, start, end)
        self._sessions = _Sessions(rooms, start, end, found)
        return found

    def org_tree(self, connection: Connection) -> OrgTree:
        return self._keep("org_tree", connection, lookups.org_tree)

    def requirements(self, connection: Connection) -> StrongRequirements:
        return self._keep("requirements", connection, strong_requirements)

    def rule_book(self, connection: Connection) -> RuleBook:
        return self._keep("rule_book", connection, rule_book)

    def due_touches(
        self, latest: dict[str, tuple[datetime, float]]
    ) -> dict[str, tuple[datetime, float]]:
        if len(self._touched) > MAX_READERS:
            self._touched = {}
        due = {}
        for reader_id, (at, skew) in latest.items():
            last = self._touched.get(reader_id)
            if last is None or at - last >= TOUCH_INTERVAL:
                due[reader_id] = (at, skew)
                self._touched[reader_id] = at
        return due

    def _keep(self, name: str, connection: Connection, load: Callable[[Connection], T]) -> T:
        """What `load` read, kept under `name` until the generation moves."""
        if not self._keeping:
            return load(connection)
        if name not in self._kept:
            self._kept[name] = load(connection)
        return cast(T, self._kept[name])


UNCACHED = Reference()
