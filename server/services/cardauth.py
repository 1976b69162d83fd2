"""The strong card tier: master keys, where the tier is required, verdicts per batch, clones.

Recording a batch of taps asks `load_tier_context` once (where the strong tier
is required: one query, or kept by the ingest's reference cache; key versions:
one more query only when some tap carries a card answer) and then judges each
tap in memory. A tap where the tier is
required and the card did not prove itself is refused and its card filed in the
suspected-clone inbox; elsewhere the tap goes on, labelled with its tier.
"""

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    Connection,
    String,
    bindparam,
    case,
    cast,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from protocol import Tap
from server.audit.chain import AuditRecord, record_audit, record_audits
from server.db.lookups import CardInfo, chunks
from server.db.models import (
    ActivityType,
    Card,
    CardKey,
    Room,
    StrongTierActivityType,
    StrongTierRoom,
    SuspectedClone,
    table_of,
)
from server.db.upserts import insert_for
from server.domain.cardkeys import CardKeyError, CardKeyring, CardTier, challenge_for
from server.domain.cards import CardStatus
from server.errors import ConfigError, NotFound, StorageError
from server.settings import Settings

log = logging.getLogger(__name__)

MASTER_KEY_ENV: Final = "ROLLCALL_CARD_MASTER_KEY"
MASTER_KEY_FILE_ENV: Final = "ROLLCALL_CARD_MASTER_KEY_FILE"
_ENTRY = re.compile(r"^(?:(\d+):)?([0-9A-Fa-f]{32})$")
MAX_REASON: Final = 200


# --------------------------------------------------------------------------- master keys


def parse_master_keys(text: str, current: int | None = None, *, origin: str) -> CardKeyring:
    """Read master keys: entries `HEX` (version 1) or `VERSION:HEX`, by spaces, commas or lines.

    The current version (used to personalise new cards) is `current`, else the highest.
    Raises ConfigError naming `origin` and never quoting a key.
    """
    masters: dict[int, bytes] = {}
    without_comments = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    entries = [e for e in re.split(r"[\s,]+", without_comments) if e]
    for number, entry in enumerate(entries, start=1):
        match = _ENTRY.fullmatch(entry)
        if match is None:
            raise ConfigError(
                f"{origin}: entry {number} is not 32 hex digits or VERSION:32 hex digits"
            )
        version = int(match.group(1) or 1)
        if version in masters:
            raise ConfigError(f"{origin}: version {version} is given twice")
        masters[version] = bytes.fromhex(match.group(2))
    if not masters:
        raise ConfigError(f"{origin}: no key in it")
    try:
        return CardKeyring(masters, current if current is not None else max(masters))
    except CardKeyError as exc:
        raise ConfigError(f"{origin}: {exc}") from exc


def load_card_keyring(
    key: str | None, key_file: Path | None, current: int | None = None
) -> CardKeyring | None:
    """The master keys from the setting's value or its file; None when neither is set."""
    if key is not None and key_file is not None:
        raise ConfigError(f"set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}, not both")
    if key is not None:
        return parse_master_keys(key, current, origin=MASTER_KEY_ENV)
    if key_file is None:
        return None
    try:
        text = key_file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{MASTER_KEY_FILE_ENV}: cannot read {key_file}: {exc}") from exc
    return parse_master_keys(text, current, origin=f"{MASTER_KEY_FILE_ENV} ({key_file})")


# --------------------------------------------------------------------------- tap verdicts


@dataclass(frozen=True)
class TierVerdict:
    """How a tap's card proved itself, and why the tap is refused if it is."""

    tier: CardTier
    refusal: str | None = None


@dataclass(frozen=True)
class CardKeyVersions:
    """A personalised card's master key versions: last issued, and last proved (None: never)."""

    issued: int
    proven: int | None


@dataclass(frozen=True)
class CardProof:
    """How a tap's card proved itself; for STRONG, the master key version it answered under."""

    tier: CardTier
    version: int | None = None


