"""Batched reads for recording taps: one query per kind of fact per batch, never per tap.

Each function takes everything a batch needs at once (all reader ids, all card
UIDs …) and returns plain frozen dataclasses, so the use case can decide
outcomes in memory and nothing holds ORM objects on the hot path.

The statements are built once, at import, with (expanding) bound parameters:
building a `select()` costs more CPU than a small batch's query itself, and
executing the very statement object SQLAlchemy compiled and cached also
skips re-matching its result columns on every execution. Each is built twice:
with `IN (…)` lists for SQLite, with `= ANY(array)` for PostgreSQL (server.db.arrays).
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, TypeVar

import psycopg
from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Dialect,
    Select,
    any_,
    bindparam,
    func,
    select,
    text,
)

from protocol import TapMode
from server.db.arrays import binary_array
from server.db.driver import compiled_sql, driver_rows, psycopg_of
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    Card,
    LedgerEntry,
    Member,
    MemberOrgHistory,
    OrgUnit,
    Reader,
    Room,
    SessionAudience,
    SessionRoom,
    TapRecord,
    table_of,
)
from server.db.upserts import Arrays
from server.domain.attendance import (
    MAX_OPEN_BEFORE,
    Audience,
    CheckinWindow,
    OrgTree,
    SessionCandidate,
)
from server.domain.cards import CardStatus
from server.errors import InvalidWindow

log = logging.getLogger(__name__)

# Stays well under SQLite's and psycopg's bound-parameter limits.
IN_CHUNK = 900
T = TypeVar("T")


def chunks(items: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """Split items into lists of at most `size`."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


InList = Callable[[Any, str], ColumnElement[bool]]
# Shorter lists stay expanded IN lists on PostgreSQL too: their statements stay
# short enough for psycopg's cache, and an array parameter has a fixed cost
# (measured: 1 id 185 µs IN against 174 ANY, 64 ids 527 against 212, 500 ids
# 3,446 against 344; in record_taps at batch 1, arrays cost ~5 % more CPU).
ARRAY_FROM = 32


def _expanding(column: Any, name: str) -> ColumnElement[bool]:
    result: ColumnElement[bool] = column.in_(bindparam(name, expanding=True))
    return result


def _any(column: Any, name: str) -> ColumnElement[bool]:
    result: ColumnElement[bool] = column == any_(bindparam(name))
    return result


@dataclass(frozen=True)
class _Query:
    """One lookup built for both dialects: list parameters expanded, or as arrays."""

    expanding: Select[*tuple[Any, ...]]
    arrays: Select[*tuple[Any, ...]]

    @classmethod
    def build(cls, make: Callable[[InList], Select[*tuple[Any, ...]]]) -> "_Query":
        """Build the query with `make(in_list)`, once for each way of passing lists."""
        return cls(make(_expanding), make(_any))

    def run(self, connection: Connection, params: dict[str, Any]) -> CursorResult[*tuple[Any, ...]]:
        """Execute with `params`; long lists become arrays on PostgreSQL."""
        if connection.dialect.name != "postgresql" or all(
            len(value) < ARRAY_FROM for value in params.values() if isinstance(value, list)
        ):
            return connection.execute(self.expanding, params)
        return connection.execute(
            self.arrays,
            {
                key: binary_array(connection, value) if isinstance(value, list) else value
                for key, value in params.items()
            },
        )


@dataclass(frozen=True)
class ReaderInfo:
    """A registered reader, its room and configured mode."""

    reader_id: str
    room_id: int | None
    room_name: str | None
    mode: TapMode
    # Message signing: the key (hex) its taps must be signed with, and the newest
    # (boot_id, seq) accepted from it.
    sign_key: str | None = None
    last_boot_id: uuid.UUID | None = None
    last_seq: int | None = None


@dataclass(frozen=True)
class CardInfo:
    """A card and its holder, as needed to decide a tap."""

    card_id: int
    tech: str
    uid: str
    status: CardStatus
    member_id: int
    member_name: str
    org_unit_id: int
    active_from: date | None
    active_to: date | None

    def member_active_on(self, day: date) -> bool:
        """Whether the holder is an active member on `day` (dates inclusive)."""
        if self.active_from is not None and day < self.active_from:
            return False
        return self.active_to is None or day <= self.active_to


