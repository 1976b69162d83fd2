"""The durable outbox: every tap stays in SQLite until the server's ack for it arrives.

WAL with `synchronous=FULL` makes each commit survive power loss. Taps leave in
the order they were stored (the `position` column), whatever the wall clock did
meanwhile. The table also records when each tap was last published and how
often, which is what the publisher's resend timer and `rollcall-reader outbox`
read. One connection serves every thread, guarded by a lock.
"""

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from uuid import UUID

from protocol import Tap
from reader_agent.errors import OutboxError

SCHEMA_VERSION: Final = 1
_BUSY_TIMEOUT_SECONDS: Final = 5.0
_SCHEMA: Final = (
    """
CREATE TABLE IF NOT EXISTS taps (
    position     INTEGER PRIMARY KEY,  -- storage order, which is publish order
    event_id     TEXT NOT NULL UNIQUE,
    boot_id      TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    payload      BLOB NOT NULL,        -- the encoded (and maybe signed) tap, sent as is
    created_at   TEXT NOT NULL,        -- RFC 3339 UTC, microseconds: text order is time order
    last_sent_at TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0
)
""",
    # in_flight() runs before every publish; without this it reads the whole backlog.
    "CREATE INDEX IF NOT EXISTS taps_last_sent_at ON taps (last_sent_at)",
)
_COLUMNS: Final = "event_id, seq, boot_id, payload, created_at, last_sent_at, attempts"


@dataclass(frozen=True)
class PendingTap:
    """A stored tap still waiting for its ack."""

    event_id: UUID
    seq: int
    boot_id: UUID
    payload: bytes
    created_at: datetime
    last_sent_at: datetime | None
    attempts: int


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("outbox timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _unstamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _row_to_pending(row: tuple[str, int, str, bytes, str, str | None, int]) -> PendingTap:
    event_id, seq, boot_id, payload, created_at, last_sent_at, attempts = row
    return PendingTap(
        event_id=UUID(event_id),
        seq=seq,
        boot_id=UUID(boot_id),
        payload=bytes(payload),
        created_at=_unstamp(created_at),
        last_sent_at=_unstamp(last_sent_at) if last_sent_at is not None else None,
        attempts=attempts,
    )


class Outbox:
    """Taps waiting for the server's ack, in a SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                path,
                # Autocommit; multi-statement changes open their own transaction.
                isolation_level=None,
                check_same_thread=False,
                timeout=_BUSY_TIMEOUT_SECONDS,
            )
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
        try:
            self._set_up(self._conn)
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def _set_up(self, conn: sqlite3.Connection) -> None:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            # SQLite answers with the mode it is in; some file systems refuse WAL.
            if str(mode).lower() != "wal":
                raise OutboxError(f"outbox {self._path}: cannot use WAL (journal mode {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise OutboxError(
                    f"outbox {self._path} has schema {version}, newer than this agent's "
                    f"{SCHEMA_VERSION}; upgrade the agent"
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self._path}: {exc}") from exc

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, held under the lock; SQLite errors become OutboxError."""
        with self._lock:
            if self._conn is None:
                raise OutboxError(f"outbox {self._path} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise OutboxError(f"outbox {self._path}: {exc}") from exc

    def append(self, tap: Tap, payload: bytes, *, created_at: datetime | None = None) -> None:
        """Store a tap durably (the commit is on disk when this returns)."""
        stamp = _stamp(created_at or datetime.now(UTC))
        with self._connection() as conn:
            try:
                conn.execute(
                    "INSERT INTO taps (event_id, boot_id, seq, payload, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (str(tap.event_id), str(tap.boot_id), tap.seq, payload, stamp),
                )
            except sqlite3.IntegrityError as exc:
                raise OutboxError(f"tap {tap.event_id} is already in the outbox") from exc

    def pending(self, limit: int, sent_before: datetime | None = None) -> list[PendingTap]:
        """Up to `limit` taps, oldest first; with `sent_before`, only those not sent since."""
        with self._connection() as conn:
            if sent_before is None:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM taps ORDER BY position LIMIT ?",  # noqa: S608
                    (limit,),
                )
            else:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM taps"  # noqa: S608 - constant column list
                    " WHERE last_sent_at IS NULL OR last_sent_at < ?"
                    " ORDER BY position LIMIT ?",
                    (_stamp(sent_before), limit),
                )
            return [_row_to_pending(row) for row in rows.fetchall()]

    def in_flight(self, sent_since: datetime) -> int:
        """How many taps were published at or after `sent_since` and are still unacked."""
        with self._connection() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM taps WHERE last_sent_at >= ?", (_stamp(sent_since),)
            ).fetchone()
            return int(count)

    def mark_sent(self, event_ids: Iterable[UUID], at: datetime) -> None:
        """Record that these taps were published at `at` (one more attempt each)."""
        stamp = _stamp(at)
        params = [(stamp, str(event_id)) for event_id in event_ids]
        if not params:
            return
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "UPDATE taps SET last_sent_at = ?, attempts = attempts + 1 WHERE event_id = ?",
                params,
            )
            conn.execute("COMMIT")

    def remove(self, event_id: UUID) -> bool:
        """Delete a tap the server has acked; False if it was not (or no longer) here."""
        with self._connection() as conn:
            cursor = conn.execute("DELETE FROM taps WHERE event_id = ?", (str(event_id),))
            return cursor.rowcount > 0

    def depth(self) -> int:
        """How many taps wait for their ack."""
        with self._connection() as conn:
            (count,) = conn.execute("SELECT count(*) FROM taps").fetchone()
            return int(count)

    def oldest_pending_at(self) -> datetime | None:
        """When the oldest waiting tap was stored, or None if the outbox is empty."""
        with self._connection() as conn:
            row = conn.execute("SELECT created_at FROM taps ORDER BY position LIMIT 1").fetchone()
            return _unstamp(row[0]) if row is not None else None

    def reset_sent(self) -> int:
        """Make every waiting tap due for publishing now; return how many were not already."""
        with self._connection() as conn:
            cursor = conn.execute(
                "UPDATE taps SET last_sent_at = NULL WHERE last_sent_at IS NOT NULL"
            )
            return cursor.rowcount

    def pragma(self, name: str) -> str:
        """The value of a durability pragma on this connection (journal_mode, synchronous)."""
        if name not in ("journal_mode", "synchronous"):
            raise ValueError(f"not a pragma the outbox reports: {name!r}")
        with self._connection() as conn:
            (value,) = conn.execute(f"PRAGMA {name}").fetchone()
            return str(value)

    def close(self) -> None:
        """Close the database; safe to call more than once."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