@dataclass(frozen=True)
class TierContext:
    """What a batch needs to judge its taps' cards: requirements and key versions."""

    keyring: CardKeyring | None
    rooms: frozenset[int]
    activity_types: frozenset[str]
    key_versions: Mapping[int, CardKeyVersions]

    def proof_of(self, tap: Tap, card: CardInfo) -> CardProof:
        """UID when the card gave no answer; STRONG when its answer checks out, else FAILED.

        Only a card personalised here (a `card_keys` row) can be STRONG; its answer is
        tried under the version it last proved, the one last issued, then the others.
        """
        auth = tap.card.auth
        if auth is None:
            return CardProof(CardTier.UID)
        challenge = bytes.fromhex(auth.challenge)
        versions = self.key_versions.get(card.card_id)
        # Only the tap's own challenge counts: an answer recorded for another tap is a replay.
        if challenge != challenge_for(tap.event_id) or self.keyring is None or versions is None:
            return CardProof(CardTier.FAILED)
        version = self.keyring.answering_version(
            card.uid,
            (versions.proven, versions.issued),
            challenge,
            bytes.fromhex(auth.response),
        )
        if version is None:
            return CardProof(CardTier.FAILED)
        return CardProof(CardTier.STRONG, version)

    def newly_proven(self, card_id: int, version: int) -> bool:
        """Whether `version` is not what the card is on record as having proved."""
        versions = self.key_versions.get(card_id)
        return versions is not None and versions.proven != version

    def requires_strong(self, room_id: int | None, activity_type: str | None = None) -> bool:
        """Whether a tap in this room (and session of this activity type) needs the strong tier."""
        return (room_id is not None and room_id in self.rooms) or (
            activity_type is not None and activity_type in self.activity_types
        )

    def judge(
        self, tier: CardTier, room_id: int | None, activity_type: str | None = None
    ) -> TierVerdict:
        """Refuse a card that did not prove itself where the strong tier is required."""
        if tier is CardTier.STRONG or not self.requires_strong(room_id, activity_type):
            return TierVerdict(tier)
        where = "session's activity type" if activity_type is not None else "room"
        if tier is CardTier.UID:
            why = "the card gave no challenge answer"
        elif self.keyring is None:
            why = "no card master key is configured to check its answer"
        else:
            why = "the card's answer to its challenge is wrong"
        return TierVerdict(tier, f"suspected clone: the {where} requires the strong tier; {why}")


_REQUIREMENTS = union_all(
    select(literal("room"), cast(StrongTierRoom.room_id, String)),
    select(literal("type"), ActivityType.code).join(
        StrongTierActivityType, StrongTierActivityType.activity_type_id == ActivityType.id
    ),
)
_KEY_VERSIONS = select(CardKey.card_id, CardKey.key_version, CardKey.proven_version).where(
    CardKey.card_id.in_(bindparam("ids", expanding=True))
)


@dataclass(frozen=True)
class StrongRequirements:
    """The rooms and activity types where the strong card tier is required."""

    rooms: frozenset[int]
    activity_types: frozenset[str]


def strong_requirements(connection: Connection) -> StrongRequirements:
    """Read where the strong tier is required."""
    rooms: set[int] = set()
    types: set[str] = set()
    for kind, value in connection.execute(_REQUIREMENTS):
        if kind == "room":
            rooms.add(int(value))
        else:
            types.add(value)
    return StrongRequirements(frozenset(rooms), frozenset(types))


def load_tier_context(
    connection: Connection,
    keyring: CardKeyring | None,
    taps: Iterable[Tap],
    cards: Mapping[tuple[str, str], CardInfo],
    requirements: StrongRequirements | None = None,
) -> TierContext:
    """Where the strong tier is required (read unless given) and the answering cards' keys."""
    if requirements is None:
        requirements = strong_requirements(connection)
    answered = {
        card.card_id
        for tap in taps
        if tap.card.auth is not None
        and (card := cards.get((tap.card.tech.value, tap.card.uid))) is not None
    }
    versions: dict[int, CardKeyVersions] = {}
    if answered and keyring is not None:
        for part in chunks(sorted(answered)):
            for card_id, issued, proven in connection.execute(_KEY_VERSIONS, {"ids": part}):
                versions[int(card_id)] = CardKeyVersions(
                    int(issued), int(proven) if proven is not None else None
                )
    return TierContext(keyring, requirements.rooms, requirements.activity_types, versions)


