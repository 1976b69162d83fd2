"""Garbage on a taps topic: the worker never crashes, stores each as rejected, credits nothing.

Two ways in. The fast one drives the worker's own path for a message, in process,
on a real SQLite database: `tap_submission` (decode) then `record_taps` (the one
use case), the calls the ingest worker makes for each message. The other
publishes a few hundred payloads through a real Mosquitto to a running
`rollcall ingest` and then checks it still answers a good tap.

Which payloads are invalid is decided by the protocol's own decoder (the oracle):
hypothesis' near-misses sometimes turn out valid (pydantic's lax mode mends a
"7" into 7), and those are only required to credit nothing (their card is unknown).
"""

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from sqlalchemy import func, select

from protocol import AckResult, CardId, CardTech, Tap, encode, topics
from server.db.engine import Database, open_database
from server.db.migrate import upgrade
from server.db.models import LedgerEntry, TapRecord
from server.ingest.inbound import tap_submission
from server.services.taps import MAX_RAW_PAYLOAD, record_taps
from server.services.unit_of_work import UnitOfWork
from tests.faults import fleet
from tests.faults.payloads import fresh, is_valid_tap, known_hard, overflowing_status, payloads
from tests.faults.wire import RawReader
from tests.support.mosquitto import Mosquitto
from tests.support.roster import Roster, seed_roster

READER_ID = "fuzz-1"
POINTS = 2
NOT_CHECKED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


def good_tap(uid: str) -> Tap:
    """A valid check-in of `uid` on the fuzzed reader, now."""
    return Tap(
        event_id=uuid.uuid4(),
        reader_id=READER_ID,
        boot_id=uuid.uuid4(),
        seq=1,
        card=CardId(tech=CardTech.ISO14443A, uid=uid),
        occurred_at=datetime.now(UTC),
        clock_synced=True,
    )


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[tuple[Database, Roster]]:
    """A migrated SQLite database with the fuzzed reader in a room with a session open now."""
    url = f"sqlite:///{tmp_path / 'fuzz.sqlite3'}"
    database = open_database(url)
    try:
        upgrade(database)
        roster = seed_roster(url, members=3, reader_ids=(READER_ID,), points=POINTS)
        yield database, roster
    finally:
        database.dispose()


def test_the_worker_path_stores_every_bad_payload_as_rejected(
    sqlite_db: tuple[Database, Roster],
) -> None:
    database, roster = sqlite_db
    seen: Counter[str] = Counter()

    def latest_tap() -> TapRecord:
        with database.sessions() as db:
            return db.scalars(select(TapRecord).order_by(TapRecord.id.desc()).limit(1)).one()

    def one_message(raw: bytes) -> None:
        payload = fresh(raw)
        submission = tap_submission(READER_ID, payload, datetime.now(UTC))
        [outcome] = record_taps(UnitOfWork(database.write_sessions), [submission])
        row = latest_tap()
        assert outcome.points == 0
        if is_valid_tap(payload, READER_ID):
            seen["valid"] += 1
            assert outcome.result is not AckResult.ACCEPTED
            return
        seen["invalid"] += 1
        assert outcome.result is AckResult.REJECTED
        assert outcome.detail
        assert row.result == "rejected"
        assert row.flagged
        assert row.detail
        assert row.raw_payload == payload[:MAX_RAW_PAYLOAD]
        ack = outcome.ack()
        if row.event_id is not None:
            # The reader can be answered: the ack names its event and encodes.
            assert ack is not None
            assert (ack.event_id, ack.result) == (row.event_id, AckResult.REJECTED)
            assert encode(ack)

    check = given(payloads(READER_ID))(one_message)
    for raw in known_hard(READER_ID):
        check = example(raw)(check)
    settings(max_examples=500, deadline=None, database=None, suppress_health_check=NOT_CHECKED)(
        check
    )()

    [outcome] = record_taps(
        UnitOfWork(database.write_sessions),
        [tap_submission(READER_ID, encode(good_tap(roster.uids[0])), datetime.now(UTC))],
    )
    assert (outcome.result, outcome.points) == (AckResult.ACCEPTED, POINTS)
    with database.sessions() as db:
        rejected = db.scalar(
            select(func.count())
            .select_from(TapRecord)
            .where(TapRecord.result == "rejected", TapRecord.raw_payload.is_not(None))
        )
        credits = db.scalar(select(func.count()).select_from(LedgerEntry))
    print(f"payloads: {dict(seen)}")
    assert rejected == seen["invalid"] > 0
    assert credits == 1


@pytest.mark.integration
def test_garbage_through_the_broker_never_stops_ingest(
    database_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    fleet.upgrade(database_url)
    roster = seed_roster(database_url, members=3, reader_ids=(READER_ID,), points=POINTS)
    taps_topic, acks_topic = topics.taps(READER_ID), topics.acks(READER_ID)
    sent: list[bytes] = []
    with fleet.ingest(tmp_path, database_url, mosquitto.url) as worker:
        wire = RawReader(mosquitto.host, mosquitto.port)
        try:
            wire.subscribe(acks_topic)

            # Hypothesis only generates here; the checks come after, on everything at once.
            @settings(
                max_examples=300,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=NOT_CHECKED,
            )
            @given(payloads(READER_ID))
            def publish(raw: bytes) -> None:
                payload = fresh(raw)
                sent.append(payload)
                wire.publish(taps_topic, payload, wait=False)

            publish()
            for payload in known_hard(READER_ID):
                sent.append(fresh(payload))
                wire.publish(taps_topic, sent[-1], wait=False)
            wire.publish(topics.status(READER_ID), overflowing_status(), wait=False)
            good = good_tap(roster.uids[0])
            wire.publish(taps_topic, encode(good))
            # One worker answers in order: the good tap's ack comes after every other.
            wire.wait_until(
                lambda: any(a.event_id == good.event_id for a in wire.acks(acks_topic)),
                timeout=60,
            )
            acks = {a.event_id: a for a in wire.acks(acks_topic)}
        finally:
            wire.close()

    assert acks[good.event_id].result is AckResult.ACCEPTED
    # Not one batch failed, not one tap took the poison path: garbage is ordinary business.
    assert worker.errors() == []
    invalid = [p for p in sent if not is_valid_tap(p, READER_ID)]
    print(f"payloads: {len(sent)} sent, {len(invalid)} invalid")
    assert len(invalid) > len(sent) // 2
    db = fleet.stored(database_url)
    stored_raw = Counter(bytes(t["raw_payload"]) for t in db.taps if t["raw_payload"] is not None)
    assert stored_raw == Counter(p[:MAX_RAW_PAYLOAD] for p in invalid)
    rejected = [t for t in db.taps if t["raw_payload"] is not None]
    assert all(t["result"] == "rejected" and t["flagged"] and t["detail"] for t in rejected)
    # Every rejected payload that named its event was answered `rejected`.
    named = [t["event_id"] for t in rejected if t["event_id"] is not None]
    assert named
    assert all(acks[e].result is AckResult.REJECTED for e in named)
    # Only the good tap was credited.
    assert len(db.attendance) == len(db.ledger) == 1
