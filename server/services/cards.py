"""Cards from the console: issue, replace, report lost, revoke; bind an unknown card; enrol by tap.

Every change is audited. A card changes status but is never deleted: old taps
keep naming the card they were made with.
"""

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from protocol import CardTech, TapMode
from server.audit.chain import record_audit
from server.db import lookups
from server.db.lookups import CardInfo
from server.db.models import Card, EnrollRequest, Member, Reader, UnknownCard
from server.domain.cards import CardStatus
from server.errors import Conflict, DomainError, NotFound
from server.services.auth import Principal
from server.services.auth_scope import require_member
from server.services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

_UID: Final = re.compile(r"^[0-9A-F]{4,64}$")
# How long a picked member waits for the card to be tapped on the enrolment reader.
ENROLL_WAIT: Final = timedelta(minutes=3)
# Taps are stamped by the reader's clock: allow it to run this far behind ours.
READER_SLACK: Final = timedelta(seconds=30)


def _uid(uid: str) -> str:
    cleaned = uid.strip().replace(":", "").replace(" ", "").upper()
    if not _UID.match(cleaned):
        raise DomainError("a card UID is 4–64 hexadecimal digits")
    return cleaned


def _tech(tech: str) -> str:
    try:
        return CardTech(tech).value
    except ValueError as exc:
        raise DomainError(f"unknown card technology {tech!r}") from exc


def _member(db: Session, principal: Principal, member_id: int) -> Member:
    require_member(db.connection(), principal, member_id)
    member = db.get(Member, member_id)
    assert member is not None
    return member


def _card(db: Session, principal: Principal, card_id: int) -> Card:
    card = db.get(Card, card_id)
    if card is None:
        raise NotFound("card", card_id)
    try:
        require_member(db.connection(), principal, card.member_id)
    except NotFound as exc:
        raise NotFound("card", card_id) from exc
    return card


def _add_card(db: Session, member: Member, tech: str, uid: str, now: datetime) -> Card:
    taken = db.scalar(
        select(Member.name)
        .join(Card, Card.member_id == Member.id)
        .where(Card.tech == tech, Card.uid == uid, Card.status == CardStatus.ACTIVE.value)
    )
    if taken is not None:
        raise Conflict(f"card {uid} is already active for {taken}")
    card = Card(
        tech=tech, uid=uid, member_id=member.id, status=CardStatus.ACTIVE.value, issued_at=now
    )
    db.add(card)
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict(f"card {uid} is already active") from exc
    # A card now held is no longer waiting in the inbox.
    inbox = db.scalar(
        select(UnknownCard).where(
            UnknownCard.tech == tech, UnknownCard.uid == uid, UnknownCard.resolved_at.is_(None)
        )
    )
    if inbox is not None:
        inbox.resolved_at = now
    return card


def issue_card(
    uow: UnitOfWork, principal: Principal, *, member_id: int, tech: str, uid: str, now: datetime
) -> int:
    """Give a member a new active card; its id."""
    tech, uid = _tech(tech), _uid(uid)
    with uow:
        db = uow.session
        member = _member(db, principal, member_id)
        card = _add_card(db, member, tech, uid, now)
        record_audit(
            db,
            actor=principal.username,
            action="card.issue",
            target=f"member {member.employee_no}",
            details={"card_id": card.id, "tech": tech, "uid": uid},
            at=now,
        )
        card_id = card.id
        uow.commit()
    return card_id


def replace_card(
    uow: UnitOfWork, principal: Principal, *, card_id: int, tech: str, uid: str, now: datetime
) -> int:
    """Swap a member's card for a new one; the old one is marked replaced. The new card's id."""
    tech, uid = _tech(tech), _uid(uid)
    with uow:
        db = uow.session
        old = _card(db, principal, card_id)
        if old.status != CardStatus.ACTIVE.value:
            raise Conflict(f"card {card_id} is {old.status}; issue a new card instead")
        old.status, old.status_changed_at = CardStatus.REPLACED.value, now
        db.flush()
        member = _member(db, principal, old.member_id)
        new = _add_card(db, member, tech, uid, now)
        record_audit(
            db,
            actor=principal.username,
            action="card.replace",
            target=f"member {member.employee_no}",
            details={"old_card_id": card_id, "card_id": new.id, "tech": tech, "uid": uid},
            at=now,
        )
        new_id = new.id
        uow.commit()
    return new_id


