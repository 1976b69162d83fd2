"""Demo and minimal sample data: believable, deterministic, and usable by a tap."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from protocol import AckResult
from server.db.engine import Database, open_database
from server.db.migrate import upgrade
from server.db.models import (
    ActivityType,
    AttendanceSession,
    Card,
    Member,
    OrgUnit,
    Reader,
    Room,
)
from server.errors import SampleDataError
from server.sample import TapBuilder, seed_demo
from server.services.taps import record_taps
from server.services.unit_of_work import UnitOfWork

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_demo_organisation(database: Database) -> None:
    demo = seed_demo(database.write_sessions, NOW, SHANGHAI)

    with database.sessions() as db:

        def n(model: type) -> int:
            return int(db.scalar(select(func.count()).select_from(model)) or 0)

        assert n(Member) == demo.member_count == 200
        assert n(Card) == 200
        assert n(Room) == n(Reader) == 3
        assert n(ActivityType) == 7
        assert n(AttendanceSession) == 5
        units = db.execute(select(OrgUnit.name, OrgUnit.parent_id)).all()
        names = [m for (m,) in db.execute(select(Member.name)).all()]
        numbers = db.scalars(select(Member.employee_no).order_by(Member.employee_no)).all()
        points = dict(db.execute(select(ActivityType.name, ActivityType.default_points)).all())
    assert sum(1 for _, parent in units if parent is None) == 1  # one committee
    assert sum(1 for name, _ in units if name.endswith("党支部")) == 5
    assert sum(1 for name, _ in units if name.endswith("党小组")) == 11
    assert all(2 <= len(name) <= 3 for name in names)
    assert len(set(names)) > 150
    assert (numbers[0], numbers[-1]) == ("E10001", "E10200")
    assert points["支部党员大会"] == 2
    assert demo.reader_ids == ("room-101", "room-102", "room-103")
    assert all(len(demo.cards_by_reader[r]) == 12 for r in demo.reader_ids)
    assert all(
        len(uid) in (8, 14)
        for cards in demo.cards_by_reader.values()
        for uid in (c.uid for c in cards)
    )


def test_demo_cards_check_in_on_their_readers(database: Database) -> None:
    demo = seed_demo(database.write_sessions, NOW, SHANGHAI)
    batch = []
    for reader_id in demo.reader_ids:
        builder = TapBuilder(reader_id, at=NOW)
        batch += [builder.received(uid=card.uid) for card in demo.cards_by_reader[reader_id]]
        batch.append(builder.received(uid=demo.unknown_uids[0]))

    outcomes = record_taps(UnitOfWork(database.write_sessions), batch)

    results = [o.result for o in outcomes]
    assert results.count(AckResult.ACCEPTED) == 36
    assert results.count(AckResult.UNKNOWN_CARD) == 3


def test_demo_is_deterministic(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = open_database(f"sqlite:///{tmp_path_factory.mktemp('again')}/demo.sqlite3")
    upgrade(other)
    try:
        first = seed_demo(database.write_sessions, NOW, SHANGHAI)
        second = seed_demo(other.write_sessions, NOW, SHANGHAI)
    finally:
        other.dispose()

    assert first.cards_by_reader == second.cards_by_reader
    assert first.unknown_uids == second.unknown_uids


def test_demo_refuses_a_database_with_data(database: Database) -> None:
    seed_demo(database.write_sessions, NOW, SHANGHAI)

    with pytest.raises(SampleDataError, match="empty"):
        seed_demo(database.write_sessions, NOW, SHANGHAI)
