"""Sample data: a believable organisation for the demo, and a minimal one for tests.

`seed_demo` builds a party committee (党委) with five branches (支部) and their
groups (党小组), about 200 members with generated Chinese names, one card each,
three rooms with a reader each and a session running now in every room. The
random generator is seeded, so the same call always builds the same data.
"""

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from uuid import UUID, uuid4

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from protocol import CardId, CardTech, Tap, TapMode
from server.db.models import (
    ActivityType,
    AttendanceSession,
    Card,
    Member,
    MemberOrgHistory,
    OrgUnit,
    Reader,
    Room,
    SessionAudience,
    SessionRoom,
)
from server.domain.cards import CardStatus
from server.errors import SampleDataError
from server.services.taps import ReceivedTap

DEMO_SEED = 20240701

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹"
    "彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛"
)
GIVEN_CHARACTERS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英霞平刚桂华建国志红文辉力"
    "鹏飞宇浩然欣怡子涵梓萱晨阳佳琪雨轩思远海燕婷玉兰凤春梅立新晓东振宁"
)

# (code, name, points) — points per attendance under the fixed rule set.
ACTIVITY_TYPES: tuple[tuple[str, str, int], ...] = (
    ("branch_general", "支部党员大会", 2),
    ("branch_committee", "支部委员会", 1),
    ("group_meeting", "党小组会", 1),
    ("party_lecture", "党课", 2),
    ("theme_day", "主题党日", 2),
    ("org_life", "组织生活会", 2),
    ("study", "学习", 1),
)

# Branch name and the number of groups (党小组) it has.
BRANCHES: tuple[tuple[str, int], ...] = (
    ("机关第一党支部", 2),
    ("机关第二党支部", 2),
    ("运行保障部党支部", 3),
    ("技术中心党支部", 2),
    ("离退休干部党支部", 2),
)
CATEGORIES: tuple[tuple[str, int], ...] = (
    ("正式党员", 82),
    ("预备党员", 8),
    ("入党积极分子", 7),
    ("群众", 3),
)
# Room code, room name, reader id.
ROOMS: tuple[tuple[str, str, str], ...] = (
    ("R101", "党员活动室", "room-101"),
    ("R102", "一号会议室", "room-102"),
    ("R103", "学习室", "room-103"),
)
CARDS_PER_READER = 12


@dataclass(frozen=True)
class DemoCard:
    """A card the demo can tap, and whose it is."""

    tech: CardTech
    uid: str
    employee_no: str
    name: str


@dataclass(frozen=True)
class DemoData:
    """What seed_demo made that a simulated reader needs to know."""

    reader_ids: tuple[str, ...]
    cards_by_reader: Mapping[str, tuple[DemoCard, ...]]
    session_by_reader: Mapping[str, int]
    unknown_uids: tuple[str, ...]
    member_count: int


@dataclass(frozen=True)
class MinimalSeed:
    """One of everything a check-in needs, for tests."""

    org_unit_id: int
    member_id: int
    employee_no: str
    member_name: str
    card_id: int
    card_tech: CardTech
    card_uid: str
    room_id: int
    room_name: str
    reader_id: str
    activity_type_id: int
    session_id: int
    session_title: str
    starts_at: datetime
    points: int


@dataclass
class TapBuilder:
    """Builds taps as a reader agent would: one boot id, increasing sequence numbers."""

    reader_id: str
    card_uid: str | None = None
    at: datetime | None = None
    card_tech: CardTech = CardTech.ISO14443A
    boot_id: UUID = field(default_factory=uuid4)
    seq: int = 0

    def tap(
        self,
        *,
        uid: str | None = None,
        at: datetime | None = None,
        mode: TapMode | None = None,
        reader_id: str | None = None,
        event_id: UUID | None = None,
        clock_synced: bool = True,
    ) -> Tap:
        """A new tap; unset arguments fall back to the builder's card, time and reader."""
        card_uid = uid or self.card_uid
        when = at or self.at
        if card_uid is None or when is None:
            raise ValueError("a tap needs a card uid and a time")
        self.seq += 1
        return Tap(
            event_id=event_id or uuid4(),
            reader_id=reader_id or self.reader_id,
            boot_id=self.boot_id,
            seq=self.seq,
            card=CardId(tech=self.card_tech, uid=card_uid),
            occurred_at=when,
            clock_synced=clock_synced,
            mode=mode,
        )

    def received(
        self,
        *,
        received_at: datetime | None = None,
        uid: str | None = None,
        at: datetime | None = None,
        mode: TapMode | None = None,
        reader_id: str | None = None,
        event_id: UUID | None = None,
    ) -> ReceivedTap:
        """A new tap as the server receives it (by default, at the moment it was made)."""
        tap = self.tap(uid=uid, at=at, mode=mode, reader_id=reader_id, event_id=event_id)
        return ReceivedTap(tap, received_at or tap.occurred_at)

    @classmethod
    def for_seed(cls, seed: "MinimalSeed") -> "TapBuilder":
        """A builder tapping the seeded card on the seeded reader at the session's start."""
        return cls(seed.reader_id, seed.card_uid, seed.starts_at, seed.card_tech)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise SampleDataError("sample data needs a timezone-aware 'now'")
    return now.astimezone(UTC)


