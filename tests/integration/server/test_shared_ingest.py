"""Two ingest workers on one shared subscription against one database: nothing credited twice.

The workers split the taps ($share/rollcall-ingest/…) and race each other on the
same members and sessions; the database's unique constraints decide. Every tap is
stored once, answered at least once, and each (member, session) pair credited once.
"""

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from protocol import Ack, AckResult, CardId, CardTech, Tap, decode_as, encode, topics
from server.db.engine import Database
from server.db.models import Attendance, LedgerEntry, TapRecord
from server.ingest.endpoint import MqttEndpoint
from server.ingest.worker import IngestOptions, IngestWorker
from tests.support.roster import Roster, seed_roster

pytestmark = pytest.mark.integration

MEMBERS = 40
READERS = ("shared-a", "shared-b", "shared-c")
POINTS = 3
Mosquitto = Any


@pytest.fixture
def roster(database: Database, database_url: str) -> Roster:
    """MEMBERS members with cards; each reader in its own room with a session open now."""
    return seed_roster(database_url, members=MEMBERS, reader_ids=READERS, points=POINTS)


@pytest.fixture
def workers(mosquitto: Mosquitto, database: Database) -> Iterator[list[IngestWorker]]:
    """Two workers with their own client ids on the shared subscription."""
    started = []
    for n in range(2):
        worker = IngestWorker(
            MqttEndpoint(mosquitto.host, mosquitto.port),
            database,
            # Small batches: more transactions, so more chances for the two to interleave.
            IngestOptions(client_id=f"shared-ingest-{n}", shared=True, batch_size=20),
        )
        worker.start()
        started.append(worker)
    try:
        for worker in started:
            assert worker.wait_ready(10), "worker did not subscribe"
        yield started
    finally:
        for worker in started:
            worker.stop()


def tap(reader_id: str, uid: str, seq: int) -> Tap:
    """A fresh check-in tap of card `uid` on `reader_id`, now."""
    return Tap(
        event_id=uuid.uuid4(),
        reader_id=reader_id,
        boot_id=uuid.UUID(int=READERS.index(reader_id) + 1),
        seq=seq,
        card=CardId(tech=CardTech.ISO14443A, uid=uid),
        occurred_at=datetime.now(UTC),
        clock_synced=True,
    )


def scalar(database: Database, statement: Any) -> int:
    with database.sessions() as db:
        return int(db.scalar(statement) or 0)


def test_two_workers_on_a_shared_subscription_never_double_credit(
    roster: Roster,
    database: Database,
    workers: list[IngestWorker],
    mosquitto: Mosquitto,
    probes: Callable[..., Any],
) -> None:
    listener = probes(mosquitto.host, mosquitto.port, "shared-acks")
    listener.subscribe(topics.all_readers("acks"))
    publisher = probes(mosquitto.host, mosquitto.port, "shared-readers")
    # Every member taps every reader three times with new event ids (two are repeats
    # of a pair), and every fifth tap is also sent again as is (a resend).
    sent: list[Tap] = []
    seq = 0
    for _round in range(3):
        for uid in roster.uids:
            for reader_id in READERS:
                seq += 1
                sent.append(tap(reader_id, uid, seq))
    resends = sent[::5]
    messages = sent + resends
    for message in messages:
        publisher.client.publish(topics.taps(message.reader_id), encode(message), qos=1)

    acks: list[Ack] = [decode_as(m.payload, Ack) for m in listener.take(len(messages), 60)]

    by_event: dict[uuid.UUID, list[AckResult]] = {}
    for ack in acks:
        by_event.setdefault(ack.event_id, []).append(ack.result)
    assert set(by_event) == {t.event_id for t in sent}
    pairs = MEMBERS * len(READERS)
    # One accepted tap per pair; everything else, resends included, a duplicate.
    results = Counter(ack.result for ack in acks)
    assert results == {AckResult.ACCEPTED: pairs, AckResult.DUPLICATE: len(messages) - pairs}
    assert all(by_event[t.event_id].count(AckResult.DUPLICATE) >= 1 for t in resends)
    assert all(len(by_event[t.event_id]) == 2 for t in resends)

    # Stored: each event id once, each pair attended and credited once.
    assert scalar(database, select(func.count()).select_from(TapRecord)) == len(sent)
    assert scalar(database, select(func.count(func.distinct(TapRecord.event_id)))) == len(sent)
    assert scalar(database, select(func.count()).select_from(Attendance)) == pairs
    assert scalar(database, select(func.count()).select_from(LedgerEntry)) == pairs
    assert scalar(database, select(func.sum(LedgerEntry.amount))) == pairs * POINTS
    accepted_rows = select(func.count()).where(TapRecord.result == AckResult.ACCEPTED.value)
    assert scalar(database, accepted_rows) == pairs

    # The broker split the work: both workers recorded taps.
    received = [w.counters.get("received") for w in workers]
    assert sum(received) == len(messages)
    assert all(n > 0 for n in received), received
