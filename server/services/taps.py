"""Record taps: the one use case behind the MQTT ingest worker and the HTTP API.

A batch is recorded in one transaction (group commit) with a fixed number of
statements whatever its size: batched lookups, then one INSERT each for taps,
attendance and ledger credits. The database's unique constraints, not this
code, decide races between workers sharing a subscription:

- `taps.event_id` (INSERT … ON CONFLICT DO NOTHING): a tap seen before is
  answered `duplicate` with the original outcome and has no effect;
- `attendance (member_id, session_id)`: the loser of a race downgrades its tap
  to `duplicate` and credits nothing;
- `points_ledger (attendance_id, credit_seq)` among attendance credits: the
  tap-time credit (seq 0) happens once.

A reader with a signing key must sign its taps; a bad signature or a replayed
(boot_id, seq) is stored as `rejected` and flagged (services.signatures). That
check comes after repeats are answered, so a resend is a `duplicate`, not a replay.

Where a room or activity type requires the strong card tier, a card that did not
answer its challenge is `rejected`, flagged and filed as a suspected clone; every
tap of a known card is labelled with its tier (services.cardauth).

Outcomes come back in input order. Nothing here publishes anything: the caller
answers only after the transaction has committed.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from functools import cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Dialect, bindparam, case, insert, or_, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.expression import Executable

from protocol import Ack, AckResult, Display, Tap, TapMode
from server.db import lookups
from server.db.driver import compiled_sql, driver_rows
from server.db.lookups import AttendanceInfo, CardInfo, OriginalTap, ReaderInfo
from server.db.models import (
    ATTENDANCE_CREDIT_WHERE,
    Attendance,
    LedgerEntry,
    Reader,
    TapRecord,
    UnknownCard,
    table_of,
)
from server.db.upserts import Arrays, BatchInsert, UnnestInsert, insert_for
from server.domain import display
from server.domain.attendance import (
    AttendanceStatus,
    OrgTree,
    Resolution,
    SessionCandidate,
    resolve_session,
)
from server.domain.cardkeys import CardKeyring, CardTier, clone_refused_display
from server.domain.cards import CardStatus
from server.domain.display import DisplayText
from server.domain.points import LedgerSource, RuleBook, RuleVersion, tap_time_points
from server.errors import StorageError
from server.services.cardauth import (
    CloneSighting,
    TierContext,
    file_suspected_clones,
    load_tier_context,
    record_proven_keys,
)
from server.services.cards import enrol_tapped_card
from server.services.readers import moved_forward
from server.services.reference import UNCACHED, Reference
from server.services.signatures import Accepted, Position, check_tap
from server.services.unit_of_work import Transactional

log = logging.getLogger(__name__)

DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
MAX_RAW_PAYLOAD = 64 * 1024
MAX_DETAIL = 500


@dataclass(frozen=True)
class TapPolicy:
    """Settings the tap rules depend on."""

    zone: tzinfo = DEFAULT_ZONE
    skew_tolerance: timedelta = timedelta(minutes=2)
    # The strong card tier's master keys; None: no card answer can be checked.
    card_keys: CardKeyring | None = None


DEFAULT_POLICY = TapPolicy()


@dataclass(frozen=True)
class ReceivedTap:
    """A well-formed tap and when the server received it."""

    tap: Tap
    received_at: datetime
    # The payload as it arrived, which a signature covers; None when not from the wire.
    raw: bytes | None = None


@dataclass(frozen=True)
class RejectedPayload:
    """A payload that is not a valid tap; stored as rejected with the reason."""

    reason: str
    received_at: datetime
    reader_id: str | None = None
    event_id: UUID | None = None
    raw: bytes = b""


Submission = ReceivedTap | RejectedPayload


@dataclass(frozen=True)
class Outcome:
    """The verdict on one tap, ready to be sent back as an ack."""

    event_id: UUID | None
    reader_id: str | None
    result: AckResult
    points: int
    display: DisplayText
    detail: str | None = None
    # What the tap was about, for the pages that follow taps live (kiosk, live screen).
    mode: TapMode | None = None
    member_id: int | None = None
    session_id: int | None = None

    def ack(self) -> Ack | None:
        """The ack to publish, or None when the tap named no event id to answer."""
        if self.event_id is None:
            return None
        detail = self.detail[:MAX_DETAIL] if self.detail else None
        return Ack(
            event_id=self.event_id,
            result=self.result,
            points=self.points,
            display=Display(title=self.display.title, lines=list(self.display.lines)),
            detail=detail,
        )


def record_taps(
    uow: Transactional,
    batch: Sequence[Submission],
    policy: TapPolicy = DEFAULT_POLICY,
    reference: Reference = UNCACHED,
) -> list[Outcome]:
    """Record a batch of taps in one transaction and return their outcomes in order.

    `reference` reads readers, sessions and rules: a worker passes its
    `ReferenceCache` to keep them between batches.
    """
    if not batch:
        return []
    try:
        try:
            # Most batches repeat no stored event id: skip looking them up first,
            # and let the taps INSERT tell (see _Batch.optimistic).
            with uow:
                outcomes = _Batch(
                    uow.connection(), policy, reference, batch, optimistic=True
                ).record()
                uow.commit()
        except _RepeatsFound:
            with uow:
                outcomes = _Batch(uow.connection(), policy, reference, batch).record()
                uow.commit()
    except SQLAlchemyError as exc:
        raise StorageError(f"recording a batch of {len(batch)} taps failed: {exc}") from exc
    return outcomes


def record_tap(
    uow: Transactional, submission: Submission, policy: TapPolicy = DEFAULT_POLICY
) -> Outcome:
    """Record one tap in its own transaction."""
    return record_taps(uow, [submission], policy)[0]


# --------------------------------------------------------------------------- statements
#
# Built once and reused (the upserts once per dialect): constructing an insert()
# or update() costs more CPU than a small batch's execution of it, and the very
# statement object SQLAlchemy compiled and cached skips its cache-key work.

_TAPS = table_of(TapRecord)
_ATTENDANCE = table_of(Attendance)
_LEDGER = table_of(LedgerEntry)
_READERS = table_of(Reader)
_UNKNOWN_CARDS = table_of(UnknownCard)

# Taps without an event id cannot conflict with anything.
_INSERT_TAPS_WITHOUT_ID = insert(_TAPS)

_DOWNGRADE_TAPS = (
    update(_TAPS)
    .where(_TAPS.c.id == bindparam("tap_id"))
    .values(
        result=bindparam("new_result"),
        points=0,
        display=bindparam("new_display", type_=_TAPS.c.display.type),
        detail=bindparam("new_detail"),
    )
)

_CHECK_OUT = (
    update(_ATTENDANCE)
    .where(
        _ATTENDANCE.c.member_id == bindparam("m"),
        _ATTENDANCE.c.session_id == bindparam("s"),
        _ATTENDANCE.c.checked_out_at.is_(None),
    )
    .values(
        checked_out_at=bindparam("at", type_=_ATTENDANCE.c.checked_out_at.type),
        checkout_tap_id=bindparam("tap"),
    )
)

_SEEN = bindparam("seen", type_=_READERS.c.last_seen_at.type)
# The skew is ordered by when it was measured, not by last_seen_at: a status
# report moves last_seen_at too, and may be stored before an older tap's batch.
_TOUCH_READERS = (
    update(_READERS)
    .where(
        _READERS.c.reader_id == bindparam("rid"),
        or_(_READERS.c.skew_measured_at.is_(None), _READERS.c.skew_measured_at < _SEEN),
    )
    .values(
        last_seen_at=moved_forward(_READERS.c.last_seen_at, _SEEN),
        skew_seconds=bindparam("skew"),
        skew_measured_at=_SEEN,
    )
)

_BOOT = bindparam("boot", type_=_READERS.c.last_boot_id.type)
_SEQ = bindparam("seq", type_=_READERS.c.last_seq.type)
_ADVANCE_POSITIONS = (
    update(_READERS)
    .where(
        _READERS.c.reader_id == bindparam("rid"),
        # Another worker may have gone further in the same boot meanwhile.
        or_(
            _READERS.c.last_boot_id.is_(None),
            _READERS.c.last_boot_id != _BOOT,
            _READERS.c.last_seq < _SEQ,
        ),
    )
    .values(last_boot_id=_BOOT, last_seq=_SEQ)
)


@dataclass(frozen=True)
class _Upserts:
    """The batch's INSERT … ON CONFLICT statements for one dialect."""

    taps: BatchInsert
    attendance: BatchInsert
    credits: BatchInsert
    unknown_cards: Executable