_CARD_KEYS = table_of(CardKey)
_PROVE = (
    _CARD_KEYS.update()
    .where(_CARD_KEYS.c.card_id == bindparam("card"))
    .values(proven_version=bindparam("version"), proven_at=bindparam("at"))
)


def record_proven_keys(connection: Connection, proofs: Iterable[tuple[int, int, datetime]]) -> None:
    """Keep the master key version each card answered under, as (card id, version, when).

    Called with the batch's newly proven versions only (`TierContext.newly_proven`),
    so a card that goes on answering under the same version costs no write. Of
    several proofs of one card, the last given wins.
    """
    latest = {card_id: (version, at) for card_id, version, at in proofs}
    if latest:
        connection.execute(
            _PROVE,
            [
                {"card": card_id, "version": version, "at": at}
                for card_id, (version, at) in sorted(latest.items())
            ],
        )


# --------------------------------------------------------------------------- clone inbox


@dataclass(frozen=True)
class CloneSighting:
    """A refused tap of a card where the strong tier is required."""

    card: CardInfo
    at: datetime
    reader_id: str
    reason: str


_CLONES = table_of(SuspectedClone)


@cache
def _clone_upsert(dialect: str) -> Executable:
    insert = insert_for(dialect, _CLONES)
    new, old = insert.excluded, _CLONES.c
    newer = new.last_seen_at > old.last_seen_at
    return insert.on_conflict_do_update(
        index_elements=["card_id"],
        set_={
            "first_seen_at": case(
                (new.first_seen_at < old.first_seen_at, new.first_seen_at),
                else_=old.first_seen_at,
            ),
            "last_seen_at": case((newer, new.last_seen_at), else_=old.last_seen_at),
            "last_reader_id": case((newer, new.last_reader_id), else_=old.last_reader_id),
            "last_reason": case((newer, new.last_reason), else_=old.last_reason),
            "tap_count": old.tap_count + new.tap_count,
            # Refused again after an administrator looked: back in the inbox.
            "resolved_at": None,
        },
    )


def file_suspected_clones(connection: Connection, sightings: Iterable[CloneSighting]) -> None:
    """Add a batch's refused cards to the suspected-clone inbox (one statement)."""
    rows: dict[int, dict[str, Any]] = {}
    for s in sightings:
        row = rows.get(s.card.card_id)
        if row is None:
            rows[s.card.card_id] = {
                "card_id": s.card.card_id,
                "tech": s.card.tech,
                "uid": s.card.uid,
                "first_seen_at": s.at,
                "last_seen_at": s.at,
                "tap_count": 1,
                "last_reader_id": s.reader_id,
                "last_reason": s.reason[:MAX_REASON],
                "resolved_at": None,
            }
            continue
        row["tap_count"] += 1
        row["first_seen_at"] = min(row["first_seen_at"], s.at)
        if s.at >= row["last_seen_at"]:
            row.update(last_seen_at=s.at, last_reader_id=s.reader_id, last_reason=s.reason)
    if rows:
        connection.execute(
            _clone_upsert(connection.dialect.name), [rows[key] for key in sorted(rows)]
        )


@dataclass(frozen=True)
class CloneListing:
    """One card in the suspected-clone inbox."""

    card_id: int
    tech: str
    uid: str
    first_seen_at: datetime
    last_seen_at: datetime
    tap_count: int
    last_reader_id: str | None
    last_reason: str | None
    resolved: bool