@dataclass(frozen=True)
class AttendanceInfo:
    """An existing attendance row."""

    member_id: int
    session_id: int
    status: str
    checked_in_at: datetime | None
    checked_out_at: datetime | None


@dataclass(frozen=True)
class OriginalTap:
    """How a tap that was already recorded was answered."""

    result: str
    points: int
    display: dict[str, Any]


@dataclass
class RoomSessions:
    """Sessions that may cover taps in some rooms."""

    by_room: dict[int, list[SessionCandidate]] = field(default_factory=dict)

    def in_room(self, room_id: int) -> list[SessionCandidate]:
        """Candidate sessions for one room."""
        return self.by_room.get(room_id, [])


@dataclass(frozen=True)
class OrgHistory:
    """Members' org-unit history, for audience checks at a session's start."""

    periods: dict[int, list[tuple[int, datetime, datetime | None]]]

    def unit_at(self, member_id: int, at: datetime, current_unit: int) -> int:
        """The org unit a member belonged to at `at`; the current one if history is silent."""
        for unit, valid_from, valid_to in self.periods.get(member_id, ()):
            if valid_from <= at and (valid_to is None or at < valid_to):
                return unit
        return current_unit


_READERS = _Query.build(
    lambda in_list: (
        select(
            Reader.reader_id,
            Reader.room_id,
            Room.name,
            Reader.mode,
            Reader.sign_key,
            Reader.last_boot_id,
            Reader.last_seq,
        )
        .outerjoin(Room, Room.id == Reader.room_id)
        .where(in_list(Reader.reader_id, "ids"))
    )
)


def readers_by_id(connection: Connection, reader_ids: Iterable[str]) -> dict[str, ReaderInfo]:
    """Registered readers among `reader_ids`."""
    found: dict[str, ReaderInfo] = {}
    for part in chunks(set(reader_ids)):
        rows = _READERS.run(connection, {"ids": part})
        for reader_id, room_id, room_name, mode, sign_key, boot_id, seq in rows:
            found[reader_id] = ReaderInfo(
                reader_id, room_id, room_name, TapMode(mode), sign_key, boot_id, seq
            )
    return found


_POSITIONS = _Query.build(
    lambda in_list: select(Reader.reader_id, Reader.last_boot_id, Reader.last_seq).where(
        in_list(Reader.reader_id, "ids")
    )
)


def reader_positions(
    connection: Connection, reader_ids: Iterable[str]
) -> dict[str, tuple[uuid.UUID | None, int | None]]:
    """The newest (boot_id, seq) accepted from each of these readers."""
    found: dict[str, tuple[uuid.UUID | None, int | None]] = {}
    for part in chunks(set(reader_ids)):
        for reader_id, boot_id, seq in _POSITIONS.run(connection, {"ids": part}):
            found[reader_id] = (boot_id, seq)
    return found


# SQLite's card lookup; PostgreSQL's is _cards_of_keys (its generic plan probes the index).
_CARDS = _Query.build(
    lambda in_list: (
        select(
            Card.id,
            Card.tech,
            Card.uid,
            Card.status,
            Card.status_changed_at,
            Member.id,
            Member.name,
            Member.org_unit_id,
            Member.active_from,
            Member.active_to,
        )
        .join(Member, Member.id == Card.member_id)
        # Both columns of the (tech, uid) index: by uid alone it is a table scan.
        .where(in_list(Card.tech, "techs"), in_list(Card.uid, "uids"))
    )
)


def cards_by_key(
    connection: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], CardInfo]:
    """The card each (tech, uid) names: the active one, else the most recently changed."""
    wanted = set(keys)
    if connection.dialect.name == "postgresql":
        # One statement text for any number of keys, probing the index per key.
        query = _cards_of_keys(connection.dialect)
        return _best_cards(
            wanted, driver_rows(connection, query.sql, _cards_params(connection, query, wanted))
        )
    techs = list({tech for tech, _ in wanted})
    rows = (
        row
        for part in chunks({uid for _, uid in wanted})
        for row in _CARDS.run(connection, {"techs": techs, "uids": part})
    )
    return _best_cards(wanted, rows)


