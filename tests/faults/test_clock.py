"""Readers whose clocks are an hour off: their taps are quarantined, their skew is on record.

A tap stamped an hour in the future is refused whatever the reader says of its
clock; a tap stamped an hour before it arrives from a reader whose clock is not
synced is held for review rather than counted at a time it may never have
happened. Neither credits anything. A reader with a good clock in the same
run is credited as usual.
"""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from protocol import AckResult, CardId, CardTech, Tap
from server.db.engine import open_database
from server.db.models import Reader
from server.services.taps import ReceivedTap, record_taps
from server.services.unit_of_work import UnitOfWork
from tests.faults import fleet
from tests.support.mosquitto import Mosquitto
from tests.support.roster import seed_roster

POINTS = 2
MEMBERS = 10
HOUR = 3600
# Reader id → its clock's offset in seconds and whether it says its clock is synced.
CLOCKS = {
    "clock-ahead": (HOUR, "true"),
    "clock-behind": (-HOUR, "false"),
    "clock-good": (0, "true"),
}


@pytest.mark.integration
def test_an_hour_off_is_quarantined_and_nothing_is_credited(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    fleet.upgrade(database_url)
    roster = seed_roster(database_url, members=MEMBERS, reader_ids=tuple(CLOCKS), points=POINTS)
    session_of = dict(zip(CLOCKS, roster.session_ids, strict=True))
    terminals = [
        fleet.Terminal(
            reader_id,
            tmp_path,
            mosquitto.url,
            roster.uids,
            env={
                "ROLLCALL_READER_CLOCK_OFFSET_SECONDS": str(offset),
                "ROLLCALL_READER_CLOCK_SYNCED": synced,
            },
        )
        for reader_id, (offset, synced) in CLOCKS.items()
    ]
    with fleet.ingest(tmp_path, database_url, mosquitto.url):
        for terminal in terminals:
            terminal.start()
        try:
            for terminal in terminals:
                terminal.wait_drained(timeout=60)
        finally:
            for terminal in terminals:
                terminal.stop()

    # Every reader heard an answer for each tap; the skewed ones heard the reason.
    ahead, behind, good = terminals
    assert ahead.proc.count(r"^\[error\] 时间异常 — 读卡器时钟超前") == MEMBERS
    assert behind.proc.count(r"^\[error\] 时间异常 — 读卡器时钟未同步") == MEMBERS
    assert good.proc.count(r"^\[accepted\] 签到成功") == MEMBERS

    db = fleet.stored(database_url)
    by_reader = {r: [t for t in db.taps if t["reader_id"] == r] for r in CLOCKS}
    assert {len(taps) for taps in by_reader.values()} == {MEMBERS}
    for reader_id in ("clock-ahead", "clock-behind"):
        taps = by_reader[reader_id]
        assert {(t["result"], t["flagged"], t["points"]) for t in taps} == {("rejected", True, 0)}
        assert {t["session_id"] for t in taps} == {None}
    assert all("ahead of the server clock" in t["detail"] for t in by_reader["clock-ahead"])
    assert all("held for review" in t["detail"] for t in by_reader["clock-behind"])
    # Credit went to the good reader's session only, once per member.
    good_session = session_of["clock-good"]
    assert {(a["session_id"]) for a in db.attendance} == {good_session}
    assert len(db.attendance) == len(db.ledger) == MEMBERS
    assert sum(e["amount"] for e in db.ledger) == MEMBERS * POINTS

    # Each reader's skew, as the server measured it from its taps, is on record.
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            skew = dict(conn.execute(select(Reader.reader_id, Reader.skew_seconds)).all())
            synced = dict(conn.execute(select(Reader.reader_id, Reader.clock_synced)).all())
    finally:
        engine.dispose()
    assert skew["clock-ahead"] == pytest.approx(HOUR, abs=60)
    assert skew["clock-behind"] == pytest.approx(-HOUR, abs=60)
    assert skew["clock-good"] == pytest.approx(0, abs=60)
    assert synced["clock-behind"] is False


@pytest.mark.parametrize(
    ("synced", "expected"), [(True, AckResult.ACCEPTED), (False, AckResult.REJECTED)]
)
def test_a_late_tap_counts_at_its_stamp_only_if_the_clock_was_synced(
    tmp_path: Path, synced: bool, expected: AckResult
) -> None:
    """Ten minutes late: an outbox after a cut (synced clock), or a clock that cannot be trusted."""
    url = f"sqlite:///{tmp_path / 'late.sqlite3'}"
    fleet.upgrade(url)
    roster = seed_roster(url, members=1, reader_ids=("late-1",), points=POINTS)
    now = datetime.now(UTC)
    tap = Tap(
        event_id=uuid.uuid4(),
        reader_id="late-1",
        boot_id=uuid.uuid4(),
        seq=1,
        card=CardId(tech=CardTech.ISO14443A, uid=roster.uids[0]),
        occurred_at=now - timedelta(minutes=10),  # inside the check-in window
        clock_synced=synced,
    )
    database = open_database(url)
    try:
        [outcome] = record_taps(UnitOfWork(database.write_sessions), [ReceivedTap(tap, now)])
    finally:
        database.dispose()
    assert outcome.result is expected
    assert outcome.points == (POINTS if synced else 0)