def set_card_status(
    uow: UnitOfWork, principal: Principal, *, card_id: int, status: CardStatus, now: datetime
) -> None:
    """Report an active card lost, or revoke it; its taps are refused from now on."""
    if status not in (CardStatus.LOST, CardStatus.REVOKED):
        raise DomainError("a card can be reported lost or revoked here")
    with uow:
        db = uow.session
        card = _card(db, principal, card_id)
        if card.status not in (CardStatus.ACTIVE.value, CardStatus.LOST.value):
            raise Conflict(f"card {card_id} is already {card.status}")
        if card.status == status.value:
            raise Conflict(f"card {card_id} is already {card.status}")
        before = card.status
        card.status, card.status_changed_at = status.value, now
        member = db.get(Member, card.member_id)
        record_audit(
            db,
            actor=principal.username,
            action=f"card.{status.value}",
            target=f"member {member.employee_no if member else card.member_id}",
            details={"card_id": card_id, "uid": card.uid, "was": before},
            at=now,
        )
        uow.commit()


@dataclass(frozen=True)
class InboxCard:
    """A card seen but held by nobody."""

    id: int
    tech: str
    uid: str
    first_seen_at: datetime
    last_seen_at: datetime
    tap_count: int
    last_reader_id: str | None
    last_mode: str | None


def inbox(db: Session, *, limit: int = 100) -> list[InboxCard]:
    """Unknown cards waiting, most recently seen first."""
    rows = db.execute(
        select(
            UnknownCard.id,
            UnknownCard.tech,
            UnknownCard.uid,
            UnknownCard.first_seen_at,
            UnknownCard.last_seen_at,
            UnknownCard.tap_count,
            UnknownCard.last_reader_id,
            UnknownCard.last_mode,
        )
        .where(UnknownCard.resolved_at.is_(None))
        .order_by(UnknownCard.last_seen_at.desc())
        .limit(limit)
    ).all()
    return [InboxCard(*row) for row in rows]


def bind_unknown(
    uow: UnitOfWork, principal: Principal, *, unknown_id: int, employee_no: str, now: datetime
) -> int:
    """Issue a card from the inbox to a member in one step; the card's id."""
    with uow:
        db = uow.session
        waiting = db.get(UnknownCard, unknown_id)
        if waiting is None or waiting.resolved_at is not None:
            raise NotFound("unknown card", unknown_id)
        member_id = db.scalar(select(Member.id).where(Member.employee_no == employee_no.strip()))
        if member_id is None:
            raise NotFound("member with employee number", employee_no)
        member = _member(db, principal, member_id)
        card = _add_card(db, member, waiting.tech, waiting.uid, now)
        record_audit(
            db,
            actor=principal.username,
            action="card.bind_unknown",
            target=f"member {member.employee_no}",
            details={"card_id": card.id, "tech": waiting.tech, "uid": waiting.uid},
            at=now,
        )
        card_id = card.id
        uow.commit()
    return card_id