def _best_cards(
    wanted: set[tuple[str, str]], rows: Iterable[Sequence[Any]]
) -> dict[tuple[str, str], CardInfo]:
    best: dict[tuple[str, str], tuple[tuple[int, datetime | None, int], CardInfo]] = {}
    for row in rows:
        key = (row[1], row[2])
        if key not in wanted:
            continue
        info = CardInfo(
            card_id=row[0],
            tech=row[1],
            uid=row[2],
            status=CardStatus(row[3]),
            member_id=row[5],
            member_name=row[6],
            org_unit_id=row[7],
            active_from=row[8],
            active_to=row[9],
        )
        # Active first; among inactive cards the latest change, then the newest row.
        rank = (1 if info.status is CardStatus.ACTIVE else 0, row[4], row[0])
        previous = best.get(key)
        if previous is None or _rank_key(rank) > _rank_key(previous[0]):
            best[key] = (rank, info)
    return {key: info for key, (_, info) in best.items()}


@dataclass(frozen=True)
class BatchStart:
    """What a batch reads first: the reference generation and the cards it names.

    With them, for each (tech, uid, session id) asked (`attendance_asked`), the
    attendance in that session of the member(s) the card names: for such a
    pair (member, session), `attendance` is what is stored.
    """

    generation: int | None
    cards: dict[tuple[str, str], CardInfo]
    attendance_asked: frozenset[tuple[str, str, int]] = frozenset()
    attendance: dict[tuple[int, int], AttendanceInfo] = field(default_factory=dict)


def start_batch(
    connection: Connection,
    keys: Iterable[tuple[str, str]],
    expected: Collection[tuple[str, str, int]] = (),
) -> BatchStart | None:
    """PostgreSQL: BEGIN, the reference generation and `cards_by_key(keys)` in one round trip.

    With `expected`, (tech, uid, session id) triples (each tap's card with the
    sessions a worker kept from earlier batches for the tap's room, where it most
    likely goes), the same round trip also reads each card's member's attendance
    in those sessions, which would otherwise cost a round trip of its own once the
    taps are resolved (`attendance_for`): an eighth of a one-tap batch's time.

    psycopg's pipeline mode sends the transaction's BEGIN and the queries before
    reading any answer: one round trip where there were three (BEGIN is its own
    otherwise), at 1,000 taps/s a tenth of a batch's time. SQLAlchemy cannot run a
    statement in pipeline mode (it reads the result's columns before the answer
    has come), so these go to psycopg directly, the cards query as SQLAlchemy
    compiles it; the two lookups on their generic plans, forced for them alone
    (`_GENERIC_PLANS`). None on another backend, inside a transaction already begun, or
    on any error (after rolling back): the caller then reads them one by one, which
    raises the error as SQLAlchemy does, the connection invalidated if it is dead.
    """
    if connection.dialect.name != "postgresql":
        return None
    driver = psycopg_of(connection)
    if driver is None:
        return None
    if driver.info.transaction_status is not psycopg.pq.TransactionStatus.IDLE:
        return None
    wanted = set(keys)
    cards_query = _cards_of_keys(connection.dialect)
    cards_params = _cards_params(connection, cards_query, wanted)
    try:
        with driver.pipeline():
            driver.execute(_GENERIC_PLANS, prepare=False)
            generation = driver.execute(GENERATION_SQL)
            cards = driver.execute(cards_query.sql, cards_params)
            asked = frozenset(expected)
            attendance = None
            if asked:
                query = _expected_attendance(connection.dialect)
                rows = [{"tech": t, "uid": u, "session_id": s} for t, u, s in sorted(asked)]
                attendance = driver.execute(query.sql, query.arrays.params(connection, rows))
            driver.execute(_PLANS_AS_BEFORE, prepare=False)
        row = generation.fetchone()
        return BatchStart(
            row[0] if row else None,
            _best_cards(wanted, cards.fetchall()),
            asked if attendance is not None else frozenset(),
            _attendance_rows(attendance.fetchall()) if attendance is not None else {},
        )
    except psycopg.Error as exc:
        # Costs this batch two round trips; a cause that persists is said once.
        reason = type(exc).__name__
        if reason not in _PIPELINE_FAILURES:
            _PIPELINE_FAILURES.add(reason)
            log.warning("pipelined batch start failed, reading one by one (%s: %s)", reason, exc)
        with suppress(psycopg.Error):
            driver.rollback()
        return None


# Kinds of error start_batch has logged (once each per process).
_PIPELINE_FAILURES: set[str] = set()