@cache
def _upserts(dialect: str) -> _Upserts:
    taps = BatchInsert(dialect, _TAPS, ["event_id"], returning=["id", "event_id"])
    attendance = BatchInsert(
        dialect,
        _ATTENDANCE,
        ["member_id", "session_id"],
        returning=["id", "member_id", "session_id"],
    )
    credits = BatchInsert(
        dialect,
        _LEDGER,
        ["attendance_id", "credit_seq"],
        conflict_where=ATTENDANCE_CREDIT_WHERE,
    )
    cards = insert_for(dialect, _UNKNOWN_CARDS)
    new, old = cards.excluded, _UNKNOWN_CARDS.c
    newer = new.last_seen_at > old.last_seen_at
    unknown_cards = cards.on_conflict_do_update(
        index_elements=["tech", "uid"],
        set_={
            "first_seen_at": case(
                (new.first_seen_at < old.first_seen_at, new.first_seen_at),
                else_=old.first_seen_at,
            ),
            "last_seen_at": case((newer, new.last_seen_at), else_=old.last_seen_at),
            "last_reader_id": case((newer, new.last_reader_id), else_=old.last_reader_id),
            "last_mode": case((newer, new.last_mode), else_=old.last_mode),
            "tap_count": old.tap_count + new.tap_count,
            # Seen again after enrolment: it is back in the inbox.
            "resolved_at": None,
        },
    )
    return _Upserts(taps, attendance, credits, unknown_cards)


# A check-in's attendance row and its credit, keyed by the tap's event id (PostgreSQL).
_CHECK_IN_ARRAYS = (
    ("ci_event_id", _TAPS.c.event_id),
    ("ci_member_id", _ATTENDANCE.c.member_id),
    ("ci_session_id", _ATTENDANCE.c.session_id),
    ("ci_status", _ATTENDANCE.c.status),
    ("ci_at", _ATTENDANCE.c.checked_in_at),
    ("ci_received_at", _ATTENDANCE.c.created_at),
    ("ci_amount", _LEDGER.c.amount),
    ("ci_rule_version", _LEDGER.c.rule_version),
)


@dataclass(frozen=True)
class _TapsWithCheckIns:
    """Taps, their check-ins' attendance and credits in one statement (PostgreSQL).

    Three INSERTs chained by data-modifying CTEs: an attendance row only for a
    tap this statement inserted (RETURNING, not the table: a tap another worker
    stored first must not get a second attendance), a credit only for an
    attendance row it created. One round trip and one statement's client cost
    instead of three: at 1,000 taps/s a batch is ~7 taps and those costs, not
    the rows, are what it spends its time on. Rows go in in the order given
    (`ORDER BY` the input's ordinality), as the separate INSERTs did, so two
    workers still take the unique keys in one order.
    """

    taps: UnnestInsert
    check_ins: Arrays
    statement: Executable