def enrol_readers(db: Session) -> list[tuple[str, str | None]]:
    """Readers in enroll mode: (reader_id, name)."""
    rows = db.execute(
        select(Reader.reader_id, Reader.name)
        .where(Reader.mode == TapMode.ENROLL.value)
        .order_by(Reader.reader_id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def start_enrolment(
    uow: UnitOfWork, principal: Principal, *, reader_id: str, member_id: int, now: datetime
) -> int:
    """Pick a member for the next card tapped on an enroll-mode reader; the request's id."""
    with uow:
        db = uow.session
        member = _member(db, principal, member_id)
        mode = db.scalar(select(Reader.mode).where(Reader.reader_id == reader_id))
        if mode is None:
            raise NotFound("reader", reader_id)
        if mode != TapMode.ENROLL.value:
            raise Conflict(f"reader {reader_id} is not in enroll mode")
        request = EnrollRequest(
            reader_id=reader_id,
            member_id=member.id,
            requested_by=principal.username,
            created_at=now,
            expires_at=now + ENROLL_WAIT,
        )
        db.add(request)
        db.flush()
        request_id = request.id
        uow.commit()
    return request_id


@dataclass(frozen=True)
class Enrolment:
    """Where an enrolment stands: waiting, done (with the card) or expired."""

    id: int
    reader_id: str
    member_id: int
    expires_at: datetime
    card_uid: str | None
    state: str


def enrol_tapped_card(
    connection: Connection,
    *,
    reader_id: str,
    tech: str,
    uid: str,
    tapped_at: datetime,
    received_at: datetime,
) -> CardInfo | None:
    """Bind a card tapped on an enroll-mode reader to the member picked for it, if one is.

    The ingest calls this for a tap of a card no member holds; in the caller's
    transaction (a batch of taps), inside a savepoint. The pick is the newest
    enrolment of the reader still open when the tap arrived and made no later than
    the tap (give or take READER_SLACK of reader clock), locked against the
    console's `poll_enrolment` binding it meanwhile. The card is issued, the pick
    completed and both audited as the administrator who made the pick, as the
    console would: binding no longer waits for the console page to be open. The
    new card; None if no pick is open or the card turned out to be active already
    (left for the caller to file in the inbox).
    """
    with Session(bind=connection, join_transaction_mode="create_savepoint") as db:
        request = db.scalar(
            select(EnrollRequest)
            .where(
                EnrollRequest.reader_id == reader_id,
                EnrollRequest.card_id.is_(None),
                EnrollRequest.expires_at > received_at,
                EnrollRequest.created_at <= tapped_at + READER_SLACK,
            )
            .order_by(EnrollRequest.created_at.desc(), EnrollRequest.id.desc())
            .limit(1)
            .with_for_update()
        )
        if request is None:
            return None
        member = db.get(Member, request.member_id)
        assert member is not None  # a foreign key
        try:
            card = _add_card(db, member, tech, uid, received_at)
        except Conflict as exc:
            # Active for someone since the batch looked: rolled back, and the tap is filed.
            log.warning("enrolment tap on %s not bound to %s: %s", reader_id, member.name, exc)
            return None
        _complete(db, request, member, card, received_at)
        db.commit()  # the savepoint; the batch's transaction commits it all
    # As every tap's card is read (one query, for an enrolment only).
    return lookups.cards_by_key(connection, [(tech, uid)]).get((tech, uid))


def _complete(
    db: Session, request: EnrollRequest, member: Member, card: Card, now: datetime
) -> None:
    """Mark an enrolment done with its card, audited as the administrator who picked."""
    request.card_id, request.completed_at = card.id, now
    record_audit(
        db,
        actor=request.requested_by,
        action="card.enrol",
        target=f"member {member.employee_no}",
        details={"card_id": card.id, "uid": card.uid, "reader_id": request.reader_id},
        at=now,
    )


def poll_enrolment(
    uow: UnitOfWork, principal: Principal, request_id: int, now: datetime
) -> Enrolment:
    """Where an enrolment stands; binds a card filed from its reader since the pick.

    The ingest binds a card tapped on the reader while the pick is open itself
    (`enrol_tapped_card`). One it filed in the inbox from that reader shortly
    before the pick (within READER_SLACK: tapped first, picked after) is bound
    here, the newest such.
    """
    with uow:
        db = uow.session
        # Locked: the ingest may be binding a tap to it at this moment.
        request = db.get(EnrollRequest, request_id, with_for_update=True)
        if request is None:
            raise NotFound("enrolment", request_id)
        member = _member(db, principal, request.member_id)
        uid = None
        if request.card_id is not None:
            card = db.get(Card, request.card_id)
            uid = card.uid if card else None
            state = "done"
        elif now > request.expires_at:
            state = "expired"
        else:
            tapped = db.scalar(
                select(UnknownCard)
                .where(
                    UnknownCard.last_reader_id == request.reader_id,
                    UnknownCard.last_mode == TapMode.ENROLL.value,
                    UnknownCard.last_seen_at >= request.created_at - READER_SLACK,
                    UnknownCard.resolved_at.is_(None),
                )
                .order_by(UnknownCard.last_seen_at.desc())
                .limit(1)
            )
            state = "waiting"
            if tapped is not None:
                card = _add_card(db, member, tapped.tech, tapped.uid, now)
                _complete(db, request, member, card, now)
                uid, state = card.uid, "done"
                uow.commit()
        return Enrolment(
            request.id, request.reader_id, request.member_id, request.expires_at, uid, state
        )