# Left to choose, PostgreSQL plans the two lookups over `unnest` of array
# parameters afresh on every batch: it takes a prepared statement's generic plan
# only when that costs no more than the custom plans so far, and a custom plan
# sees the arrays' lengths where the generic one assumes 100 rows. Measured on the
# worker's connection: 0 generic and 2,395 custom plans each in 2,400 batches, and
# the planner 16 % of the database backend's CPU at 1,000 taps/s (perf). Their
# generic plans probe the indexes (tests/integration/server/test_lookup_plans.py),
# so the batch start forces them, for its own statements only: the worker's other
# statements keep PostgreSQL's choice (on a database without statistics a balance
# lookup's generic plan was a scan of the ledger, seen with 2,000 entries).
_GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"
_PLANS_AS_BEFORE = "SET LOCAL plan_cache_mode TO DEFAULT"


# The reference data's generation (migration 0009), also read by services.reference.
GENERATION_SQL = "SELECT generation FROM reference_generation WHERE id = 1"


@dataclass(frozen=True)
class _ArraysQuery:
    """A statement over rows passed as arrays (PostgreSQL), run on psycopg directly."""

    sql: str  # psycopg's parameter style (driver.compiled_sql)
    arrays: Arrays


def _attendance_probe(member: str, session: str) -> str:
    """A LATERAL join to the attendance of (member, session), by its unique index."""
    listed = "member_id, session_id, status, checked_in_at, checked_out_at"
    return (
        f"CROSS JOIN LATERAL (SELECT {listed} FROM attendance "  # noqa: S608 - our own names
        f"WHERE member_id = {member} AND session_id = {session} LIMIT 1) AS a"
    )


def _cards_probe(listed: str, *, holders: bool = False) -> str:
    """A LATERAL join to the cards of (k.tech, k.uid), by the (tech, uid) index (and their holders).

    OFFSET 0 keeps the subquery a probe per key: joined plainly, the generic plan
    of the prepared statement (made for an unknown number of keys, with the
    table's statistics as they were, none on a new database) hashed every card
    of the table on every batch.
    """
    joined = "JOIN members ON members.id = cards.member_id " if holders else ""
    return (
        f"CROSS JOIN LATERAL (SELECT {listed} FROM cards {joined}"  # noqa: S608 - our own names
        "WHERE cards.tech = k.tech AND cards.uid = k.uid OFFSET 0) AS c"
    )


@cache
def _cards_of_keys(dialect: Dialect) -> _ArraysQuery:
    """The cards of exactly the (tech, uid) pairs given, with their holders: `_CARDS`'s rows."""
    cards = table_of(Card)
    arrays = Arrays.of(dialect, [("tech", cards.c.tech), ("uid", cards.c.uid)])
    listed = (
        "cards.id, cards.tech, cards.uid, cards.status, cards.status_changed_at, members.id, "
        "members.name, members.org_unit_id, members.active_from, members.active_to"
    )
    sql = f"SELECT c.* FROM {arrays.sql} AS k(tech, uid) "  # noqa: S608 - our own names
    sql += _cards_probe(listed, holders=True)
    return _ArraysQuery(compiled_sql(text(sql), dialect), arrays)


def _cards_params(
    connection: Connection, query: _ArraysQuery, keys: set[tuple[str, str]]
) -> dict[str, Any]:
    return query.arrays.params(connection, [{"tech": t, "uid": u} for t, u in sorted(keys)])


@cache
def _expected_attendance(dialect: Dialect) -> _ArraysQuery:
    """For each (tech, uid, session id): that card's member's attendance in that session.

    Rows of arrays probing the (tech, uid) and (member, session) indexes, as
    `_attendance_pairs` and for its reasons (`_cards_probe`): with `= ANY(…)`
    filters, or the cards joined plainly, PostgreSQL's generic plan for the
    prepared statement scanned every card.
    """
    cards, attendance = table_of(Card), table_of(Attendance)
    arrays = Arrays.of(
        dialect,
        [("tech", cards.c.tech), ("uid", cards.c.uid), ("session_id", attendance.c.session_id)],
    )
    sql = (
        f"SELECT a.* FROM {arrays.sql} AS k(tech, uid, session_id) "  # noqa: S608 - our own names
        + _cards_probe("cards.member_id")
        + " "
        + _attendance_probe("c.member_id", "k.session_id")
    )
    return _ArraysQuery(compiled_sql(text(sql), dialect), arrays)