def list_suspected_clones(
    session: Session, *, include_resolved: bool = False
) -> list[CloneListing]:
    """The suspected-clone inbox, most recently seen first."""
    query = select(SuspectedClone).order_by(SuspectedClone.last_seen_at.desc())
    if not include_resolved:
        query = query.where(SuspectedClone.resolved_at.is_(None))
    return [
        CloneListing(
            c.card_id,
            c.tech,
            c.uid,
            c.first_seen_at,
            c.last_seen_at,
            c.tap_count,
            c.last_reader_id,
            c.last_reason,
            c.resolved_at is not None,
        )
        for c in session.scalars(query)
    ]


# --------------------------------------------------------------------------- administration


@dataclass(frozen=True)
class PersonalisedKey:
    """A card's key, to be written to the card; shown once, never stored."""

    card_id: int
    tech: str
    uid: str
    key_version: int
    key: bytes


def _active_card(session: Session, uid: str, tech: str | None) -> Card:
    query = select(Card).where(Card.uid == uid.upper(), Card.status == CardStatus.ACTIVE.value)
    if tech is not None:
        query = query.where(Card.tech == tech)
    found = list(session.scalars(query))
    if not found:
        raise NotFound("active card", uid.upper())
    if len(found) > 1:
        raise ConfigError(f"UID {uid.upper()} names cards of several technologies: give --tech")
    return found[0]


def personalise_card(
    session: Session,
    keyring: CardKeyring,
    uid: str,
    *,
    tech: str | None = None,
    actor: str,
    now: datetime | None = None,
) -> PersonalisedKey:
    """Derive an active card's key under the current master key and record it as issued.

    Audited; runs in the caller's write transaction, so nothing is marked unless it commits.
    """
    card = _active_card(session, uid, tech)
    key = keyring.card_key(card.uid, keyring.current)
    when = now or datetime.now(UTC)
    row = session.get(CardKey, card.id)
    if row is None:
        session.add(
            CardKey(
                card_id=card.id,
                key_version=keyring.current,
                personalised_at=when,
                personalised_by=actor,
            )
        )
    else:
        row.key_version = keyring.current
        row.personalised_at = when
        row.personalised_by = actor
    made = PersonalisedKey(card.id, card.tech, card.uid, keyring.current, key)
    record_audits(session, [_issued(made, actor)], at=when)
    return made


def _issued(made: PersonalisedKey, actor: str) -> AuditRecord:
    """The audit row of a key issued to a card."""
    return AuditRecord(
        actor,
        "card.personalise",
        f"{made.tech}:{made.uid}",
        {"card_id": made.card_id, "key_version": made.key_version},
    )


def reissue_keys(
    session: Session, keyring: CardKeyring, *, actor: str, now: datetime | None = None
) -> list[PersonalisedKey]:
    """Issue the current version to every active personalised card not known to hold it.

    Those that last proved an older one, and those that never proved any (their key
    under the current version is the same whenever it is derived: issuing it again
    changes nothing on a card that has it). Audited card by card, in the caller's
    write transaction; one read of the cards and one append to the audit chain.
    """
    rows = session.execute(
        select(Card, CardKey)
        .join(CardKey, CardKey.card_id == Card.id)
        .where(
            Card.status == CardStatus.ACTIVE.value,
            or_(CardKey.proven_version.is_(None), CardKey.proven_version != keyring.current),
        )
        .order_by(Card.tech, Card.uid)
    ).all()
    when = now or datetime.now(UTC)
    made = []
    for card, row in rows:
        row.key_version = keyring.current
        row.personalised_at = when
        row.personalised_by = actor
        key = keyring.card_key(card.uid, keyring.current)
        made.append(PersonalisedKey(card.id, card.tech, card.uid, keyring.current, key))
    record_audits(session, [_issued(m, actor) for m in made], at=when)
    return made


def set_room_requirement(
    session: Session, room_code: str, *, required: bool, actor: str, now: datetime | None = None
) -> None:
    """Require (or stop requiring) the strong tier in a room; audited."""
    room = session.scalars(select(Room).where(Room.code == room_code)).one_or_none()
    if room is None:
        raise NotFound("room", room_code)
    row = session.get(StrongTierRoom, room.id)
    when = now or datetime.now(UTC)
    if required and row is None:
        session.add(StrongTierRoom(room_id=room.id, required_since=when))
    elif not required and row is not None:
        session.delete(row)
    record_audit(
        session,
        actor=actor,
        action="room.strong_tier",
        target=room_code,
        details={"required": required},
        at=when,
    )


