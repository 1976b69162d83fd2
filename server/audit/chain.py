"""Append to the audit chain and check it.

Each row's `hash` is the SHA-256 of its canonical content (id, time, actor,
action, target, details) together with the previous row's hash, so changing,
removing or reordering any row breaks every link from there on. Appending takes
a lock first (an advisory transaction lock on PostgreSQL; on SQLite the write
transaction's BEGIN IMMEDIATE already serialises writers), so concurrent
writers queue up instead of forking the chain; the unique `prev_hash` refuses a
fork should the lock ever be missing.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from server.db.models import AuditEntry

GENESIS_HASH: Final = "0" * 64
# Any fixed number: the key of the advisory lock that serialises appends on PostgreSQL.
_LOCK_KEY: Final = 0x526F6C6C41756469  # "RollAudi"


def row_hash(
    *,
    entry_id: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """The SHA-256 (hex) of a row's canonical content and the previous row's hash."""
    content = {
        "id": entry_id,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "details": details,
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One row to append: who did what to what, with its details."""

    actor: str
    action: str
    target: str
    details: Mapping[str, Any]


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
    at: datetime | None = None,
) -> AuditEntry:
    """Append one row to the chain in the caller's write transaction (committed with it)."""
    (entry,) = record_audits(session, [AuditRecord(actor, action, target, details)], at=at)
    return entry


def record_audits(
    session: Session, records: Sequence[AuditRecord], *, at: datetime | None = None
) -> list[AuditEntry]:
    """Append rows to the chain in order, in the caller's write transaction.

    One lock and one read of the chain's end for all of them, and one flush: a
    bulk operation audits each item without a round trip or three per row.
    """
    if not records:
        return []
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    last = session.execute(
        select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
    ).first()
    entry_id, prev_hash = (last[0], last[1]) if last is not None else (0, GENESIS_HASH)
    # Stored to the microsecond on both backends, so the hash can be recomputed.
    when = (at or datetime.now(UTC)).astimezone(UTC)
    entries = []
    for record in records:
        entry_id += 1
        # Round-trip through JSON now, so what is hashed is exactly what is read back.
        body = json.loads(json.dumps(dict(record.details), ensure_ascii=False))
        digest = row_hash(
            entry_id=entry_id,
            at=when,
            actor=record.actor,
            action=record.action,
            target=record.target,
            details=body,
            prev_hash=prev_hash,
        )
        entries.append(
            AuditEntry(
                id=entry_id,
                at=when,
                actor=record.actor,
                action=record.action,
                target=record.target,
                details=body,
                prev_hash=prev_hash,
                hash=digest,
            )
        )
        prev_hash = digest
    session.add_all(entries)
    session.flush()
    return entries


def verify_chain(session: Session) -> int | None:
    """The id of the first row whose link or hash is wrong, or None if the chain holds."""
    expected_prev = GENESIS_HASH
    rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).yield_per(1000)
    for entry in rows:
        recomputed = row_hash(
            entry_id=entry.id,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            details=entry.details,
            prev_hash=entry.prev_hash,
        )
        if entry.prev_hash != expected_prev or entry.hash != recomputed:
            return entry.id
        expected_prev = entry.hash
    return None


def count_entries(session: Session) -> int:
    """How many rows the audit log holds."""
    return session.scalar(select(func.count()).select_from(AuditEntry)) or 0