@cache
def _taps_with_check_ins(dialect: Dialect, tap_columns: tuple[str, ...]) -> _TapsWithCheckIns:
    taps = _upserts(dialect.name).taps.unnest_insert(dialect, tap_columns)
    check_ins = Arrays.of(dialect, _CHECK_IN_ARRAYS)
    # Names come from our metadata and this module, never from input.
    sql = f"""WITH t AS ({taps.sql}),
p AS (
    SELECT * FROM {check_ins.sql} WITH ORDINALITY
        AS p(event_id, member_id, session_id, status, at, received_at, amount, rule_version, ord)
),
a AS (
    INSERT INTO attendance (member_id, session_id, status, first_tap_id, checked_in_at, created_at)
    SELECT p.member_id, p.session_id, p.status, t.id, p.at, p.received_at
    FROM p JOIN t ON t.event_id = p.event_id
    ORDER BY p.ord
    ON CONFLICT (member_id, session_id) DO NOTHING
    RETURNING id, member_id, session_id
),
c AS (
    INSERT INTO points_ledger
        (member_id, amount, source, rule_version, attendance_id, credit_seq, created_at)
    SELECT a.member_id, p.amount, '{LedgerSource.ATTENDANCE.value}', p.rule_version, a.id, 0,
        p.received_at
    FROM a JOIN p ON p.member_id = a.member_id AND p.session_id = a.session_id
    WHERE p.amount <> 0
    ORDER BY a.id
    ON CONFLICT (attendance_id, credit_seq) WHERE {ATTENDANCE_CREDIT_WHERE} DO NOTHING
)
SELECT t.id, t.event_id, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) FROM t
UNION ALL
SELECT a.id, NULL, a.member_id, a.session_id FROM a"""  # noqa: S608
    return _TapsWithCheckIns(taps, check_ins, text(sql))


# --------------------------------------------------------------------------- internals


def _display_json(text_: DisplayText) -> dict[str, Any]:
    return {"title": text_.title, "lines": list(text_.lines)}


def _display_from_json(value: Any) -> DisplayText:
    if not isinstance(value, dict):
        return DisplayText("")
    title = value.get("title")
    lines = value.get("lines")
    return DisplayText(
        title if isinstance(title, str) else "",
        tuple(x for x in lines if isinstance(x, str)) if isinstance(lines, list) else (),
    )


def _replay(event_id: UUID | None, reader_id: str | None, original: OriginalTap) -> Outcome:
    """Answer a repeated event id with the original outcome, marked as a duplicate."""
    return Outcome(
        event_id=event_id,
        reader_id=reader_id,
        result=AckResult.DUPLICATE,
        points=original.points,
        display=_display_from_json(original.display),
        detail=f"already recorded as {original.result}",
    )


@dataclass
class _CheckIn:
    member_id: int
    session_id: int
    status: AttendanceStatus
    at: datetime
    points: int
    rule_version: RuleVersion
    received_at: datetime


@dataclass
class _Item:
    """One submission on its way through the batch."""

    submission: Submission
    outcome: Outcome | None = None
    row: dict[str, Any] | None = None
    same_as: int | None = None
    tap_id: int | None = None
    check_in: _CheckIn | None = None
    checkout: tuple[int, int, datetime] | None = None
    inbox: tuple[str, str, datetime, str, str] | None = None
    # The result stored for this event id: the original one for a replay.
    recorded_result: str | None = None
    # Where this signed tap moves its reader's (boot_id, seq) once recorded.
    position: Position | None = None
    # How its card proved itself (issue 7), and its refusal where the strong tier is required.
    card_tier: str | None = None
    clone: CloneSighting | None = None
    # (card id, master key version) when its card answered under a version not on record.
    proven_key: tuple[int, int] | None = None

    @property
    def event_id(self) -> UUID | None:
        s = self.submission
        return s.tap.event_id if isinstance(s, ReceivedTap) else s.event_id

    @property
    def reader_id(self) -> str | None:
        s = self.submission
        return s.tap.reader_id if isinstance(s, ReceivedTap) else s.reader_id

    def drop_effects(self) -> None:
        self.check_in = None
        self.checkout = None
        self.inbox = None


@dataclass
class _Resolved:
    """A tap whose reader and card are known: a kiosk tap, or one with its session."""

    item: _Item
    mode: TapMode
    card: CardInfo
    resolution: Resolution | None


@dataclass
class _AttendanceState:
    """What this batch knows about one member's attendance of one session."""

    checked_in_at: datetime | None
    checked_out_at: datetime | None


class _RepeatsFound(Exception):
    """An optimistic batch met a stored event id: redo it with the lookup first."""


