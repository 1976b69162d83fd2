"""Manual ledger corrections: adjustments with a reason, reversals of single entries."""

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.db.models import LedgerEntry, Member
from server.domain import ledger as rules
from server.domain.ledger import Entry, Ledger
from server.domain.points import LedgerSource
from server.errors import Conflict, LedgerError, NotFound
from server.services.rules import rule_book
from server.services.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class Appended:
    """An entry written to the ledger, and the member's balance after it."""

    entry_id: int
    member_id: int
    amount: int
    source: str
    rule_version: str
    balance: int


def _append(
    uow: UnitOfWork, new: rules.NewEntry, attendance_id: int | None, now: datetime
) -> Appended:
    row = LedgerEntry(
        member_id=new.member_id,
        amount=new.amount,
        source=new.source.value,
        rule_version=new.rule_version,
        attendance_id=attendance_id,
        reverses_id=new.reverses_id,
        reason=new.reason,
        created_at=now,
    )
    uow.session.add(row)
    try:
        uow.session.flush()
    except IntegrityError as exc:
        raise Conflict(f"the ledger refused the entry: {exc.orig}") from exc
    total = sum(
        uow.session.scalars(
            select(LedgerEntry.amount).where(LedgerEntry.member_id == new.member_id)
        )
    )
    return Appended(row.id, row.member_id, row.amount, row.source, row.rule_version, total)


def adjust(
    uow: UnitOfWork, employee_no: str, amount: int, reason: str, *, now: datetime, zone: tzinfo
) -> Appended:
    """Add a manual adjustment under the rule version in effect today."""
    with uow:
        member_id = uow.session.scalar(select(Member.id).where(Member.employee_no == employee_no))
        if member_id is None:
            raise NotFound("member with employee number", employee_no)
        version = rule_book(uow.session.connection()).in_effect(now.astimezone(zone).date())
        entry = rules.adjustment(member_id, amount, reason, version.version)
        done = _append(uow, entry, None, now)
        uow.commit()
    return done


def reverse(uow: UnitOfWork, entry_id: int, reason: str, now: datetime) -> Appended:
    """Reverse one entry; LedgerError if it is a reversal or was reversed already."""
    if not reason.strip():
        raise LedgerError("a reversal needs a reason")
    with uow:
        target = uow.session.get(LedgerEntry, entry_id)
        if target is None:
            raise NotFound("ledger entry", entry_id)
        reversals = uow.session.scalars(
            select(LedgerEntry.id).where(LedgerEntry.reverses_id == entry_id)
        ).all()
        known = [
            Entry(
                target.member_id,
                target.amount,
                LedgerSource(target.source),
                target.rule_version,
                id=target.id,
            ),
            *(
                Entry(
                    target.member_id,
                    -target.amount,
                    LedgerSource.REVERSAL,
                    "",
                    reverses_id=entry_id,
                    id=r,
                )
                for r in reversals
            ),
        ]
        try:
            entry = rules.reversal_of(Ledger(tuple(known)), entry_id, reason)
        except LedgerError as exc:
            raise Conflict(str(exc)) from exc
        done = _append(uow, entry, target.attendance_id, now)
        uow.commit()
    return done
