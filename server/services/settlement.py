"""Settling points: score closed sessions under the rule book and bring the ledger in line.

Used by closing a session and by re-scoring a period. Scoring covers whole
quarters (caps run per day, month and quarter), but only the sessions in scope
get ledger entries. Sessions not yet closed keep their tap-time credits.
Entries are appended with batched Core inserts; nothing is updated or deleted.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo

from sqlalchemy import Connection, func, or_, select

from server.audit.chain import record_audit
from server.db.lookups import chunks
from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    LedgerEntry,
    SeriesSession,
    table_of,
)
from server.domain.attendance import AttendanceStatus, Marks
from server.domain.ledger import Change, Entry, Ledger, NewEntry, diff, reconcile
from server.domain.points import Credit, CreditKey, LedgerSource, Scorable, score
from server.errors import DomainError
from server.services.rules import rule_book
from server.services.unit_of_work import UnitOfWork


def quarter_start(day: date) -> date:
    """First day of the quarter `day` is in."""
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def quarter_end(day: date) -> date:
    """First day of the quarter after the one `day` is in."""
    start = quarter_start(day)
    return date(start.year + (start.month == 10), (start.month + 2) % 12 + 1, 1)


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The UTC instant a local day begins."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Settlement:
    """What the ledger holds and what the rules say, for the sessions in scope."""

    ledger: Ledger
    target: dict[CreditKey, Credit]
    scope: frozenset[int]
    attendance_ids: dict[CreditKey, int]
    next_seq: dict[int, int]

    def in_scope(self, key: CreditKey) -> bool:
        """Whether a credit belongs to a session in scope."""
        return key[1] in self.scope

    def preview(self) -> list[Change]:
        """The credits that would change."""
        return diff(self.ledger, self.target, self.in_scope)


def _series_of(connection: Connection, session_ids: set[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    for part in chunks(session_ids):
        found.update(
            connection.execute(
                select(SeriesSession.session_id, SeriesSession.series_id).where(
                    SeriesSession.session_id.in_(part)
                )
            ).all()
        )
    return found


def settlement(
    connection: Connection, scope: Iterable[int], zone: tzinfo, *, closing: int | None = None
) -> Settlement:
    """Score the quarters around the sessions in `scope` (closed ones, plus `closing`)."""
    scope = set(scope)
    if closing is not None:
        scope.add(closing)
    if not scope:
        return Settlement(Ledger(), {}, frozenset(), {}, {})
    bounds = connection.execute(
        select(func.min(AttendanceSession.starts_at), func.max(AttendanceSession.starts_at)).where(
            AttendanceSession.id.in_(scope)
        )
    ).one()
    first = local_midnight(quarter_start(bounds[0].astimezone(zone).date()), zone)
    last = local_midnight(quarter_end(bounds[1].astimezone(zone).date()), zone)
    closed = or_(AttendanceSession.closed_at.is_not(None), AttendanceSession.id == closing)
    sessions = {
        row.id: row
        for row in connection.execute(
            select(
                AttendanceSession.id,
                AttendanceSession.starts_at,
                AttendanceSession.ends_at,
                AttendanceSession.closed_at,
                ActivityType.code,
            )
            .join(ActivityType, ActivityType.id == AttendanceSession.activity_type_id)
            .where(
                AttendanceSession.starts_at >= first,
                AttendanceSession.starts_at < last,
                AttendanceSession.cancelled_at.is_(None),
            )
        )
    }
    series = _series_of(connection, set(sessions))
    open_series = frozenset(
        series[s]
        for s, row in sessions.items()
        if s in series and row.closed_at is None and s != closing
    )
    scored = {s for s, row in sessions.items() if row.closed_at is not None or s == closing}
    scope &= scored
    scorables: list[Scorable] = []
    attendance_ids: dict[CreditKey, int] = {}
    rows = connection.execute(
        select(
            Attendance.id,
            Attendance.member_id,
            Attendance.session_id,
            Attendance.status,
            Attendance.checked_in_at,
            Attendance.checked_out_at,
        )
        .join(AttendanceSession, AttendanceSession.id == Attendance.session_id)
        .where(AttendanceSession.starts_at >= first, AttendanceSession.starts_at < last, closed)
    )
    for att_id, member_id, session_id, status, checked_in, checked_out in rows:
        if session_id not in scored:
            continue
        row = sessions[session_id]
        attendance_ids[(member_id, session_id)] = att_id
        scorables.append(
            Scorable(
                member_id=member_id,
                session_id=session_id,
                activity_type=row.code,
                starts_at=row.starts_at,
                ends_at=row.ends_at,
                status=AttendanceStatus(status),
                marks=Marks(checked_in, checked_out),
                series_id=series.get(session_id),
            )
        )
    target = {
        k: c
        for k, c in score(scorables, rule_book(connection), zone, open_series=open_series).items()
        if k[1] in scope
    }
    in_scope_ids = [att for (_, s), att in attendance_ids.items() if s in scope]
    entries: list[Entry] = []
    next_seq: dict[int, int] = {}
    session_of = {att: key[1] for key, att in attendance_ids.items()}
    for part in chunks(in_scope_ids):
        for line in connection.execute(
            select(
                LedgerEntry.id,
                LedgerEntry.member_id,
                LedgerEntry.amount,
                LedgerEntry.source,
                LedgerEntry.rule_version,
                LedgerEntry.attendance_id,
                LedgerEntry.reverses_id,
                LedgerEntry.reason,
                LedgerEntry.credit_seq,
            ).where(LedgerEntry.attendance_id.in_(part))
        ):
            source = LedgerSource(line.source)
            if source is LedgerSource.ATTENDANCE:
                next_seq[line.attendance_id] = max(
                    next_seq.get(line.attendance_id, 0), line.credit_seq + 1
                )
            entries.append(
                Entry(
                    member_id=line.member_id,
                    amount=line.amount,
                    source=source,
                    rule_version=line.rule_version,
                    session_id=session_of.get(line.attendance_id),
                    reverses_id=line.reverses_id,
                    reason=line.reason,
                    id=line.id,
                )
            )
    entries.sort(key=lambda e: e.id)
    return Settlement(Ledger(tuple(entries)), target, frozenset(scope), attendance_ids, next_seq)


def apply(connection: Connection, settled: Settlement, reason: str, at: datetime) -> list[NewEntry]:
    """Append the reversals and credits that make the ledger match; returns them."""
    new = reconcile(settled.ledger, settled.target, reason, settled.in_scope)
    if not new:
        return new
    seq = dict(settled.next_seq)
    rows = []
    for entry in new:
        assert entry.session_id is not None
        attendance_id = settled.attendance_ids[(entry.member_id, entry.session_id)]
        credit_seq = 0
        if entry.source is LedgerSource.ATTENDANCE:
            credit_seq = seq.get(attendance_id, 0)
            seq[attendance_id] = credit_seq + 1
        rows.append(
            {
                "member_id": entry.member_id,
                "amount": entry.amount,
                "source": entry.source.value,
                "rule_version": entry.rule_version,
                "attendance_id": attendance_id,
                "reverses_id": entry.reverses_id,
                "reason": entry.reason,
                "credit_seq": credit_seq,
                "created_at": at,
            }
        )
    connection.execute(table_of(LedgerEntry).insert(), rows)
    return new


def rescore(
    uow: UnitOfWork,
    start: date,
    end: date,
    *,
    apply_changes: bool,
    now: datetime,
    zone: tzinfo,
    actor: str | None = None,
) -> list[Change]:
    """Re-score closed sessions starting in [start, end) locally: a preview, or applied.

    Applied with an `actor`, the re-score is written to the audit chain with it.
    """
    if end <= start:
        raise DomainError(f"a period must end after it starts ({start} – {end})")
    with uow:
        connection = uow.session.connection()
        scope = connection.scalars(
            select(AttendanceSession.id).where(
                AttendanceSession.starts_at >= local_midnight(start, zone),
                AttendanceSession.starts_at < local_midnight(end, zone),
                AttendanceSession.closed_at.is_not(None),
                AttendanceSession.cancelled_at.is_(None),
            )
        ).all()
        settled = settlement(connection, scope, zone)
        changes = settled.preview()
        if apply_changes:
            added = apply(connection, settled, f"re-scored {start} – {end}", now)
            if actor is not None:
                record_audit(
                    uow.session,
                    actor=actor,
                    action="points.rescore",
                    target=f"{start.isoformat()} – {end.isoformat()}",
                    details={"changes": len(changes), "entries": len(added)},
                    at=now,
                )
            uow.commit()
    return changes
