"""Finding members (by name, pinyin initials or employee number) and a member's record.

Pinyin is kept in `member_pinyin`, one row per member with the name it was made
from; rows missing or made from an older name are refreshed before a search, so
whoever writes members (imports, the API) need not know about it.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from pypinyin import Style, lazy_pinyin
from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session, sessionmaker

from server.db.models import (
    ActivityType,
    Attendance,
    AttendanceSession,
    Card,
    LedgerEntry,
    Member,
    MemberPinyin,
    OrgUnit,
    table_of,
)
from server.errors import NotFound
from server.services.auth import Principal
from server.services.auth_scope import member_condition, require_member
from server.services.unit_of_work import UnitOfWork

_LATIN: Final = re.compile(r"^[A-Za-z]+$")


def pinyin_of(name: str) -> tuple[str, str]:
    """A name's pinyin initials and full pinyin, lower case (张三明 → zsm, zhangsanming)."""
    syllables = lazy_pinyin(name)
    initials = "".join(s[:1] for s in lazy_pinyin(name, style=Style.FIRST_LETTER))
    return initials.lower()[:100], "".join(syllables).lower()[:400]


def refresh_pinyin(uow: UnitOfWork, reads: sessionmaker[Session]) -> int:
    """Make pinyin rows for members without one or renamed since; how many were made.

    Call it before the request's own read transaction starts, so that one sees the rows.
    """
    with reads() as db:
        stale = db.execute(
            select(Member.id, Member.name)
            .outerjoin(MemberPinyin, MemberPinyin.member_id == Member.id)
            .where(or_(MemberPinyin.member_id.is_(None), MemberPinyin.name != Member.name))
        ).all()
    if not stale:
        return 0
    rows = []
    for member_id, name in stale:
        initials, full = pinyin_of(name)
        rows.append({"member_id": member_id, "name": name, "initials": initials, "full": full})
    with uow:
        db = uow.session
        ids = [row["member_id"] for row in rows]
        for start in range(0, len(ids), 500):
            db.execute(
                delete(MemberPinyin).where(MemberPinyin.member_id.in_(ids[start : start + 500]))
            )
        db.execute(insert(table_of(MemberPinyin)), rows)
        uow.commit()
    return len(rows)


@dataclass(frozen=True)
class MemberHit:
    """A member found by a search."""

    id: int
    employee_no: str
    name: str
    org_unit: str
    category: str
    active_cards: int


def search(
    db: Session, principal: Principal, text: str, *, limit: int = 50, offset: int = 0
) -> tuple[int, list[MemberHit]]:
    """Members in scope matching the text (name, pinyin initials or full, employee number)."""
    text = text.strip()
    conditions = [member_condition(principal)]
    if text:
        like = f"%{text}%"
        options = [Member.name.like(like), Member.employee_no.like(f"{text}%")]
        if _LATIN.match(text):
            lowered = text.lower()
            options += [
                MemberPinyin.initials.like(f"{lowered}%"),
                MemberPinyin.full.like(f"{lowered}%"),
            ]
        conditions.append(or_(*options))
    base = (
        select(Member.id)
        .outerjoin(MemberPinyin, MemberPinyin.member_id == Member.id)
        .where(*conditions)
    )
    total = db.scalar(select(func.count()).select_from(base.subquery())) or 0
    cards = (
        select(func.count())
        .where(Card.member_id == Member.id, Card.status == "active")
        .scalar_subquery()
    )
    rows = db.execute(
        select(Member.id, Member.employee_no, Member.name, OrgUnit.name, Member.category, cards)
        .join(OrgUnit, OrgUnit.id == Member.org_unit_id)
        .where(Member.id.in_(base))
        .order_by(Member.employee_no)
        .limit(limit)
        .offset(offset)
    ).all()
    return total, [MemberHit(*row) for row in rows]


@dataclass(frozen=True)
class CardLine:
    """A card a member holds or held."""

    id: int
    tech: str
    uid: str
    status: str
    issued_at: datetime
    status_changed_at: datetime | None


@dataclass(frozen=True)
class AttendanceLine:
    """One session in a member's attendance history."""

    session_id: int
    title: str
    activity_type: str
    starts_at: datetime
    status: str
    checked_in_at: datetime | None


@dataclass(frozen=True)
class LedgerLine:
    """One entry of a member's points ledger."""

    id: int
    created_at: datetime
    amount: int
    source: str
    rule_version: str
    session_title: str | None
    reason: str | None
    reverses_id: int | None


@dataclass(frozen=True)
class MemberRecord:
    """A member with cards, attendance history and ledger."""

    id: int
    employee_no: str
    name: str
    org_unit: str
    org_unit_id: int
    category: str
    active_from: date | None
    active_to: date | None
    balance: int
    cards: list[CardLine]
    attendance: list[AttendanceLine]
    ledger: list[LedgerLine]


def member_record(
    db: Session, principal: Principal, member_id: int, *, limit: int = 100
) -> MemberRecord:
    """A member's record; NotFound if absent or outside the principal's scope."""
    require_member(db.connection(), principal, member_id)
    member = db.get(Member, member_id)
    if member is None:
        raise NotFound("member", member_id)
    unit = db.get(OrgUnit, member.org_unit_id)
    cards = [
        CardLine(*row)
        for row in db.execute(
            select(
                Card.id, Card.tech, Card.uid, Card.status, Card.issued_at, Card.status_changed_at
            )
            .where(Card.member_id == member_id)
            .order_by(Card.issued_at.desc(), Card.id.desc())
        )
    ]
    attendance = [
        AttendanceLine(*row)
        for row in db.execute(
            select(
                AttendanceSession.id,
                AttendanceSession.title,
                ActivityType.name,
                AttendanceSession.starts_at,
                Attendance.status,
                Attendance.checked_in_at,
            )
            .join(AttendanceSession, AttendanceSession.id == Attendance.session_id)
            .join(ActivityType, ActivityType.id == AttendanceSession.activity_type_id)
            .where(Attendance.member_id == member_id)
            .order_by(AttendanceSession.starts_at.desc())
            .limit(limit)
        )
    ]
    ledger = [
        LedgerLine(*row)
        for row in db.execute(
            select(
                LedgerEntry.id,
                LedgerEntry.created_at,
                LedgerEntry.amount,
                LedgerEntry.source,
                LedgerEntry.rule_version,
                AttendanceSession.title,
                LedgerEntry.reason,
                LedgerEntry.reverses_id,
            )
            .outerjoin(Attendance, Attendance.id == LedgerEntry.attendance_id)
            .outerjoin(AttendanceSession, AttendanceSession.id == Attendance.session_id)
            .where(LedgerEntry.member_id == member_id)
            .order_by(LedgerEntry.id.desc())
            .limit(limit)
        )
    ]
    balance = db.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.member_id == member_id
        )
    )
    return MemberRecord(
        id=member.id,
        employee_no=member.employee_no,
        name=member.name,
        org_unit=unit.name if unit else "",
        org_unit_id=member.org_unit_id,
        category=member.category,
        active_from=member.active_from,
        active_to=member.active_to,
        balance=int(balance or 0),
        cards=cards,
        attendance=attendance,
        ledger=ledger,
    )