def _rank_key(rank: tuple[int, datetime | None, int]) -> tuple[int, float, int]:
    active, changed, card_id = rank
    return (active, changed.timestamp() if changed else float("-inf"), card_id)


_ROOM_SESSIONS = _Query.build(
    lambda in_list: (
        select(
            SessionRoom.room_id,
            AttendanceSession.id,
            AttendanceSession.title,
            AttendanceSession.starts_at,
            AttendanceSession.ends_at,
            AttendanceSession.checkin_open_minutes,
            AttendanceSession.late_grace_minutes,
            AttendanceSession.closes_at,
            AttendanceSession.allow_walk_in,
            ActivityType.code,
        )
        .join(SessionRoom, SessionRoom.session_id == AttendanceSession.id)
        .join(ActivityType, ActivityType.id == AttendanceSession.activity_type_id)
        .where(
            in_list(SessionRoom.room_id, "rooms"),
            # A window opens at most MAX_OPEN_BEFORE ahead of the start: "latest" has it added.
            AttendanceSession.starts_at
            <= bindparam("latest", type_=AttendanceSession.starts_at.type),
            func.coalesce(AttendanceSession.closes_at, AttendanceSession.ends_at)
            > bindparam("earliest", type_=AttendanceSession.ends_at.type),
            # A cancelled session takes no taps.
            AttendanceSession.cancelled_at.is_(None),
        )
    )
)


def sessions_in_rooms(
    connection: Connection, room_ids: Iterable[int], earliest: datetime, latest: datetime
) -> RoomSessions:
    """Sessions in these rooms whose window may cover a tap between earliest and latest."""
    found = RoomSessions()
    rooms = set(room_ids)
    if not rooms:
        return found
    rows = _ROOM_SESSIONS.run(
        connection,
        {"rooms": list(rooms), "latest": latest + MAX_OPEN_BEFORE, "earliest": earliest},
    ).all()
    audiences = audiences_of(connection, {row[1] for row in rows})
    for row in rows:
        room_id, session_id, title, starts_at, ends_at, open_min, grace_min, closes_at = row[:8]
        allow_walk_in, activity_code = row[8:]
        try:
            window = CheckinWindow.for_session(
                starts_at,
                ends_at,
                open_minutes=open_min,
                late_grace_minutes=grace_min,
                closes_at=closes_at,
            )
        except InvalidWindow as exc:
            # A badly edited session must not block every tap in its room.
            log.warning("session %s skipped: %s", session_id, exc)
            continue
        found.by_room.setdefault(room_id, []).append(
            SessionCandidate(
                session_id=session_id,
                title=title,
                activity_type=activity_code,
                starts_at=starts_at,
                window=window,
                allow_walk_in=allow_walk_in,
                audience=audiences.get(session_id, Audience()),
            )
        )
    return found


_AUDIENCES = _Query.build(
    lambda in_list: select(
        SessionAudience.session_id, SessionAudience.org_unit_id, SessionAudience.member_id
    ).where(in_list(SessionAudience.session_id, "ids"))
)


def audiences_of(connection: Connection, session_ids: set[int]) -> dict[int, Audience]:
    """The audience of each of these sessions that has one."""
    units: dict[int, set[int]] = defaultdict(set)
    members: dict[int, set[int]] = defaultdict(set)
    for part in chunks(session_ids):
        rows = _AUDIENCES.run(connection, {"ids": part})
        for session_id, unit_id, member_id in rows:
            if unit_id is not None:
                units[session_id].add(unit_id)
            if member_id is not None:
                members[session_id].add(member_id)
    return {
        session_id: Audience(frozenset(units[session_id]), frozenset(members[session_id]))
        for session_id in units.keys() | members.keys()
    }


_ORG_TREE = select(OrgUnit.id, OrgUnit.parent_id)


def org_tree(connection: Connection) -> OrgTree:
    """The whole organisation as parent links (org units number in the hundreds)."""
    rows = connection.execute(_ORG_TREE).all()
    return OrgTree(dict(rows))


_ORG_HISTORY = _Query.build(
    lambda in_list: select(
        MemberOrgHistory.member_id,
        MemberOrgHistory.org_unit_id,
        MemberOrgHistory.valid_from,
        MemberOrgHistory.valid_to,
    ).where(in_list(MemberOrgHistory.member_id, "ids"))
)