def seed_minimal(
    sessions: sessionmaker[Session],
    now: datetime,
    *,
    reader_id: str = "room-1",
    card_uid: str = "04A1B2C3",
    points: int = 2,
    open_minutes: int = 30,
    late_grace_minutes: int = 5,
    duration: timedelta = timedelta(hours=1),
) -> MinimalSeed:
    """Create one org unit, member, active card, room, reader and a session starting at `now`."""
    now = _aware(now)
    with sessions.begin() as db:
        unit = OrgUnit(code="T01", name="测试支部")
        db.add(unit)
        db.flush()
        member = Member(
            employee_no="E00001",
            name="张三",
            org_unit_id=unit.id,
            category="正式党员",
        )
        db.add(member)
        db.flush()
        db.add(
            MemberOrgHistory(
                member_id=member.id, org_unit_id=unit.id, valid_from=now - timedelta(days=365)
            )
        )
        card = Card(
            tech=CardTech.ISO14443A.value,
            uid=card_uid,
            member_id=member.id,
            status=CardStatus.ACTIVE.value,
        )
        room = Room(code="T101", name="测试会议室")
        activity = ActivityType(code="test_study", name="学习", default_points=points)
        db.add_all([card, room, activity])
        db.flush()
        db.add(Reader(reader_id=reader_id, room_id=room.id, mode=TapMode.CHECKIN.value))
        meeting = AttendanceSession(
            title="测试学习会",
            activity_type_id=activity.id,
            starts_at=now,
            ends_at=now + duration,
            checkin_open_minutes=open_minutes,
            late_grace_minutes=late_grace_minutes,
            allow_walk_in=True,
        )
        db.add(meeting)
        db.flush()
        db.add(SessionRoom(session_id=meeting.id, room_id=room.id))
        return MinimalSeed(
            org_unit_id=unit.id,
            member_id=member.id,
            employee_no=member.employee_no,
            member_name=member.name,
            card_id=card.id,
            card_tech=CardTech.ISO14443A,
            card_uid=card_uid,
            room_id=room.id,
            room_name=room.name,
            reader_id=reader_id,
            activity_type_id=activity.id,
            session_id=meeting.id,
            session_title=meeting.title,
            starts_at=now,
            points=points,
        )


def _name(rng: random.Random) -> str:
    given = "".join(rng.choices(GIVEN_CHARACTERS, k=1 if rng.random() < 0.35 else 2))
    return rng.choice(SURNAMES) + given


def _uid(rng: random.Random, taken: set[str]) -> str:
    while True:
        if rng.random() < 0.6:
            # A 4-byte UID; 0x08 as first byte marks a random (per-read) UID, avoid it.
            raw = bytes([rng.choice([b for b in range(256) if b != 0x08])]) + rng.randbytes(3)
        else:
            # A 7-byte UID; 0x04 is NXP's manufacturer byte, as on most real cards.
            raw = b"\x04" + rng.randbytes(6)
        uid = raw.hex().upper()
        if uid not in taken:
            taken.add(uid)
            return uid


def _category(rng: random.Random) -> str:
    names = [name for name, _ in CATEGORIES]
    weights = [weight for _, weight in CATEGORIES]
    return rng.choices(names, weights=weights, k=1)[0]


@dataclass(frozen=True)
class _Person:
    member: Member
    branch: OrgUnit
    card: Card


@dataclass(frozen=True)
class _SessionPlan:
    reader_id: str
    title: str
    activity: str
    start: timedelta
    length: timedelta
    audience: OrgUnit | None
    walk_in: bool


def _seed_org(db: Session) -> tuple[OrgUnit, list[OrgUnit], list[tuple[OrgUnit, OrgUnit]]]:
    """The committee, its branches, and (branch, group) pairs."""
    committee = OrgUnit(code="DW", name="公司党委")
    db.add(committee)
    db.flush()
    branches: list[OrgUnit] = []
    groups: list[tuple[OrgUnit, OrgUnit]] = []
    for b, (branch_name, group_count) in enumerate(BRANCHES, start=1):
        branch = OrgUnit(code=f"DW-{b:02d}", name=branch_name, parent_id=committee.id)
        db.add(branch)
        db.flush()
        branches.append(branch)
        for g in range(1, group_count + 1):
            group = OrgUnit(
                code=f"DW-{b:02d}-{g}",
                name=f"{branch_name}第{'一二三四五'[g - 1]}党小组",
                parent_id=branch.id,
            )
            db.add(group)
            groups.append((branch, group))
    db.flush()
    return committee, branches, groups


