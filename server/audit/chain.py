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
from collections.abc import Mapping
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
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    last = session.execute(
        select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
    ).first()
    entry_id, prev_hash = (last[0] + 1, last[1]) if last is not None else (1, GENESIS_HASH)
    # Stored to the microsecond on both backends, so the hash can be recomputed.
    when = (at or datetime.now(UTC)).astimezone(UTC)
    body = dict(details)
    # Round-trip through JSON now, so what is hashed is exactly what is read back.
    body = json.loads(json.dumps(body, ensure_ascii=False))
    entry = AuditEntry(
        id=entry_id,
        at=when,
        actor=actor,
        action=action,
        target=target,
        details=body,
        prev_hash=prev_hash,
        hash=row_hash(
            entry_id=entry_id,
            at=when,
            actor=actor,
            action=action,
            target=target,
            details=body,
            prev_hash=prev_hash,
        ),
    )
    session.add(entry)
    session.flush()
    return entry


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