def org_history(connection: Connection, member_ids: Iterable[int]) -> OrgHistory:
    """Org-unit history of these members."""
    periods: dict[int, list[tuple[int, datetime, datetime | None]]] = defaultdict(list)
    for part in chunks(set(member_ids)):
        rows = _ORG_HISTORY.run(connection, {"ids": part})
        for member_id, unit_id, valid_from, valid_to in rows:
            periods[member_id].append((unit_id, valid_from, valid_to))
    return OrgHistory(dict(periods))


# SQLite's form (PostgreSQL asks by exact pairs: _attendance_pairs).
_ATTENDANCE = select(
    Attendance.member_id,
    Attendance.session_id,
    Attendance.status,
    Attendance.checked_in_at,
    Attendance.checked_out_at,
).where(
    _expanding(Attendance.member_id, "members"),
    _expanding(Attendance.session_id, "sessions"),
)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _attendance_rows(rows: Iterable[Sequence[Any]]) -> dict[tuple[int, int], AttendanceInfo]:
    """(member_id, session_id, status, checked_in_at, checked_out_at) rows from psycopg, by pair."""
    return {
        (member_id, session_id): AttendanceInfo(
            member_id, session_id, status, _utc(checked_in_at), _utc(checked_out_at)
        )
        for member_id, session_id, status, checked_in_at, checked_out_at in rows
    }


def attendance_for(
    connection: Connection, pairs: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], AttendanceInfo]:
    """Existing attendance for (member_id, session_id) pairs."""
    wanted = set(pairs)
    found: dict[tuple[int, int], AttendanceInfo] = {}
    if not wanted:
        return found
    if connection.dialect.name == "postgresql":
        pairs_query = _attendance_pairs(connection.dialect)
        params = pairs_query.arrays.params(
            connection, [{"members": m, "sessions": s} for m, s in sorted(wanted)]
        )
        return _attendance_rows(driver_rows(connection, pairs_query.sql, params))
    sessions = list({session_id for _, session_id in wanted})
    for part in chunks({member_id for member_id, _ in wanted}):
        rows = connection.execute(_ATTENDANCE, {"members": part, "sessions": sessions})
        for row in rows:
            key = (row[0], row[1])
            if key in wanted:
                found[key] = AttendanceInfo(*row)
    return found


@cache
def _attendance_pairs(dialect: Dialect) -> _ArraysQuery:
    """Attendance of exactly the (member, session) pairs given, as two arrays (PostgreSQL).

    `member_id = ANY(:members) AND session_id = ANY(:sessions)` asks for every
    combination; for a batch of 500 members the planner scanned the whole table
    (42 ms a batch once it held 100,000 rows: the tap storm's rate-5000 phase).
    Here each pair probes the unique (member, session) index: 0.6 ms for 500
    pairs in 100,000 rows. The LATERAL … LIMIT 1 keeps it so before the table has
    statistics (a new database, a table that grew fast): joined plainly, the
    planner hashed the whole table instead (24 ms) until ANALYZE ran.
    """
    table = table_of(Attendance)
    arrays = Arrays.of(dialect, [("members", table.c.member_id), ("sessions", table.c.session_id)])
    sql = f"SELECT a.* FROM {arrays.sql} AS p(m, s) "  # noqa: S608 - our own names
    sql += _attendance_probe("p.m", "p.s")
    return _ArraysQuery(compiled_sql(text(sql), dialect), arrays)


_ORIGINAL_TAPS = _Query.build(
    lambda in_list: select(
        TapRecord.event_id,
        TapRecord.result,
        TapRecord.points,
        TapRecord.display,
    ).where(in_list(TapRecord.event_id, "ids"))
)


def original_taps(
    connection: Connection, event_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, OriginalTap]:
    """How already-recorded taps among `event_ids` were answered."""
    found: dict[uuid.UUID, OriginalTap] = {}
    for part in chunks(set(event_ids)):
        rows = _ORIGINAL_TAPS.run(connection, {"ids": part})
        for event_id, result, points, display in rows:
            if event_id is not None:
                found[event_id] = OriginalTap(result, points, display)
    return found