def _seed_people(
    db: Session,
    rng: random.Random,
    groups: Sequence[tuple[OrgUnit, OrgUnit]],
    count: int,
    taken: set[str],
) -> list[_Person]:
    """Members spread over the groups, each with history and one active card."""
    placed: list[tuple[Member, OrgUnit]] = []
    for n in range(count):
        branch, group = groups[n % len(groups)]
        member = Member(
            employee_no=f"E{10001 + n}",
            name=_name(rng),
            org_unit_id=group.id,
            category=_category(rng),
            active_from=date(2015, 1, 1) + timedelta(days=rng.randrange(0, 3000)),
        )
        db.add(member)
        placed.append((member, branch))
    db.flush()
    people: list[_Person] = []
    for member, branch in placed:
        assert member.active_from is not None
        joined = datetime.combine(member.active_from, datetime.min.time(), tzinfo=UTC)
        db.add(
            MemberOrgHistory(member_id=member.id, org_unit_id=member.org_unit_id, valid_from=joined)
        )
        card = Card(
            tech=CardTech.ISO14443A.value,
            uid=_uid(rng, taken),
            member_id=member.id,
            status=CardStatus.ACTIVE.value,
        )
        db.add(card)
        people.append(_Person(member, branch, card))
    return people


def _seed_places(db: Session) -> tuple[dict[str, ActivityType], dict[str, Room]]:
    """Activity types, rooms and one reader per room; keyed by activity code and reader id."""
    activity = {
        code: ActivityType(code=code, name=name, default_points=points)
        for code, name, points in ACTIVITY_TYPES
    }
    rooms = {reader_id: Room(code=code, name=name) for code, name, reader_id in ROOMS}
    db.add_all([*activity.values(), *rooms.values()])
    db.flush()
    for reader_id, room in rooms.items():
        db.add(Reader(reader_id=reader_id, name=f"{room.name}读卡器", room_id=room.id))
    return activity, rooms


def _add_session(
    db: Session, plan: _SessionPlan, now: datetime, activity: ActivityType, room: Room
) -> int:
    meeting = AttendanceSession(
        title=plan.title,
        activity_type_id=activity.id,
        starts_at=now + plan.start,
        ends_at=now + plan.start + plan.length,
        checkin_open_minutes=30,
        late_grace_minutes=10,
        allow_walk_in=plan.walk_in,
    )
    db.add(meeting)
    db.flush()
    db.add(SessionRoom(session_id=meeting.id, room_id=room.id))
    if plan.audience is not None:
        db.add(SessionAudience(session_id=meeting.id, org_unit_id=plan.audience.id))
    return meeting.id


def seed_demo(
    sessions: sessionmaker[Session],
    now: datetime,
    tz: tzinfo,
    *,
    members: int = 200,
    seed: int = DEMO_SEED,
) -> DemoData:
    """Fill an empty database with a demo organisation and sessions running at `now`."""
    now = _aware(now)
    rng = random.Random(seed)
    with sessions.begin() as db:
        if db.scalar(select(func.count()).select_from(OrgUnit)):
            raise SampleDataError(
                "the database already has org units; demo data needs an empty one"
            )
        committee, branches, groups = _seed_org(db)
        taken: set[str] = set()
        people = _seed_people(db, rng, groups, members, taken)
        activity, rooms = _seed_places(db)
        local_today = now.astimezone(tz).date()
        running = (
            _SessionPlan(
                "room-101",
                f"{branches[0].name}党员大会",
                "branch_general",
                timedelta(minutes=-5),
                timedelta(minutes=90),
                branches[0],
                walk_in=False,
            ),
            _SessionPlan(
                "room-102",
                "党课：新时代党员的责任与担当",
                "party_lecture",
                timedelta(minutes=10),
                timedelta(minutes=90),
                committee,
                walk_in=True,
            ),
            _SessionPlan(
                "room-103",
                f"理论学习（{local_today:%m月%d日}）",
                "study",
                timedelta(minutes=-20),
                timedelta(minutes=120),
                None,
                walk_in=True,
            ),
        )
        session_by_reader = {
            plan.reader_id: _add_session(
                db, plan, now, activity[plan.activity], rooms[plan.reader_id]
            )
            for plan in running
        }
        # Sessions held yesterday, so lists and reports have some history.
        for plan in (
            _SessionPlan(
                "room-101",
                f"{branches[1].name}主题党日",
                "theme_day",
                timedelta(days=-1),
                timedelta(hours=2),
                branches[1],
                walk_in=True,
            ),
            _SessionPlan(
                "room-102",
                f"{branches[2].name}组织生活会",
                "org_life",
                timedelta(days=-1),
                timedelta(hours=2),
                branches[2],
                walk_in=False,
            ),
        ):
            _add_session(db, plan, now, activity[plan.activity], rooms[plan.reader_id])

        def cards_for(audience: OrgUnit | None) -> tuple[DemoCard, ...]:
            # Cards of people the session expects: the branch's members, or anyone.
            chosen = [
                DemoCard(CardTech.ISO14443A, p.card.uid, p.member.employee_no, p.member.name)
                for p in people
                if audience is None or audience is committee or p.branch is audience
            ]
            return tuple(chosen[:CARDS_PER_READER])

        return DemoData(
            reader_ids=tuple(plan.reader_id for plan in running),
            cards_by_reader={plan.reader_id: cards_for(plan.audience) for plan in running},
            session_by_reader=session_by_reader,
            unknown_uids=tuple(_uid(rng, taken) for _ in range(3)),
            member_count=members,
        )