@dataclass
class _Batch:
    connection: Connection
    policy: TapPolicy
    reference: Reference
    submissions: Sequence[Submission]
    # Optimistic: do not look up stored event ids before deciding. Repeats must be
    # answered `duplicate` before any signature check, so a batch that meets one
    # (the taps INSERT conflicts) or that would store a tap without its event id (a
    # refused signature: possibly a resend) is abandoned before its first write is
    # committed and redone with the lookup first. Saves a statement per batch.
    optimistic: bool = False
    items: list[_Item] = field(default_factory=list)
    pending_credits: dict[int, int] = field(default_factory=dict)
    # The points rules, read once per batch and only if the batch has a check-in.
    book: RuleBook | None = None
    # Each signing reader's (boot_id, seq) as this batch has advanced it, in tap order.
    positions: dict[str, Position | None] = field(default_factory=dict)
    # Where the strong card tier is required and the answering cards' keys, read once.
    tiers: TierContext | None = None
    # The generation, the cards and the attendance of their members in the sessions kept
    # from earlier batches, when read in one round trip (lookups.start_batch).
    start: lookups.BatchStart | None = None
    # The cards of the batch's taps by (tech, uid), set when resolving; a card bound by its
    # enroll-mode tap is added, so a later tap of it in the batch finds it.
    cards: dict[tuple[str, str], CardInfo] = field(default_factory=dict)
    # Attendance rows created with the taps, by (member, session), when one statement did both.
    created_attendance: dict[tuple[int, int], int] | None = None

    @property
    def upserts(self) -> _Upserts:
        return _upserts(self.connection.dialect.name)

    def record(self) -> list[Outcome]:
        self.items = [_Item(s) for s in self.submissions]
        start = None
        if self.optimistic and self.reference.wants_generation:
            start = lookups.start_batch(
                self.connection,
                {
                    (s.tap.card.tech.value, s.tap.card.uid)
                    for s in self.submissions
                    if isinstance(s, ReceivedTap)
                },
                {
                    (s.tap.card.tech.value, s.tap.card.uid, session_id)
                    for s in self.submissions
                    if isinstance(s, ReceivedTap)
                    for session_id in self.reference.kept_sessions(s.tap.reader_id)
                },
            )
        if start is not None:
            self.reference.begin(self.connection, start.generation)
            self.start = start
        else:
            self.reference.begin(self.connection)
        fresh = self._skip_repeats()
        resolved = self._resolve(fresh)
        self._decide_attendance(resolved)
        self._insert_taps()
        self._insert_attendance_and_credits()
        self._apply_checkouts()
        self._file_unknown_cards()
        file_suspected_clones(
            self.connection, (i.clone for i in self.items if i.clone and i.tap_id is not None)
        )
        self._touch_readers()
        self._advance_positions()
        record_proven_keys(
            self.connection,
            (
                (*i.proven_key, i.submission.received_at)
                for i in self.items
                if i.proven_key is not None
                and i.tap_id is not None
                and isinstance(i.submission, ReceivedTap)
            ),
        )
        return self._outcomes()

    # ---- repeats

    def _skip_repeats(self) -> list[_Item]:
        """Answer event ids seen before (in this batch or stored); return the rest."""
        first_index: dict[UUID, int] = {}
        candidates: list[_Item] = []
        for index, item in enumerate(self.items):
            event_id = item.event_id
            if event_id is not None:
                if event_id in first_index:
                    item.same_as = first_index[event_id]
                    continue
                first_index[event_id] = index
            candidates.append(item)
        if self.optimistic:
            return candidates
        originals = lookups.original_taps(self.connection, first_index)
        fresh: list[_Item] = []
        for item in candidates:
            original = originals.get(item.event_id) if item.event_id else None
            if original is not None:
                item.outcome = _replay(item.event_id, item.reader_id, original)
                item.recorded_result = original.result
            else:
                fresh.append(item)
        return fresh

    # ---- resolution: reader → card → room → session

    def _resolve(self, fresh: list[_Item]) -> list[_Resolved]:
        taps = [i for i in fresh if isinstance(i.submission, ReceivedTap)]
        for item in fresh:
            if isinstance(item.submission, RejectedPayload):
                self._reject_payload(item, item.submission)
        if not taps:
            return []
        received = [i.submission for i in taps if isinstance(i.submission, ReceivedTap)]
        refs = self.reference
        readers = refs.readers(self.connection, {r.tap.reader_id for r in received})
        cards = self.cards = (
            self.start.cards
            if self.start is not None
            else lookups.cards_by_key(
                self.connection, {(r.tap.card.tech.value, r.tap.card.uid) for r in received}
            )
        )
        times = [r.tap.occurred_at for r in received]
        sessions = refs.sessions(
            self.connection,
            {r.room_id for r in readers.values() if r.room_id is not None},
            min(times),
            max(times),
        )
        needs_units = any(c.audience.org_unit_ids for cs in sessions.by_room.values() for c in cs)
        tree = refs.org_tree(self.connection) if needs_units else OrgTree({})
        history = lookups.org_history(
            self.connection, {c.member_id for c in cards.values()} if needs_units else ()
        )
        self.tiers = load_tier_context(
            self.connection,
            self.policy.card_keys,
            (r.tap for r in received),
            cards,
            refs.requirements(self.connection),
        )

        resolved: list[_Resolved] = []
        for item in taps:
            received_tap = item.submission
            assert isinstance(received_tap, ReceivedTap)
            tap = received_tap.tap
            reader = readers.get(tap.reader_id)
            if reader is None:
                self._finish(
                    item,
                    AckResult.REJECTED,
                    display.unknown_reader(tap.reader_id),
                    detail="unknown reader",
                    mode=tap.mode,
                    flagged=True,
                )
                continue
            mode = tap.mode or reader.mode
            refusal = self._check_signature(item, received_tap, reader)
            if refusal is not None:
                log.warning("refused tap %s from %s: %s", tap.event_id, tap.reader_id, refusal)
                self._finish(
                    item,
                    AckResult.REJECTED,
                    display.malformed(),
                    detail=refusal,
                    mode=mode,
                    flagged=True,
                )
                # Stored without its event id: a message the key did not vouch for must
                # not claim the id, or a forged copy arriving first would make the
                # genuine tap a duplicate of a rejection.
                assert item.row is not None
                item.row["event_id"] = None
                continue
            if self._clock_refused(item, received_tap, mode):
                continue
            card = cards.get((tap.card.tech.value, tap.card.uid))
            if not self._card_usable(item, tap, mode, card):
                continue
            assert card is not None
            if self._refuse_clone(item, tap=tap, reader=reader, mode=mode, card=card, session=None):
                continue
            if mode is TapMode.KIOSK:
                # Answered in tap order with the others, so credits earlier in
                # this batch count in the balance.
                resolved.append(_Resolved(item, mode, card, None))
                continue
            resolution = self._resolve_session(
                tap=tap, reader=reader, card=card, sessions=sessions, tree=tree, history=history
            )
            if resolution is None:
                self._finish(
                    item,
                    AckResult.NO_SESSION,
                    display.no_session(reader.room_name),
                    detail=None if reader.room_id is not None else "reader has no room",
                    mode=mode,
                    card=card,
                )
                continue
            if self._refuse_clone(
                item, tap=tap, reader=reader, mode=mode, card=card, session=resolution.session
            ):
                continue
            resolved.append(_Resolved(item, mode, card, resolution))
        return resolved

    def _refuse_clone(
        self,
        item: _Item,
        *,
        tap: Tap,
        reader: ReaderInfo,
        mode: TapMode,
        card: CardInfo,
        session: SessionCandidate | None,
    ) -> bool:
        """Label the tap with its card's tier; refuse it where the strong tier is required."""
        assert self.tiers is not None
        if item.card_tier is None:
            proof = self.tiers.proof_of(tap, card)
            item.card_tier = proof.tier.value
            if proof.version is not None and self.tiers.newly_proven(card.card_id, proof.version):
                item.proven_key = (card.card_id, proof.version)
        activity = session.activity_type if session is not None else None
        verdict = self.tiers.judge(CardTier(item.card_tier), reader.room_id, activity)
        if verdict.refusal is None:
            return False
        log.warning("refused tap %s of card %s: %s", tap.event_id, tap.card.uid, verdict.refusal)
        item.clone = CloneSighting(card, tap.occurred_at, tap.reader_id, verdict.refusal)
        self._finish(
            item,
            AckResult.REJECTED,
            clone_refused_display(),
            detail=verdict.refusal,
            mode=mode,
            card=card,
            session_id=session.session_id if session is not None else None,
            flagged=True,
        )
        return True

    def _clock_refused(self, item: _Item, received_tap: ReceivedTap, mode: TapMode) -> bool:
        """Quarantine a tap whose stamp cannot be trusted; True if it was."""
        tap = received_tap.tap
        ahead = tap.occurred_at - received_tap.received_at
        if ahead > self.policy.skew_tolerance:
            text_ = display.clock_ahead()
            detail = f"occurred_at is {ahead.total_seconds():.0f}s ahead of the server clock"
        elif -ahead > self.policy.skew_tolerance and not tap.clock_synced:
            # A late tap from a synced clock is an outbox delivering after a cut and
            # counts at its stamp; from an unsynced clock the stamp may be anything
            # (a terminal booted without its time), so it is held for review.
            text_ = display.clock_unsynced()
            detail = (
                f"reader clock not synced and occurred_at is {-ahead.total_seconds():.0f}s "
                "behind the server clock: held for review"
            )
        else:
            return False
        self._finish(item, AckResult.REJECTED, text_, detail=detail, mode=mode, flagged=True)
        return True

    def _check_signature(
        self, item: _Item, received_tap: ReceivedTap, reader: ReaderInfo
    ) -> str | None:
        """Why a signing reader's tap is refused, or None; remember its new position."""
        if reader.sign_key is None:
            return None
        if reader.reader_id not in self.positions:
            stored = (
                Position(reader.last_boot_id, reader.last_seq)
                if reader.last_boot_id is not None and reader.last_seq is not None
                else None
            )
            self.positions[reader.reader_id] = stored
        if received_tap.raw is None:
            return "bad signature: the tap did not come as a signed message"
        verdict = check_tap(
            received_tap.raw,
            bytes.fromhex(reader.sign_key),
            self.positions[reader.reader_id],
        )
        if not isinstance(verdict, Accepted):
            return verdict.reason
        item.position = verdict.position
        self.positions[reader.reader_id] = verdict.position
        return None

    def _enrol(self, item: _Item, tap: Tap, mode: TapMode) -> None:
        """A new card on an enroll-mode reader: bind it to the member picked, else file it."""
        tech, uid = tap.card.tech.value, tap.card.uid
        bound = enrol_tapped_card(
            self.connection,
            reader_id=tap.reader_id,
            tech=tech,
            uid=uid,
            tapped_at=tap.occurred_at,
            received_at=item.submission.received_at,
        )
        if bound is None:
            item.inbox = (tech, uid, tap.occurred_at, tap.reader_id, mode.value)
            self._finish(
                item,
                AckResult.UNKNOWN_CARD,
                display.card_filed(uid),
                detail="enroll: filed in the unknown-card inbox",
                mode=mode,
            )
            return
        self.cards[(tech, uid)] = bound
        self._finish(
            item,
            AckResult.ACCEPTED,
            display.card_enrolled(bound.member_name, uid),
            detail="enroll: bound to the member picked in the console",
            mode=mode,
            card=bound,
        )

    def _card_usable(self, item: _Item, tap: Tap, mode: TapMode, card: CardInfo | None) -> bool:
        """Settle taps of unknown, blocked or enrolment cards; True if the tap goes on."""
        tech, uid = tap.card.tech.value, tap.card.uid
        if mode is TapMode.ENROLL:
            if card is not None and card.status is CardStatus.ACTIVE:
                self._finish(
                    item,
                    AckResult.DUPLICATE,
                    display.card_already_enrolled(card.member_name),
                    detail="enroll: card already belongs to a member",
                    mode=mode,
                    card=card,
                )
            else:
                self._enrol(item, tap, mode)
            return False
        if card is None:
            item.inbox = (tech, uid, tap.occurred_at, tap.reader_id, mode.value)
            self._finish(item, AckResult.UNKNOWN_CARD, display.unknown_card(uid), mode=mode)
            return False
        if card.status is not CardStatus.ACTIVE:
            self._finish(
                item,
                AckResult.CARD_REVOKED,
                display.card_blocked(card.status),
                detail=f"card is {card.status.value}",
                mode=mode,
                card=card,
                flagged=True,
            )
            return False
        day = tap.occurred_at.astimezone(self.policy.zone).date()
        if not card.member_active_on(day):
            self._finish(
                item,
                AckResult.CARD_REVOKED,
                display.member_inactive(card.member_name),
                detail=f"member not active on {day.isoformat()}",
                mode=mode,
                card=card,
                flagged=True,
            )
            return False
        return True

    def _resolve_session(
        self,
        *,
        tap: Tap,
        reader: ReaderInfo,
        card: CardInfo,
        sessions: lookups.RoomSessions,
        tree: OrgTree,
        history: lookups.OrgHistory,
    ) -> Resolution | None:
        if reader.room_id is None:
            return None

        def expected(candidate: SessionCandidate) -> bool:
            unit = history.unit_at(card.member_id, candidate.starts_at, card.org_unit_id)
            return candidate.audience.includes(card.member_id, tree.path_to_root(unit))

        return resolve_session(sessions.in_room(reader.room_id), tap.occurred_at, expected)

    # ---- attendance, in tap order

    def _decide_attendance(self, resolved: list[_Resolved]) -> None:
        stored = self._stored_attendance(resolved)
        state = {
            key: _AttendanceState(info.checked_in_at, info.checked_out_at)
            for key, info in stored.items()
        }
        # Kiosk taps answer balances: read once for the batch, not once per tap.
        balances = lookups.balances_of(
            self.connection, {r.card.member_id for r in resolved if r.resolution is None}
        )
        zone = self.policy.zone
        for r in resolved:
            received_tap = r.item.submission
            assert isinstance(received_tap, ReceivedTap)
            at = received_tap.tap.occurred_at
            if r.resolution is None:
                self._answer_kiosk(r, balances[r.card.member_id])
                continue
            session = r.resolution.session
            name = r.card.member_name
            key = (r.card.member_id, session.session_id)
            known = state.get(key)
            common: dict[str, Any] = {
                "mode": r.mode,
                "card": r.card,
                "session_id": session.session_id,
            }
            if r.mode is TapMode.CHECKOUT:
                if known is None or known.checked_in_at is None:
                    self._finish(
                        r.item,
                        AckResult.NOT_EXPECTED,
                        display.checkout_without_checkin(name, session.title),
                        detail="check-out without check-in",
                        **common,
                    )
                elif known.checked_out_at is not None:
                    self._finish(
                        r.item,
                        AckResult.DUPLICATE,
                        display.already_checked_out(
                            name, session.title, known.checked_out_at, zone
                        ),
                        detail="already checked out",
                        **common,
                    )
                else:
                    known.checked_out_at = at
                    r.item.checkout = (r.card.member_id, session.session_id, at)
                    self._finish(
                        r.item,
                        AckResult.ACCEPTED,
                        display.checked_out(name, session.title, at, zone),
                        detail="checked out",
                        **common,
                    )
                continue
            if not r.resolution.credited:
                self._finish(
                    r.item,
                    AckResult.NOT_EXPECTED,
                    display.not_expected(name, session.title),
                    detail="not in the session's audience; walk-ins not allowed",
                    **common,
                )
                continue
            if known is not None:
                self._finish(
                    r.item,
                    AckResult.DUPLICATE,
                    display.already_checked_in(name, session.title, known.checked_in_at, zone),
                    detail="already checked in",
                    **common,
                )
                continue
            status = session.window.status_at(at)
            if self.book is None:
                self.book = self.reference.rule_book(self.connection)
            points, version = tap_time_points(
                self.book, session.activity_type, status, session.starts_at.astimezone(zone).date()
            )
            state[key] = _AttendanceState(at, None)
            self.pending_credits[r.card.member_id] = (
                self.pending_credits.get(r.card.member_id, 0) + points
            )
            r.item.check_in = _CheckIn(
                r.card.member_id,
                session.session_id,
                status,
                at,
                points,
                version,
                received_tap.received_at,
            )
            detail = status.value if r.resolution.expected else f"{status.value}; walk-in"
            self._finish(
                r.item,
                AckResult.ACCEPTED,
                display.checked_in(
                    name, session.title, points=points, status=status, at=at, zone=zone
                ),
                points=points,
                detail=detail,
                **common,
            )

    def _stored_attendance(
        self, resolved: list[_Resolved]
    ) -> dict[tuple[int, int], AttendanceInfo]:
        """Stored attendance of the resolved taps: read with the cards where it was, else now."""
        pairs: set[tuple[int, int]] = set()
        asked: set[tuple[int, int]] = set()
        start = self.start
        for r in resolved:
            if r.resolution is None:
                continue
            pair = (r.card.member_id, r.resolution.session.session_id)
            pairs.add(pair)
            submission = r.item.submission
            if start is not None and isinstance(submission, ReceivedTap):
                card = submission.tap.card
                if (card.tech.value, card.uid, pair[1]) in start.attendance_asked:
                    asked.add(pair)
        rest = pairs - asked
        stored = lookups.attendance_for(self.connection, rest) if rest else {}
        if asked:
            assert start is not None
            stored.update(
                (pair, start.attendance[pair]) for pair in asked & start.attendance.keys()
            )
        return stored

    def _answer_kiosk(self, r: _Resolved, stored_balance: int) -> None:
        # Credits earlier in this batch are not in the ledger yet.
        points = stored_balance + self.pending_credits.get(r.card.member_id, 0)
        self._finish(
            r.item,
            AckResult.ACCEPTED,
            display.balance(r.card.member_name, points),
            points=points,
            detail="kiosk: points balance",
            mode=r.mode,
            card=r.card,
        )

    # ---- outcome and row building

    def _finish(
        self,
        item: _Item,
        result: AckResult,
        text_: DisplayText,
        *,
        points: int = 0,
        detail: str | None = None,
        mode: TapMode | None = None,
        card: CardInfo | None = None,
        session_id: int | None = None,
        flagged: bool = False,
    ) -> None:
        received_tap = item.submission
        assert isinstance(received_tap, ReceivedTap)
        tap = received_tap.tap
        item.outcome = Outcome(
            tap.event_id,
            tap.reader_id,
            result,
            points,
            text_,
            detail,
            mode=mode,
            member_id=card.member_id if card else None,
            session_id=session_id,
        )
        item.row = {
            "event_id": tap.event_id,
            "reader_id": tap.reader_id,
            "boot_id": tap.boot_id,
            "seq": tap.seq,
            "card_tech": tap.card.tech.value,
            "card_uid": tap.card.uid,
            "occurred_at": tap.occurred_at,
            "received_at": received_tap.received_at,
            "clock_synced": tap.clock_synced,
            "mode": mode.value if mode else None,
            "result": result.value,
            "points": points,
            "session_id": session_id,
            "member_id": card.member_id if card else None,
            "card_id": card.card_id if card else None,
            "detail": detail[:MAX_DETAIL] if detail else None,
            "display": _display_json(text_),
            "flagged": flagged,
            "raw_payload": None,
            "card_tier": item.card_tier,
        }

    def _reject_payload(self, item: _Item, payload: RejectedPayload) -> None:
        text_ = display.malformed()
        detail = payload.reason[:MAX_DETAIL]
        item.outcome = Outcome(
            payload.event_id, payload.reader_id, AckResult.REJECTED, 0, text_, detail
        )
        item.row = {
            "event_id": payload.event_id,
            "reader_id": payload.reader_id,
            "boot_id": None,
            "seq": None,
            "card_tech": None,
            "card_uid": None,
            "occurred_at": None,
            "received_at": payload.received_at,
            "clock_synced": None,
            "mode": None,
            "result": AckResult.REJECTED.value,
            "points": 0,
            "session_id": None,
            "member_id": None,
            "card_id": None,
            "detail": detail,
            "display": _display_json(text_),
            "flagged": True,
            "raw_payload": payload.raw[:MAX_RAW_PAYLOAD],
            "card_tier": None,
        }

    # ---- writes
    #
    # Every batched write takes its keys in one global order (event id, then
    # member and session, …). Two workers inserting overlapping keys in
    # different orders would otherwise deadlock on PostgreSQL's unique indexes.

    def _insert_taps(self) -> None:
        with_id = sorted(
            (i for i in self.items if i.row is not None and i.row["event_id"] is not None),
            key=lambda i: str(i.event_id),
        )
        without_id = [i for i in self.items if i.row is not None and i.row["event_id"] is None]
        if self.optimistic and any(i.event_id is not None for i in without_id):
            raise _RepeatsFound
        if without_id:
            self.connection.execute(_INSERT_TAPS_WITHOUT_ID, [i.row for i in without_id if i.row])
        if not with_id:
            return
        tap_rows = [i.row for i in with_id if i.row]
        planned = self._planned_check_ins()
        if (
            planned
            and self.connection.dialect.name == "postgresql"
            and all(i.event_id is not None for i in planned)
        ):
            inserted = self._insert_taps_with_check_ins(tap_rows, planned)
        else:
            inserted = {
                event_id: tap_id
                for tap_id, event_id in self.upserts.taps.execute(self.connection, tap_rows)
            }
        lost = [i for i in with_id if i.event_id not in inserted]
        for item in with_id:
            item.tap_id = inserted.get(item.event_id) if item.event_id else None
        if lost and self.optimistic:
            raise _RepeatsFound
        if lost:
            # Another worker recorded these event ids since we looked: theirs stands.
            originals = lookups.original_taps(
                self.connection, [i.event_id for i in lost if i.event_id]
            )
            for item in lost:
                item.drop_effects()
                original = originals.get(item.event_id) if item.event_id else None
                item.recorded_result = original.result if original else None
                item.outcome = (
                    _replay(item.event_id, item.reader_id, original)
                    if original
                    else Outcome(
                        item.event_id,
                        item.reader_id,
                        AckResult.DUPLICATE,
                        0,
                        display.server_error(),
                        "already recorded by another worker",
                    )
                )

    def _planned_check_ins(self) -> list[_Item]:
        """Items with a check-in to store, in (member, session) order."""
        return sorted(
            (i for i in self.items if i.check_in is not None and i.row is not None),
            key=lambda i: (i.check_in.member_id, i.check_in.session_id) if i.check_in else (0, 0),
        )

    def _insert_taps_with_check_ins(
        self, tap_rows: list[dict[str, Any]], planned: list[_Item]
    ) -> dict[UUID, int]:
        """Insert taps, attendance and credits in one statement; return the taps inserted."""
        combined = _taps_with_check_ins(self.connection.dialect, tuple(tap_rows[0]))
        check_ins = []
        for item in planned:
            c = item.check_in
            assert c is not None
            check_ins.append(
                {
                    "ci_event_id": item.event_id,
                    "ci_member_id": c.member_id,
                    "ci_session_id": c.session_id,
                    "ci_status": c.status.value,
                    "ci_at": c.at,
                    "ci_received_at": c.received_at,
                    "ci_amount": c.points,
                    "ci_rule_version": c.rule_version,
                }
            )
        params = combined.taps.arrays.params(self.connection, tap_rows)
        params.update(combined.check_ins.params(self.connection, check_ins))
        inserted: dict[UUID, int] = {}
        created: dict[tuple[int, int], int] = {}
        sql = compiled_sql(combined.statement, self.connection.dialect)
        for row_id, event_id, member_id, session_id in driver_rows(self.connection, sql, params):
            if event_id is not None:
                inserted[event_id] = row_id
            else:
                created[(member_id, session_id)] = row_id
        self.created_attendance = created
        return inserted

    def _insert_attendance_and_credits(self) -> None:
        planned = [i for i in self._planned_check_ins() if i.tap_id is not None]
        if not planned:
            return
        if self.created_attendance is not None:
            # Inserted with the taps, credits and all (_insert_taps_with_check_ins).
            created = self.created_attendance
        else:
            created = self._insert_attendance(planned)
        losers = [
            i
            for i in planned
            if i.check_in and (i.check_in.member_id, i.check_in.session_id) not in created
        ]
        if losers:
            self._downgrade_lost_check_ins(losers)
        if self.created_attendance is None:
            self._insert_credits(planned, created)

    def _insert_attendance(self, planned: list[_Item]) -> dict[tuple[int, int], int]:
        rows = []
        for item in planned:
            c = item.check_in
            assert c is not None
            rows.append(
                {
                    "member_id": c.member_id,
                    "session_id": c.session_id,
                    "status": c.status.value,
                    "first_tap_id": item.tap_id,
                    "checked_in_at": c.at,
                    "checkout_tap_id": None,
                    "checked_out_at": None,
                    "created_at": c.received_at,
                }
            )
        return {
            (member_id, session_id): attendance_id
            for attendance_id, member_id, session_id in self.upserts.attendance.execute(
                self.connection, rows
            )
        }

    def _insert_credits(self, planned: list[_Item], created: dict[tuple[int, int], int]) -> None:
        credits: list[dict[str, Any]] = []
        for item in planned:
            c = item.check_in
            if c is None or c.points == 0:
                continue
            attendance_id = created.get((c.member_id, c.session_id))
            if attendance_id is None:
                continue
            credits.append(
                {
                    "member_id": c.member_id,
                    "amount": c.points,
                    "source": LedgerSource.ATTENDANCE.value,
                    "rule_version": c.rule_version,
                    "attendance_id": attendance_id,
                    "reverses_id": None,
                    "reason": None,
                    "credit_seq": 0,
                    "created_at": c.received_at,
                }
            )
        if credits:
            credits.sort(key=lambda row: int(row["attendance_id"]))
            self.upserts.credits.execute(self.connection, credits)

    def _downgrade_lost_check_ins(self, losers: list[_Item]) -> None:
        """Another worker created these attendances first: our taps become duplicates."""
        first = lookups.first_checkins(
            self.connection,
            [(i.check_in.member_id, i.check_in.session_id) for i in losers if i.check_in],
        )
        updates = []
        for item in losers:
            c = item.check_in
            previous = item.outcome
            assert c is not None
            assert previous is not None
            lines = previous.display.lines
            text_ = display.already_checked_in(
                lines[0] if lines else "",
                lines[1] if len(lines) > 1 else "",
                first.get((c.member_id, c.session_id)),
                self.policy.zone,
            )
            item.check_in = None
            item.outcome = Outcome(
                previous.event_id,
                previous.reader_id,
                AckResult.DUPLICATE,
                0,
                text_,
                "already checked in",
            )
            updates.append(
                {
                    "tap_id": item.tap_id,
                    "new_result": AckResult.DUPLICATE.value,
                    "new_display": _display_json(text_),
                    "new_detail": "already checked in",
                }
            )
        self.connection.execute(_DOWNGRADE_TAPS, updates)

    def _apply_checkouts(self) -> None:
        rows = sorted(
            (
                {"m": i.checkout[0], "s": i.checkout[1], "at": i.checkout[2], "tap": i.tap_id}
                for i in self.items
                if i.checkout is not None and i.tap_id is not None
            ),
            key=lambda row: (row["m"], row["s"]),
        )
        if rows:
            self.connection.execute(_CHECK_OUT, rows)

    def _file_unknown_cards(self) -> None:
        sightings: dict[tuple[str, str], dict[str, Any]] = {}
        for item in self.items:
            if item.inbox is None or item.tap_id is None:
                continue
            tech, uid, at, reader_id, mode = item.inbox
            entry = sightings.get((tech, uid))
            if entry is None:
                sightings[(tech, uid)] = {
                    "tech": tech,
                    "uid": uid,
                    "first_seen_at": at,
                    "last_seen_at": at,
                    "tap_count": 1,
                    "last_reader_id": reader_id,
                    "last_mode": mode,
                    "resolved_at": None,
                }
                continue
            entry["tap_count"] += 1
            entry["first_seen_at"] = min(entry["first_seen_at"], at)
            if at >= entry["last_seen_at"]:
                entry.update(last_seen_at=at, last_reader_id=reader_id, last_mode=mode)
        if sightings:
            self.connection.execute(
                self.upserts.unknown_cards, [sightings[key] for key in sorted(sightings)]
            )

    def _touch_readers(self) -> None:
        latest: dict[str, tuple[datetime, float]] = {}
        for item in self.items:
            s = item.submission
            if not isinstance(s, ReceivedTap) or item.tap_id is None:
                continue
            skew = (s.tap.occurred_at - s.received_at).total_seconds()
            seen = latest.get(s.tap.reader_id)
            if seen is None or s.received_at >= seen[0]:
                latest[s.tap.reader_id] = (s.received_at, skew)
        latest = self.reference.due_touches(latest)
        if latest:
            self.connection.execute(
                _TOUCH_READERS,
                [
                    {"rid": rid, "seen": at, "skew": skew}
                    for rid, (at, skew) in sorted(latest.items())
                ],
            )

    def _advance_positions(self) -> None:
        """Store each signing reader's newest (boot_id, seq) among the taps recorded."""
        newest: dict[str, Position] = {}
        for item in self.items:
            if item.position is not None and item.tap_id is not None and item.reader_id:
                # In tap order, and check_tap let only newer seqs of a boot through.
                newest[item.reader_id] = item.position
        if newest:
            self.connection.execute(
                _ADVANCE_POSITIONS,
                [
                    {"rid": rid, "boot": p.boot_id, "seq": p.seq}
                    for rid, p in sorted(newest.items())
                ],
            )

    # ---- answers

    def _outcomes(self) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for item in self.items:
            if item.same_as is not None:
                first_item = self.items[item.same_as]
                first = first_item.outcome
                assert first is not None
                recorded = first_item.recorded_result or first.result.value
                outcomes.append(
                    Outcome(
                        item.event_id,
                        item.reader_id,
                        AckResult.DUPLICATE,
                        first.points,
                        first.display,
                        f"already recorded as {recorded}",
                    )
                )
                continue
            if item.outcome is None:  # pragma: no cover - every path sets an outcome
                raise RuntimeError("tap left without an outcome")
            outcomes.append(item.outcome)
        return outcomes