_BALANCES = _Query.build(
    lambda in_list: (
        select(LedgerEntry.member_id, func.sum(LedgerEntry.amount))
        .where(in_list(LedgerEntry.member_id, "ids"))
        .group_by(LedgerEntry.member_id)
    )
)


def balances_of(connection: Connection, member_ids: Iterable[int]) -> dict[int, int]:
    """These members' points balances (the sums of their ledgers); 0 for an empty ledger."""
    found = dict.fromkeys(member_ids, 0)
    for part in chunks(found):
        for member_id, total in _BALANCES.run(connection, {"ids": part}):
            found[member_id] = int(total)
    return found


def first_checkins(
    connection: Connection, pairs: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], datetime | None]:
    """When each (member, session) pair first checked in, for pairs that have attendance."""
    return {key: info.checked_in_at for key, info in attendance_for(connection, pairs).items()}


# Points in a period, driven by the period's sessions rather than by each member's
# whole ledger: attendance credits (and their reversals) count at their session's
# start, entries without an attendance (adjustments) at their creation. Both sides
# walk an index from the period inward (sessions.starts_at → attendance.session_id
# → points_ledger.attendance_id; the partial index of unlinked entries by time).
_PERIOD_CREDITS = _Query.build(
    lambda in_list: (
        select(LedgerEntry.member_id, func.sum(LedgerEntry.amount))
        .select_from(AttendanceSession)
        .join(Attendance, Attendance.session_id == AttendanceSession.id)
        .join(LedgerEntry, LedgerEntry.attendance_id == Attendance.id)
        .where(
            AttendanceSession.starts_at
            >= bindparam("start", type_=AttendanceSession.starts_at.type),
            AttendanceSession.starts_at < bindparam("end", type_=AttendanceSession.starts_at.type),
            in_list(LedgerEntry.member_id, "ids"),
        )
        .group_by(LedgerEntry.member_id)
    )
)
# Without the member filter: for many members, listing them costs more than it saves.
_PERIOD_ALL_CREDITS = (
    select(LedgerEntry.member_id, func.sum(LedgerEntry.amount))
    .select_from(AttendanceSession)
    .join(Attendance, Attendance.session_id == AttendanceSession.id)
    .join(LedgerEntry, LedgerEntry.attendance_id == Attendance.id)
    .where(
        AttendanceSession.starts_at >= bindparam("start", type_=AttendanceSession.starts_at.type),
        AttendanceSession.starts_at < bindparam("end", type_=AttendanceSession.starts_at.type),
    )
    .group_by(LedgerEntry.member_id)
)
# Past this many members a period's credits are read for everyone and filtered here
# (bench/reports.py, 10,000 members: 475 → see docs/benchmarks.md).
BROAD_MEMBER_SET = 1000
_PERIOD_UNLINKED = _Query.build(
    lambda in_list: (
        select(LedgerEntry.member_id, func.sum(LedgerEntry.amount))
        .where(
            LedgerEntry.attendance_id.is_(None),
            LedgerEntry.created_at >= bindparam("start", type_=LedgerEntry.created_at.type),
            LedgerEntry.created_at < bindparam("end", type_=LedgerEntry.created_at.type),
            in_list(LedgerEntry.member_id, "ids"),
        )
        .group_by(LedgerEntry.member_id)
    )
)


def period_points(
    connection: Connection, member_ids: Iterable[int], start: datetime, end: datetime
) -> dict[int, int]:
    """Each member's points earned in [start, end); members with none are left out."""
    totals: dict[int, int] = {}
    members = sorted(set(member_ids))
    queries = [_PERIOD_CREDITS, _PERIOD_UNLINKED]
    if len(members) > BROAD_MEMBER_SET:
        wanted = set(members)
        queries = [_PERIOD_UNLINKED]
        for member_id, total in connection.execute(
            _PERIOD_ALL_CREDITS, {"start": start, "end": end}
        ):
            if member_id in wanted:
                totals[member_id] = int(total or 0)
    # PostgreSQL takes the members as one array; SQLite in chunks under its parameter limit.
    size = None if connection.dialect.name == "postgresql" else IN_CHUNK
    for part in chunks(members, size or max(1, len(members))):
        for query in queries:
            params = {"ids": part, "start": start, "end": end}
            for member_id, total in query.run(connection, params):
                totals[member_id] = totals.get(member_id, 0) + int(total or 0)
    return totals
