"""Reading the audit log with filters, newest first (who, what, which object, when)."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from server.db.models import AuditEntry


@dataclass(frozen=True)
class AuditFilter:
    """Which audit rows to show; empty fields do not filter."""

    actor: str = ""
    action: str = ""
    target: str = ""
    start: date | None = None
    end: date | None = None  # inclusive, a local day


@dataclass(frozen=True)
class AuditLine:
    """One audit row as the page shows it."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]


def audit_page(
    db: Session, wanted: AuditFilter, zone: tzinfo, *, limit: int = 50, offset: int = 0
) -> tuple[int, list[AuditLine]]:
    """Audit rows matching the filter, newest first, and how many match in all."""
    conditions: list[ColumnElement[bool]] = []
    if wanted.actor.strip():
        conditions.append(AuditEntry.actor.like(f"%{wanted.actor.strip()}%"))
    if wanted.action.strip():
        conditions.append(AuditEntry.action.like(f"{wanted.action.strip()}%"))
    if wanted.target.strip():
        conditions.append(AuditEntry.target.like(f"%{wanted.target.strip()}%"))
    if wanted.start is not None:
        conditions.append(AuditEntry.at >= datetime.combine(wanted.start, time.min, tzinfo=zone))
    if wanted.end is not None:
        after = datetime.combine(wanted.end + timedelta(days=1), time.min, tzinfo=zone)
        conditions.append(AuditEntry.at < after)
    total = db.scalar(select(func.count()).select_from(AuditEntry).where(*conditions)) or 0
    rows = db.scalars(
        select(AuditEntry)
        .where(*conditions)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return total, [
        AuditLine(r.id, r.at, r.actor, r.action, r.target, dict(r.details)) for r in rows
    ]


def actions(db: Session) -> list[str]:
    """Every action name the log holds, for the filter's choices."""
    return list(db.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