def set_activity_type_requirement(
    session: Session, code: str, *, required: bool, actor: str, now: datetime | None = None
) -> None:
    """Require (or stop requiring) the strong tier for an activity type's sessions; audited."""
    kind = session.scalars(select(ActivityType).where(ActivityType.code == code)).one_or_none()
    if kind is None:
        raise NotFound("activity type", code)
    row = session.get(StrongTierActivityType, kind.id)
    when = now or datetime.now(UTC)
    if required and row is None:
        session.add(StrongTierActivityType(activity_type_id=kind.id, required_since=when))
    elif not required and row is not None:
        session.delete(row)
    record_audit(
        session,
        actor=actor,
        action="activity_type.strong_tier",
        target=code,
        details={"required": required},
        at=when,
    )


def strong_tier_requirements(session: Session) -> tuple[list[str], list[str]]:
    """Codes of the rooms and activity types that require the strong tier."""
    try:
        rooms = session.scalars(
            select(Room.code).join(StrongTierRoom, StrongTierRoom.room_id == Room.id)
        )
        types = session.scalars(
            select(ActivityType.code).join(
                StrongTierActivityType, StrongTierActivityType.activity_type_id == ActivityType.id
            )
        )
        return sorted(rooms), sorted(types)
    except SQLAlchemyError as exc:
        raise StorageError(f"reading the strong-tier requirements failed: {exc}") from exc


@dataclass(frozen=True)
class KeyVersionCount:
    """Active personalised cards by one master key version."""

    version: int
    configured: bool  # in the keyring the server runs with
    issued: int  # cards whose last issued key is of this version
    proven: int  # cards that last answered a challenge under it
    # Cards that may need it: those that last proved it, and those that never proved any
    # version and were issued this one or a later one (an earlier write may be all they hold).
    needed_by: int


@dataclass(frozen=True)
class KeyVersionsReport:
    """Where a master key rotation stands: which versions cards hold, and which can go."""

    current: int | None
    versions: tuple[KeyVersionCount, ...]
    personalised: int  # active cards with a key issued
    awaiting_proof: int  # of them, issued a version they have not answered under yet
    never_proven: int  # of them, never answered a challenge under any version

    def droppable(self) -> list[int]:
        """Older configured versions no active card may still hold: their key lines can go."""
        return [
            v.version
            for v in self.versions
            if v.configured and not v.needed_by and v.version != self.current
        ]


def key_versions_report(session: Session, keyring: CardKeyring | None) -> KeyVersionsReport:
    """Count the active personalised cards by master key version issued and proved."""
    rows = session.execute(
        select(CardKey.key_version, CardKey.proven_version)
        .join(Card, Card.id == CardKey.card_id)
        .where(Card.status == CardStatus.ACTIVE.value)
    ).all()
    issued = Counter(issued_version for issued_version, _ in rows)
    proven = Counter(p for _, p in rows if p is not None)
    unproven_issued = [i for i, p in rows if p is None]
    configured = set(keyring.masters) if keyring is not None else set()
    versions = sorted(configured | set(issued) | set(proven))
    return KeyVersionsReport(
        keyring.current if keyring is not None else None,
        tuple(
            KeyVersionCount(
                v,
                v in configured,
                issued[v],
                proven[v],
                proven[v] + sum(1 for i in unproven_issued if i >= v),
            )
            for v in versions
        ),
        len(rows),
        sum(1 for i, p in rows if p != i),
        len(unproven_issued),
    )


def card_keyring(settings: Settings) -> CardKeyring | None:
    """The card master keys the settings name (value or file); None when none is configured."""
    secret = settings.card_master_key
    return load_card_keyring(
        secret.get_secret_value() if secret is not None else None,
        settings.card_master_key_file,
        settings.card_master_key_version,
    )
