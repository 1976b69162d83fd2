"""A roster to tap against: members with active cards, readers in rooms, a session open now.

The end-to-end tests and the benchmarks both seed it into a migrated database and
then tap its cards through real processes.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from protocol import CardTech, TapMode
from server.db.models import (
    ActivityType,
    AttendanceSession,
    Card,
    Member,
    MemberOrgHistory,
    OrgUnit,
    Reader,
    Room,
    SessionRoom,
)
from server.domain.cards import CardStatus

# What the member and session are called: the reader agent prints both in its ack line.
MEMBER_NAME = "测试{index:03d}"
SESSION_TITLE = "端到端测试大会"


@dataclass(frozen=True)
class Roster:
    """What seed_roster made: whose cards, which readers, which sessions."""

    reader_ids: tuple[str, ...]
    session_ids: tuple[int, ...]  # session_ids[i] is open in reader_ids[i]'s room
    uids: tuple[str, ...]  # uids[i] belongs to employee_nos[i]
    employee_nos: tuple[str, ...]

    @property
    def session_id(self) -> int:
        """The session open at the first reader (the only one, in the end-to-end tests)."""
        return self.session_ids[0]


def uid_of(index: int) -> str:
    """The card uid of member number `index`."""
    return f"04{index:08X}"


def seed_roster(
    database_url: str,
    *,
    members: int,
    reader_ids: Sequence[str],
    points: int,
    late_grace_minutes: int = 30,
    duration: timedelta = timedelta(hours=2),
) -> Roster:
    """Seed one branch of `members` members, each with an active card, and per reader a
    room of its own with a walk-in session that started a minute ago and credits `points`.
    """
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    try:
        with sessionmaker(engine).begin() as db:
            unit = OrgUnit(code="ROSTER", name="测试支部")
            kind = ActivityType(code="roster_meeting", name="支部党员大会", default_points=points)
            db.add_all([unit, kind])
            db.flush()
            people = [
                Member(
                    employee_no=f"T{i:06d}",
                    name=MEMBER_NAME.format(index=i),
                    org_unit_id=unit.id,
                    category="正式党员",
                )
                for i in range(members)
            ]
            db.add_all(people)
            db.flush()
            uids = tuple(uid_of(i) for i in range(members))
            for person, uid in zip(people, uids, strict=True):
                db.add(
                    MemberOrgHistory(
                        member_id=person.id,
                        org_unit_id=unit.id,
                        valid_from=now - timedelta(days=30),
                    )
                )
                db.add(
                    Card(
                        tech=CardTech.ISO14443A.value,
                        uid=uid,
                        member_id=person.id,
                        status=CardStatus.ACTIVE.value,
                    )
                )
            session_ids = []
            for r, reader_id in enumerate(reader_ids):
                room = Room(code=f"R{r:03d}", name=f"会议室{r + 1}")
                db.add(room)
                db.flush()
                db.add(Reader(reader_id=reader_id, room_id=room.id, mode=TapMode.CHECKIN.value))
                meeting = AttendanceSession(
                    title=SESSION_TITLE,
                    activity_type_id=kind.id,
                    starts_at=now - timedelta(minutes=1),
                    ends_at=now + duration,
                    checkin_open_minutes=30,
                    late_grace_minutes=late_grace_minutes,
                    allow_walk_in=True,
                )
                db.add(meeting)
                db.flush()
                db.add(SessionRoom(session_id=meeting.id, room_id=room.id))
                session_ids.append(meeting.id)
            return Roster(
                tuple(reader_ids), tuple(session_ids), uids, tuple(p.employee_no for p in people)
            )
    finally:
        engine.dispose()
