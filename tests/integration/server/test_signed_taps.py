"""Signed taps through tap_submission and record_taps, as the worker runs them, on both backends.

A signing reader's tampered, unsigned or replayed taps are stored as rejected and
credit nothing; a resend of a recorded tap stays a duplicate.
"""

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from protocol import AckResult, Tap
from protocol.codec import encode
from protocol.signing import sign
from server.db.engine import Database
from server.db.models import Attendance, LedgerEntry, Reader, TapRecord, table_of
from server.ingest.inbound import tap_submission
from server.sample import MinimalSeed, TapBuilder
from server.services.taps import Outcome, record_taps
from server.services.unit_of_work import UnitOfWork

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
KEY = bytes.fromhex("5a" * 32)


@pytest.fixture
def signing(database: Database, seeded: MinimalSeed) -> bytes:
    """The seeded reader's signing key, stored as provisioning stores it."""
    readers = table_of(Reader)
    with database.engine.begin() as conn:
        conn.execute(
            update(readers)
            .where(readers.c.reader_id == seeded.reader_id)
            .values(sign_key=KEY.hex())
        )
    return KEY


def arrive(database: Database, reader_id: str, *payloads: bytes) -> list[Outcome]:
    submissions = [tap_submission(reader_id, payload, NOW) for payload in payloads]
    return record_taps(UnitOfWork(database.write_sessions), submissions)


def credits(database: Database) -> int:
    with database.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


def position(database: Database, reader_id: str) -> tuple[uuid.UUID | None, int | None]:
    readers = table_of(Reader)
    with database.engine.connect() as conn:
        row = conn.execute(
            select(readers.c.last_boot_id, readers.c.last_seq).where(
                readers.c.reader_id == reader_id
            )
        ).one()
    return row[0], row[1]


def test_a_signed_tap_is_credited_and_moves_the_readers_position(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, signing: bytes
) -> None:
    tap = taps.tap()
    [outcome] = arrive(database, seeded.reader_id, sign(tap, signing))

    assert outcome.result is AckResult.ACCEPTED
    assert credits(database) == 1
    assert position(database, seeded.reader_id) == (tap.boot_id, tap.seq)


@pytest.mark.parametrize("kind", ["tampered", "unsigned", "other key"])
def test_a_badly_signed_tap_is_rejected_and_credits_nothing(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, signing: bytes, kind: str
) -> None:
    tap = taps.tap()
    if kind == "tampered":
        body = json.loads(sign(tap, signing))
        body["occurred_at"] = "2025-03-03T00:59:00Z"
        payload = json.dumps(body).encode()
    elif kind == "unsigned":
        payload = encode(tap)
    else:
        payload = sign(tap, bytes(32))

    [outcome] = arrive(database, seeded.reader_id, payload)

    assert outcome.result is AckResult.REJECTED
    assert outcome.detail is not None
    assert outcome.detail.startswith("bad signature:")
    assert credits(database) == 0
    with database.sessions() as db:
        stored = db.scalars(select(TapRecord)).one()
        assert db.scalar(select(func.count()).select_from(Attendance)) == 0
    assert (stored.result, stored.flagged) == ("rejected", True)
    assert position(database, seeded.reader_id) == (None, None)


def test_a_forged_copy_arriving_first_does_not_block_the_genuine_tap(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, signing: bytes
) -> None:
    tap = taps.tap()
    forged = json.loads(sign(tap, bytes(32)))

    [refused] = arrive(database, seeded.reader_id, json.dumps(forged).encode())
    [genuine] = arrive(database, seeded.reader_id, sign(tap, signing))

    assert (refused.event_id, refused.result) == (tap.event_id, AckResult.REJECTED)
    assert (genuine.event_id, genuine.result) == (tap.event_id, AckResult.ACCEPTED)
    assert credits(database) == 1


def test_a_replayed_boot_and_seq_under_a_new_event_id_is_rejected(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, signing: bytes
) -> None:
    first = taps.tap()
    arrive(database, seeded.reader_id, sign(first, signing))
    replay = first.model_copy(update={"event_id": uuid.uuid4()})

    [outcome] = arrive(database, seeded.reader_id, sign(replay, signing))

    assert outcome.result is AckResult.REJECTED
    assert outcome.detail == (
        f"replay: seq {first.seq} of boot {first.boot_id} is not after seq {first.seq}"
    )
    assert credits(database) == 1


def test_a_replay_within_one_batch_is_rejected(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, signing: bytes
) -> None:
    first = taps.tap()
    replay: Tap = first.model_copy(update={"event_id": uuid.uuid4()})

    outcomes = arrive(database, seeded.reader_id, sign(first, signing), sign(replay, signing))

    assert [o.result for o in outcomes] == [AckResult.ACCEPTED, AckResult.REJECTED]
    assert credits(database) == 1


def test_a_resend_of_a_recorded_tap_is_a_duplicate_not_a_replay(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, signing: bytes
) -> None:
    payload = sign(taps.tap(), signing)
    arrive(database, seeded.reader_id, payload)

    [again] = arrive(database, seeded.reader_id, payload)
    [in_batch, twice] = arrive(database, seeded.reader_id, payload, payload)

    for outcome in (again, in_batch, twice):
        assert outcome.result is AckResult.DUPLICATE
        assert outcome.points == 2
    assert credits(database) == 1


def test_taps_from_a_new_boot_are_accepted(
    database: Database, seeded: MinimalSeed, taps: TapBuilder, signing: bytes
) -> None:
    arrive(database, seeded.reader_id, sign(taps.tap(), signing), sign(taps.tap(), signing))
    rebooted = TapBuilder.for_seed(seeded)
    tap = rebooted.tap()

    [outcome] = arrive(database, seeded.reader_id, sign(tap, signing))

    # Already checked in by the taps before the reboot, but not refused.
    assert outcome.result is AckResult.DUPLICATE
    assert outcome.detail == "already checked in"
    assert position(database, seeded.reader_id) == (tap.boot_id, 1)


def test_a_reader_without_a_key_is_not_checked(
    database: Database, seeded: MinimalSeed, taps: TapBuilder
) -> None:
    first = taps.tap()
    replay = first.model_copy(update={"event_id": uuid.uuid4()})

    outcomes = arrive(database, seeded.reader_id, encode(first), encode(replay))

    assert [o.result for o in outcomes] == [AckResult.ACCEPTED, AckResult.DUPLICATE]
    assert position(database, seeded.reader_id) == (None, None)
